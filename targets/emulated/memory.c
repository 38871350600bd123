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
// firmware links with -Wl,--wrap=KWS_SBRK (the C library's break function: newlib
// `_sbrk`, picolibc `sbrk`) and every break move passes through here.
#ifndef KWS_SBRK
#define KWS_SBRK _sbrk
#endif
#define KWS_PASTE2(a, b) a##b
#define KWS_PASTE(a, b) KWS_PASTE2(a, b)
#define KWS_REAL_SBRK KWS_PASTE(__real_, KWS_SBRK)
#define KWS_WRAP_SBRK KWS_PASTE(__wrap_, KWS_SBRK)
void* KWS_REAL_SBRK(ptrdiff_t increment);
static char* g_highest_break;

void* KWS_WRAP_SBRK(ptrdiff_t increment) {
  void* previous = KWS_REAL_SBRK(increment);
  char* now = (char*)KWS_REAL_SBRK(0);
  if (now > g_highest_break) g_highest_break = now;
  return previous;
}

size_t kws_heap_high_water(void) { return g_highest_break ? (size_t)(g_highest_break - &end) : 0; }

size_t kws_stack_high_water(void) {
  const uint32_t* p = &__stack_bottom;
  while (p < &__stack_top && *p == KWS_STACK_PAINT) ++p;
  return (size_t)((const char*)&__stack_top - (const char*)p);
}
