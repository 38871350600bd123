// Board support for QEMU's RISC-V `virt` machine with picolibc: picolibc's
// crt0-semihost starts the firmware (stack, .data, .bss, semihosting exit) and
// its picolibc.ld lays it out (addresses from firmware.json's --defsym flags), so
// this file only adds what the Cortex-M reset code does besides: the FPU, the
// stack paint, and the heap/stack marks of ../../emulated/memory.c (picolibc's
// break function is `sbrk`).
#define KWS_SBRK sbrk
#include "../../emulated/memory.c"

// Runs from picolibc's __libc_init_array, before main and before any float code.
__attribute__((constructor(101))) static void kws_board_start(void) {
  // mstatus.FS = initial: the F extension traps until enabled.
  __asm volatile(".option push\n.option arch, +zicsr\ncsrs mstatus, %0\n.option pop" ::"r"(1u << 13));
  kws_paint_stack();
}
