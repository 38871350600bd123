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

# The IREE runtime with the options and bare-metal configuration that
# kws_jax.deploy.firmware uses for the emulated boards (runtime/CMakeLists.txt,
# iree_bare_metal.h; BUILD.md section 5 says why each is there). IREE_SOURCE_DIR
# must carry the iree_vm_ref_t alignment fix of BUILD.md section 5 on 32-bit cores.
include("${CMAKE_CURRENT_LIST_DIR}/runtime/iree_options.cmake")
add_subdirectory("${IREE_SOURCE_DIR}" iree EXCLUDE_FROM_ALL)

# The model: dispatch code as an object, the VM module as EmitC C (in main.c).
add_library(kws_model OBJECT IMPORTED)
set_target_properties(kws_model PROPERTIES IMPORTED_OBJECTS "${KWS_COMPILED_DIR}/kws_step_lib.o")

add_executable(kws_firmware
  "${CMAKE_CURRENT_LIST_DIR}/main.c"
  "${CMAKE_CURRENT_LIST_DIR}/kws_runtime.c"
  "${CMAKE_CURRENT_LIST_DIR}/generic_proactor.c"
  "${CMAKE_CURRENT_LIST_DIR}/newlib_shims.c"
  "${CMAKE_CURRENT_LIST_DIR}/wait_until.c"
  ${KWS_BOARD_SOURCES})
target_include_directories(kws_firmware PRIVATE "${KWS_COMPILED_DIR}" "${CMAKE_CURRENT_LIST_DIR}")
target_link_libraries(kws_firmware PRIVATE
  kws_model
  iree::async::platform::js::proactor
  iree::modules::hal
  iree::vm
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
