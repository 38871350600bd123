// IREE runtime configuration for bare metal, force-included (-include) into every
// C/C++ file of the runtime and the firmware (runtime/CMakeLists.txt): macros
// whose values contain `;` cannot pass through CMake's definition lists.
#ifndef KWS_IREE_BARE_METAL_H_
#define KWS_IREE_BARE_METAL_H_

#define IREE_PLATFORM_GENERIC 1
#define IREE_FILE_IO_ENABLE 0
#define IREE_SYNCHRONIZATION_DISABLE_UNSAFE 1
// No per-command validation: it cost the Cortex-M4 ~35 k instructions per hop of the
// streaming DS-CNN (binding compatibility and range checks of every dispatch, every
// call); the parity tests against JAX are the check that the commands are right.
#define IREE_HAL_COMMAND_BUFFER_VALIDATION_ENABLE 0
// One device (the default sizes a 32 x 32 topology: 16 KB), a 2 KiB inline VM stack
// (8 KiB, zeroed every call), arena blocks down to 1 KiB (kws_runtime.c's
// KWS_ARENA_BLOCK_SIZE); overridable once kws_jax.deploy.iree_runtime_build has
// patched the cached sources.
#define IREE_HAL_TOPOLOGY_MAX_DEVICE_COUNT 1
#define IREE_VM_STACK_DEFAULT_SIZE (2 * 1024)
#define IREE_HAL_SYNC_DEVICE_MIN_ARENA_BLOCK_SIZE 1024
// No clock: the synchronous device never waits on time.
#define IREE_TIME_NOW_FN {return 0;}
// In gnu11 mode IREE would otherwise call clock_nanosleep, which newlib lacks.
#define IREE_WAIT_UNTIL_FN kws_wait_until
// Debian's GCC ships its own <stdint.h>; without this newlib's <inttypes.h> hides PRI*64.
#ifndef __int64_t_defined
#define __int64_t_defined 1
#endif

#endif  // KWS_IREE_BARE_METAL_H_
