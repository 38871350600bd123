# Cross toolchain for riscv32 (GNU; Debian: gcc-riscv64-unknown-elf, picolibc or newlib).
# Must match the ABI of kws_step_lib.o (targets/riscv32/target.json).
set(KWS_PROCESSOR riscv32)
set(KWS_DEFAULT_PREFIX "riscv64-unknown-elf-")
# picolibc (Debian: picolibc-riscv64-unknown-elf) supplies the C library and its headers.
# -march without _zicsr: GCC 12 picks the rv32imf/ilp32f multilib (libgcc, picolibc) only
# for this exact spelling (board code that needs CSRs enables zicsr locally).
set(KWS_ARCH_FLAGS "-march=rv32imf -mabi=ilp32f -mcmodel=medany --specs=picolibc.specs")
include("${CMAKE_CURRENT_LIST_DIR}/../common/gnu_toolchain.cmake")
