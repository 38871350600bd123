# Shared firmware build for targets/<name>/CMakeLists.txt (see BUILD.md).
#
# Inputs (cache variables):
#   IREE_SOURCE_DIR    IREE source tree, the release matching iree-base-compiler
#                      (git clone --branch v3.13.0 https://github.com/iree-org/iree
#                      and `git submodule update --init`); only its runtime is built.
#   KWS_COMPILED_DIR   output of `python -m kws_jax.compile EXPORT --target <name> --out DIR`
#   KWS_BOARD_SOURCES  board support: startup code, clocks, microphone, UART (optional)
#   KWS_LINKER_SCRIPT  the board's linker script (optional; without it the skeleton
#                      links with the toolchain's default, enough to check the build)

set(IREE_SOURCE_DIR "" CACHE PATH "IREE source tree (runtime is built from it)")
set(KWS_COMPILED_DIR "" CACHE PATH "python -m kws_jax.compile output dir for this target")
set(KWS_BOARD_SOURCES "" CACHE STRING "board support sources (startup, drivers)")
set(KWS_LINKER_SCRIPT "" CACHE FILEPATH "board linker script")
if(NOT EXISTS "${IREE_SOURCE_DIR}/runtime/src/iree/runtime/api.h")
  message(FATAL_ERROR "set -DIREE_SOURCE_DIR=<IREE source tree>; ${IREE_SOURCE_DIR} has no runtime/")
endif()
foreach(file kws_step_lib.o kws_step_lib.h kws_step_emitc.h kws_step_io.h)
  if(NOT EXISTS "${KWS_COMPILED_DIR}/${file}")
    message(FATAL_ERROR "set -DKWS_COMPILED_DIR=<python -m kws_jax.compile --target ${KWS_TARGET} output>; "
                        "${KWS_COMPILED_DIR}/${file} is missing")
  endif()
endforeach()

# IREE runtime only, single-threaded, synchronous CPU driver, no file system
# (iree.dev "Running on a bare-metal platform").
set(IREE_BUILD_COMPILER OFF CACHE BOOL "" FORCE)
set(IREE_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(IREE_BUILD_SAMPLES OFF CACHE BOOL "" FORCE)
set(IREE_BUILD_BINDINGS_TFLITE OFF CACHE BOOL "" FORCE)
set(IREE_BUILD_BINDINGS_TFLITE_JAVA OFF CACHE BOOL "" FORCE)
set(IREE_ENABLE_THREADING OFF CACHE BOOL "" FORCE)
set(IREE_HAL_DRIVER_DEFAULTS OFF CACHE BOOL "" FORCE)
set(IREE_HAL_DRIVER_LOCAL_SYNC ON CACHE BOOL "" FORCE)
set(IREE_HAL_EXECUTABLE_LOADER_DEFAULTS OFF CACHE BOOL "" FORCE)
set(IREE_HAL_EXECUTABLE_PLUGIN_DEFAULTS OFF CACHE BOOL "" FORCE)
add_compile_definitions(
  IREE_PLATFORM_GENERIC=1
  IREE_SYNCHRONIZATION_DISABLE_UNSAFE=1
  IREE_FILE_IO_ENABLE=0
  "IREE_TIME_NOW_FN=\{return 0;\}"
  "IREE_WAIT_UNTIL_FN=kws_wait_until")
add_subdirectory("${IREE_SOURCE_DIR}" iree EXCLUDE_FROM_ALL)

# The model: dispatch code as an object, the VM module as EmitC C (in main.c).
add_library(kws_model OBJECT IMPORTED)
set_target_properties(kws_model PROPERTIES IMPORTED_OBJECTS "${KWS_COMPILED_DIR}/kws_step_lib.o")

add_executable(kws_firmware
  "${CMAKE_CURRENT_LIST_DIR}/main.c"
  "${CMAKE_CURRENT_LIST_DIR}/wait_until.c"
  ${KWS_BOARD_SOURCES})
target_include_directories(kws_firmware PRIVATE "${KWS_COMPILED_DIR}")
target_compile_definitions(kws_firmware PRIVATE EMITC_IMPLEMENTATION)
target_link_libraries(kws_firmware PRIVATE
  kws_model
  iree::runtime
  iree::hal::drivers::local_sync::sync_driver
  iree::hal::local::loaders::static_library_loader
  iree::vm::shims_emitc)
target_link_options(kws_firmware PRIVATE -Wl,--gc-sections -Wl,--print-memory-usage
                    --specs=nano.specs --specs=nosys.specs)
if(KWS_LINKER_SCRIPT)
  target_link_options(kws_firmware PRIVATE "-T${KWS_LINKER_SCRIPT}")
endif()
add_custom_command(TARGET kws_firmware POST_BUILD
  COMMAND ${CMAKE_SIZE} "$<TARGET_FILE:kws_firmware>" || true
  COMMAND ${CMAKE_OBJCOPY} -O binary "$<TARGET_FILE:kws_firmware>" "$<TARGET_FILE:kws_firmware>.bin"
  COMMENT "size of the firmware; kws_firmware.bin is the image to flash")
