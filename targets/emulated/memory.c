// Heap and stack high-water marks (kws_memory.h), shared by the emulated boards.
// The linker script defines `end` (heap start) and __stack_bottom/__stack_top.
#include <stdint.h>
#include <unistd.h>

#include "kws_memory.h"

extern char end;
extern uint32_t __stack_bottom, __stack_top;

#define KWS_STACK_PAINT 0xC5C5C5C5u

// Called by the reset code before main; leaves the frames already in use alone.
void kws_paint_stack(void) {
  volatile uint32_t here = 0;
  for (volatile uint32_t* p = &__stack_bottom; p < (uint32_t*)&here - 64; ++p) *p = KWS_STACK_PAINT;
}

size_t kws_heap_high_water(void) { return (size_t)((char*)sbrk(0) - &end); }

size_t kws_stack_high_water(void) {
  const uint32_t* p = &__stack_bottom;
  while (p < &__stack_top && *p == KWS_STACK_PAINT) ++p;
  return (size_t)((const char*)&__stack_top - (const char*)p);
}
