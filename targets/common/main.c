// kws_jax firmware skeleton: runs the exported streaming step on a microcontroller.
//
// Built by targets/<name>/CMakeLists.txt against an IREE runtime source tree
// (IREE_SOURCE_DIR) and a dir written by `python -m kws_jax.compile ... --target <name>`
// (KWS_COMPILED_DIR), which provides:
//   kws_step_lib.h / kws_step_lib.o  dispatch code (static library loader)
//   kws_step_emitc.h                 the VM module as C, weights inside (EmitC)
//   kws_step_io.h                    hop size, labels, state shapes and initial values
// The board provides kws_board_init / kws_board_read_hop / kws_board_report (see
// below), startup code and the linker script. Device creation follows IREE's
// samples/static_library/static_library_demo.c; if the runtime at IREE_SOURCE_DIR
// predates `iree_hal_device_create_params_t`, build with -DKWS_IREE_LEGACY_DEVICE_API=1.

#include <stdio.h>
#include <string.h>

#include "iree/hal/drivers/local_sync/sync_device.h"
#include "iree/hal/local/loaders/static_library_loader.h"
#include "iree/modules/hal/module.h"
#include "iree/runtime/api.h"
#include "kws_step_emitc.h"
#include "kws_step_io.h"
#include "kws_step_lib.h"

#if !KWS_IREE_LEGACY_DEVICE_API
#include "iree/async/util/proactor_pool.h"
#include "iree/base/threading/numa.h"
#endif

// ----------------------------------------------------------------- board hooks
// Weak defaults so the skeleton links on any board; replace them in board code.

// Called once before the first hop (clocks, microphone, UART, ...).
__attribute__((weak)) void kws_board_init(void) {}

// Fills `samples` with the next KWS_HOP_SIZE samples in [-1, 1]; returns 0 at end of input.
__attribute__((weak)) int kws_board_read_hop(float* samples) {
  memset(samples, 0, KWS_HOP_SIZE * sizeof(float));
  return 1;
}

// Called with the class scores after every hop.
__attribute__((weak)) void kws_board_report(const float* scores) {
  int best = 0;
  for (int i = 1; i < KWS_NUM_CLASSES; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  if (best > 1 && scores[best] > 0.8f) printf("%s %.2f\n", kws_labels[best], scores[best]);
}

// ----------------------------------------------------------------- IREE setup

static iree_status_t create_device(iree_allocator_t host_allocator, iree_hal_device_t** out_device) {
  const iree_hal_executable_library_query_fn_t libraries[] = {
      jit_kws_step_linked_library_query,
  };
  iree_hal_executable_loader_t* loader = NULL;
  IREE_RETURN_IF_ERROR(iree_hal_static_library_loader_create(
      IREE_ARRAYSIZE(libraries), libraries, iree_hal_executable_import_provider_null(),
      host_allocator, &loader));
  iree_string_view_t identifier = iree_make_cstring_view("local-sync");
  iree_hal_allocator_t* device_allocator = NULL;
  iree_status_t status = iree_hal_allocator_create_heap(identifier, host_allocator,
                                                        host_allocator, &device_allocator);
  iree_hal_sync_device_params_t params;
  iree_hal_sync_device_params_initialize(&params);
#if KWS_IREE_LEGACY_DEVICE_API
  if (iree_status_is_ok(status)) {
    status = iree_hal_sync_device_create(identifier, &params, /*loader_count=*/1, &loader,
                                         device_allocator, host_allocator, out_device);
  }
#else
  iree_async_proactor_pool_t* proactor_pool = NULL;
  if (iree_status_is_ok(status)) {
    status = iree_async_proactor_pool_create(iree_numa_node_count(), /*node_ids=*/NULL,
                                             iree_async_proactor_pool_options_default(),
                                             host_allocator, &proactor_pool);
  }
  iree_hal_device_create_params_t create_params = iree_hal_device_create_params_default();
  create_params.proactor_pool = proactor_pool;
  if (iree_status_is_ok(status)) {
    status = iree_hal_sync_device_create(identifier, &params, &create_params,
                                         /*loader_count=*/1, &loader, device_allocator,
                                         host_allocator, out_device);
  }
  iree_async_proactor_pool_release(proactor_pool);
#endif
  iree_hal_allocator_release(device_allocator);
  iree_hal_executable_loader_release(loader);
  return status;
}

static iree_status_t make_view(iree_hal_device_t* device, const int32_t* dims, int rank,
                               iree_hal_element_type_t element_type, const void* data,
                               iree_host_size_t bytes, iree_hal_buffer_view_t** out_view) {
  iree_hal_dim_t shape[8];
  for (int i = 0; i < rank; ++i) shape[i] = (iree_hal_dim_t)dims[i];
  return iree_hal_buffer_view_allocate_buffer_copy(
      device, iree_hal_device_allocator(device), (iree_host_size_t)rank, shape,
      element_type, IREE_HAL_ENCODING_TYPE_DENSE_ROW_MAJOR,
      (iree_hal_buffer_params_t){.type = IREE_HAL_MEMORY_TYPE_DEVICE_LOCAL,
                                 .usage = IREE_HAL_BUFFER_USAGE_DEFAULT},
      iree_make_const_byte_span(data, bytes), out_view);
}

static iree_status_t run(void) {
  iree_runtime_instance_options_t instance_options;
  iree_runtime_instance_options_initialize(&instance_options);
  iree_runtime_instance_t* instance = NULL;
  IREE_RETURN_IF_ERROR(iree_runtime_instance_create(&instance_options, iree_allocator_system(),
                                                    &instance));
  iree_hal_device_t* device = NULL;
  iree_status_t status = create_device(iree_allocator_system(), &device);
  iree_runtime_session_options_t session_options;
  iree_runtime_session_options_initialize(&session_options);
  iree_runtime_session_t* session = NULL;
  if (iree_status_is_ok(status)) {
    status = iree_runtime_session_create_with_device(
        instance, &session_options, device, iree_runtime_instance_host_allocator(instance),
        &session);
  }
  iree_vm_module_t* module = NULL;
  if (iree_status_is_ok(status)) {
    status = jit_kws_step_create(iree_runtime_instance_vm_instance(instance),
                                 iree_allocator_system(), &module);
  }
  if (iree_status_is_ok(status)) status = iree_runtime_session_append_module(session, module);
  iree_runtime_call_t call;
  memset(&call, 0, sizeof(call));
  if (iree_status_is_ok(status)) {
    status = iree_runtime_call_initialize_by_name(session, iree_make_cstring_view(KWS_FUNCTION),
                                                  &call);
  }

  // The state lives in buffer views that each call's outputs replace; it starts
  // from the initial values in kws_step_io.h.
  iree_hal_buffer_view_t* state[KWS_NUM_STATE] = {0};
#define KWS_INIT_STATE_VIEW(i)                                                          \
  if (iree_status_is_ok(status)) {                                                      \
    status = make_view(device, kws_state##i##_dims, KWS_STATE##i##_RANK,                \
                       KWS_STATE##i##_ELEMENT_TYPE, kws_state##i##_init,                \
                       sizeof(kws_state##i##_init), &state[i]);                         \
  }
  KWS_FOR_EACH_STATE(KWS_INIT_STATE_VIEW)
#undef KWS_INIT_STATE_VIEW
  kws_board_init();
  static float samples[KWS_HOP_SIZE];
  static float scores[KWS_NUM_CLASSES];
  const int32_t hop_dims[1] = {KWS_HOP_SIZE};
  while (iree_status_is_ok(status) && kws_board_read_hop(samples)) {
    iree_hal_buffer_view_t* input = NULL;
    status = make_view(device, hop_dims, 1, IREE_HAL_ELEMENT_TYPE_FLOAT_32, samples,
                       sizeof(samples), &input);
    if (iree_status_is_ok(status)) status = iree_runtime_call_inputs_push_back_buffer_view(&call, input);
    iree_hal_buffer_view_release(input);
    for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
      status = iree_runtime_call_inputs_push_back_buffer_view(&call, state[i]);
    }
    if (iree_status_is_ok(status)) status = iree_runtime_call_invoke(&call, /*flags=*/0);
    // Outputs: logits, scores, (VAD/smoothing outputs), then the new state.
    for (int i = 0; i < KWS_NUM_OUTPUTS - KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
      iree_hal_buffer_view_t* out = NULL;
      status = iree_runtime_call_outputs_pop_front_buffer_view(&call, &out);
      if (iree_status_is_ok(status) && i == KWS_SCORES_OUTPUT) {
        status = iree_hal_device_transfer_d2h(device, iree_hal_buffer_view_buffer(out), 0, scores,
                                              sizeof(scores), IREE_HAL_TRANSFER_BUFFER_FLAG_DEFAULT,
                                              iree_infinite_timeout());
      }
      iree_hal_buffer_view_release(out);
    }
    for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
      iree_hal_buffer_view_release(state[i]);
      state[i] = NULL;
      status = iree_runtime_call_outputs_pop_front_buffer_view(&call, &state[i]);
    }
    iree_runtime_call_reset(&call);
    if (iree_status_is_ok(status)) kws_board_report(scores);
  }
  for (int i = 0; i < KWS_NUM_STATE; ++i) iree_hal_buffer_view_release(state[i]);
  iree_runtime_call_deinitialize(&call);
  iree_vm_module_release(module);
  iree_runtime_session_release(session);
  iree_hal_device_release(device);
  iree_runtime_instance_release(instance);
  return status;
}

int main(void) {
  iree_status_t status = run();
  if (!iree_status_is_ok(status)) {
    iree_status_fprint(stderr, status);
    iree_status_free(status);
    return 1;
  }
  return 0;
}
