// Heap and stack high-water marks (kws_memory.h), shared by the emulated boards.
// The linker script defines `end` (heap start) and __stack_bottom/__stack_top.
#include <stddef.h>
#include <stdint.h>

#include "kws_memory.h"

extern char end;
extern uint32_t __stack_bottom, __stack_top;

#define KWS_STACK_PAINT 0xC5C5C5C5u

// Called by the reset code before main; leaves the frames already in use alone.
void kws_paint_stack(void) {
  volatile uint32_t here = 0;
  for (volatile uint32_t* p = &__stack_bottom; p < (uint32_t*)&here - 64; ++p) *p = KWS_STACK_PAINT;
}

// newlib's free() gives the top of the heap back (sbrk with a negative increment)
// once 128 KiB are free there, so the current break is no high-water mark: the
// firmware links with -Wl,--wrap=_sbrk and every break move passes through here.
void* __real__sbrk(ptrdiff_t increment);
static char* g_highest_break;

void* __wrap__sbrk(ptrdiff_t increment) {
  void* previous = __real__sbrk(increment);
  char* now = (char*)__real__sbrk(0);
  if (now > g_highest_break) g_highest_break = now;
  return previous;
}

size_t kws_heap_high_water(void) { return g_highest_break ? (size_t)(g_highest_break - &end) : 0; }

size_t kws_stack_high_water(void) {
  const uint32_t* p = &__stack_bottom;
  while (p < &__stack_top && *p == KWS_STACK_PAINT) ++p;
  return (size_t)((const char*)&__stack_top - (const char*)p);
}
