# Cross toolchain for cortex-m4 (GNU; Debian: gcc-arm-none-eabi, picolibc or newlib).
# Must match the ABI of kws_step_lib.o (targets/cortex-m4/target.json).
set(KWS_PROCESSOR arm)
set(KWS_DEFAULT_PREFIX "arm-none-eabi-")
set(KWS_ARCH_FLAGS "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard")
include("${CMAKE_CURRENT_LIST_DIR}/../common/gnu_toolchain.cmake")
