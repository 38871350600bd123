// Reset code and vector table for the emulated Cortex-M boards (QEMU mps2-an386,
// mps3-an547). Linked with -nostartfiles and newlib's librdimon (semihosting): the
// C library's stdio and exit() go to the host through QEMU.
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
void kws_paint_stack(void);

// -nostartfiles drops crti/crtn, which __libc_init_array calls into.
void _init(void) {}
void _fini(void) {}

void kws_reset_handler(void) {
  // CP10/CP11 full access: the FPU (and MVE on the M55) faults until enabled, and
  // the compiler may emit float instructions anywhere after this point.
  *(volatile uint32_t*)0xE000ED88 |= 0xFu << 20;
  __asm volatile("dsb\n\tisb" ::: "memory");
  for (uint32_t *src = &__data_load, *dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  kws_paint_stack();
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

// Any fault ends the run with a non-zero exit (QEMU's semihosting exit).
static void kws_fault_handler(void) { exit(3); }

__attribute__((section(".isr_vector"), used)) static const void* const kws_vectors[16] = {
    &__stack_top,      kws_reset_handler, kws_fault_handler, kws_fault_handler,
    kws_fault_handler, kws_fault_handler, kws_fault_handler, 0,
    0,                 0,                 0,                 kws_fault_handler,
    kws_fault_handler, 0,                 kws_fault_handler, kws_fault_handler,
};
