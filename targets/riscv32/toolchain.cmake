# Cross toolchain for riscv32 (GNU; Debian: gcc-riscv64-unknown-elf, picolibc or newlib).
# Must match the ABI of kws_step_lib.o (targets/riscv32/target.json).
set(KWS_PROCESSOR riscv32)
set(KWS_DEFAULT_PREFIX "riscv64-unknown-elf-")
set(KWS_ARCH_FLAGS "-march=rv32imf_zicsr -mabi=ilp32f -mcmodel=medany")
include("${CMAKE_CURRENT_LIST_DIR}/../common/gnu_toolchain.cmake")
