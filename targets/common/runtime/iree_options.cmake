# IREE runtime options for bare-metal firmware (included by CMakeLists.txt here and by
# ../kws_firmware.cmake, before add_subdirectory(IREE_SOURCE_DIR)).
# Runtime only, single-threaded, synchronous CPU driver, no file system, no POSIX
# (iree.dev "Running on a bare-metal platform").
foreach(option IREE_BUILD_COMPILER IREE_BUILD_TESTS IREE_BUILD_SAMPLES IREE_BUILD_DOCS
        IREE_BUILD_BINDINGS_TFLITE IREE_BUILD_BINDINGS_TFLITE_JAVA
        IREE_BUILD_ALL_CHECK_TEST_MODULES IREE_ENABLE_THREADING IREE_ENABLE_POSIX
        IREE_ENABLE_CPUINFO IREE_ENABLE_LIBBACKTRACE IREE_ENABLE_POSITION_INDEPENDENT_CODE
        IREE_HAL_DRIVER_DEFAULTS IREE_HAL_EXECUTABLE_LOADER_DEFAULTS
        IREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS IREE_ENABLE_WERROR_FLAG)
  set(${option} OFF CACHE BOOL "" FORCE)
endforeach()
set(IREE_SYNCHRONIZATION_DISABLE_UNSAFE ON CACHE BOOL "" FORCE)
set(IREE_HAL_DRIVER_LOCAL_SYNC ON CACHE BOOL "" FORCE)
# No libdl on bare metal; -lm here because IREE's archives need fma from libm.
set(CMAKE_DL_LIBS "")
set(CMAKE_C_STANDARD_LIBRARIES "-lm")
add_compile_options(
  "$<$<COMPILE_LANGUAGE:C,CXX>:SHELL:-include ${CMAKE_CURRENT_LIST_DIR}/../iree_bare_metal.h>")
