# Cross toolchain for cortex-m55 (GNU; Debian: gcc-arm-none-eabi, picolibc or newlib).
# Must match the ABI of kws_step_lib.o (targets/cortex-m55/target.json).
set(KWS_PROCESSOR arm)
set(KWS_DEFAULT_PREFIX "arm-none-eabi-")
set(KWS_ARCH_FLAGS "-mcpu=cortex-m55 -mthumb -mfloat-abi=hard")
include("${CMAKE_CURRENT_LIST_DIR}/../common/gnu_toolchain.cmake")
