// IREE runtime configuration for bare metal, force-included (-include) into every
// C/C++ file of the runtime and the firmware (runtime/CMakeLists.txt): macros
// whose values contain `;` cannot pass through CMake's definition lists.
#ifndef KWS_IREE_BARE_METAL_H_
#define KWS_IREE_BARE_METAL_H_

#define IREE_PLATFORM_GENERIC 1
#define IREE_FILE_IO_ENABLE 0
#define IREE_SYNCHRONIZATION_DISABLE_UNSAFE 1
// No clock: the synchronous device never waits on time.
#define IREE_TIME_NOW_FN {return 0;}
// In gnu11 mode IREE would otherwise call clock_nanosleep, which newlib lacks.
#define IREE_WAIT_UNTIL_FN kws_wait_until
// Debian's GCC ships its own <stdint.h>; without this newlib's <inttypes.h> hides PRI*64.
#ifndef __int64_t_defined
#define __int64_t_defined 1
#endif

#endif  // KWS_IREE_BARE_METAL_H_
