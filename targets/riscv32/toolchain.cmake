# Cross toolchain for riscv32 (GNU; Debian: gcc-riscv64-unknown-elf + picolibc-riscv64-unknown-elf).
# Must match the ABI of kws_step_lib.o (targets/riscv32/target.json).
set(KWS_PROCESSOR riscv32)
set(KWS_DEFAULT_PREFIX "riscv64-unknown-elf-")
# -march without _zicsr: GCC 12 picks the rv32imf/ilp32f multilib (libgcc, picolibc) only
# for this exact spelling (board code that needs CSRs enables zicsr locally).
set(KWS_ARCH_FLAGS "-march=rv32imf -mabi=ilp32f -mcmodel=medany")
include("${CMAKE_CURRENT_LIST_DIR}/../common/gnu_toolchain.cmake")
# picolibc supplies the C library and its headers. In the C flags only: CMake repeats the
# C flags on the link line, and the driver refuses a specs file given twice.
string(APPEND CMAKE_C_FLAGS_INIT " --specs=picolibc.specs")
string(APPEND CMAKE_CXX_FLAGS_INIT " --specs=picolibc.specs")
