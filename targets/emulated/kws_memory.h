// Memory high-water marks of the emulated boards (defined by their startup code).
#ifndef KWS_MEMORY_H_
#define KWS_MEMORY_H_
#include <stddef.h>

// Highest program break reached, in bytes above the linker's `end` (the heap's peak).
size_t kws_heap_high_water(void);
// Bytes of the stack ever used (the stack is painted with a pattern at reset).
size_t kws_stack_high_water(void);

#endif  // KWS_MEMORY_H_
