// What newlib (3.3, Debian's libnewlib-arm-none-eabi / the RISC-V newlib) lacks
// for the IREE runtime on bare metal.
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

// newlib 3.3's aligned_alloc calls posix_memalign, which it does not provide.
int posix_memalign(void** out, size_t alignment, size_t size) {
  void* p = memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
