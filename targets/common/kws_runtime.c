// IREE setup and the per-hop call for the firmware (see kws_runtime.h). Device
// creation follows IREE's samples/static_library/static_library_demo.c; if the
// runtime predates `iree_hal_device_create_params_t`, build with
// -DKWS_IREE_LEGACY_DEVICE_API=1.

#include "kws_runtime.h"

#include <stdlib.h>
#include <string.h>

#include "iree/hal/drivers/local_sync/sync_device.h"
#include "iree/hal/local/loaders/static_library_loader.h"
#include "iree/modules/hal/module.h"
#include "iree/runtime/api.h"
// This file holds the EmitC module's definitions (and its weights).
#ifndef EMITC_IMPLEMENTATION
#define EMITC_IMPLEMENTATION
#endif
#include "kws_step_emitc.h"
#include "kws_step_io.h"
#include "kws_step_lib.h"

#if !KWS_IREE_LEGACY_DEVICE_API
#include "iree/async/util/proactor_pool.h"
#include "iree/base/threading/numa.h"
#endif

#ifndef KWS_ARENA_BLOCK_SIZE
#define KWS_ARENA_BLOCK_SIZE (4 * 1024)  // IREE's minimum
#endif

static iree_runtime_instance_t* g_instance;
static iree_hal_device_t* g_device;
static iree_runtime_session_t* g_session;
static iree_vm_module_t* g_module;
static iree_runtime_call_t g_call;
// The state lives in buffer views that each call's outputs replace.
static iree_hal_buffer_view_t* g_state[KWS_NUM_STATE];

#define KWS_STATE_INFO(i) {kws_state##i##_dims, KWS_STATE##i##_RANK, KWS_STATE##i##_ELEMENT_TYPE, \
                           kws_state##i##_init, sizeof(kws_state##i##_init)},
static const struct {
  const int32_t* dims;
  int rank;
  iree_hal_element_type_t element_type;
  const void* init;
  size_t bytes;
} kws_state_info[KWS_NUM_STATE > 0 ? KWS_NUM_STATE : 1] = {KWS_FOR_EACH_STATE(KWS_STATE_INFO)};
#undef KWS_STATE_INFO

// Buffer storage: malloc instead of calloc, and blocks kept for reuse. The HAL does not
// promise zeroed buffers (compiled programs fill what they read), and zeroing every step's
// transient buffers cost the Cortex-M4 ~54 k instructions of memset per hop (8 % of the
// streaming DS-CNN's step; `--profile` of kws_jax.bench.firmware_instructions). Every step
// allocates buffers of the same sizes, so a freed block waits for the next request of its
// exact size instead of going back to malloc: no malloc/free per buffer, and no heap
// fragmentation (newlib's heap high-water otherwise grew from 130 KB after one hop to
// 192 KB after 50). A heap allocator with its own data allocator stores buffers "split",
// and this runtime frees split storage with iree_allocator_free although it came from
// iree_allocator_malloc_aligned: FREE may get the aligned pointer instead of the block,
// which the block table resolves.
#ifndef KWS_MAX_BUFFERS
#define KWS_MAX_BUFFERS 256
#endif
static struct {
  void* ptr;
  iree_host_size_t bytes;
  int in_use;
} g_blocks[KWS_MAX_BUFFERS];
static int g_num_blocks;

static int find_block(void* ptr) {
  for (int i = 0; i < g_num_blocks; ++i) {
    if (g_blocks[i].in_use && g_blocks[i].ptr == ptr) return i;
  }
  return -1;
}

static iree_status_t kws_buffer_storage_ctl(void* self, iree_allocator_command_t command,
                                            const void* params, void** inout_ptr) {
  (void)self;
  if (command == IREE_ALLOCATOR_COMMAND_FREE) {
    void* ptr = *inout_ptr;
    if (!ptr) return iree_ok_status();
    int i = find_block(ptr);
    if (i < 0) i = find_block(((void**)ptr)[-1]);  // an aligned pointer: its block precedes it
    if (i < 0) return iree_make_status(IREE_STATUS_INTERNAL, "freeing an unknown buffer block");
    g_blocks[i].in_use = 0;
    *inout_ptr = NULL;
    return iree_ok_status();
  }
  if (command != IREE_ALLOCATOR_COMMAND_MALLOC && command != IREE_ALLOCATOR_COMMAND_CALLOC) {
    return iree_make_status(IREE_STATUS_UNIMPLEMENTED, "buffer storage: malloc and free only");
  }
  const iree_host_size_t bytes = ((const iree_allocator_alloc_params_t*)params)->byte_length;
  for (int i = 0; i < g_num_blocks; ++i) {
    if (!g_blocks[i].in_use && g_blocks[i].bytes == bytes) {
      g_blocks[i].in_use = 1;
      *inout_ptr = g_blocks[i].ptr;
      return iree_ok_status();
    }
  }
  if (g_num_blocks == KWS_MAX_BUFFERS) {
    return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED,
                            "more than KWS_MAX_BUFFERS buffer blocks: build with a larger one");
  }
  void* block = malloc(bytes);
  if (!block) return iree_make_status(IREE_STATUS_RESOURCE_EXHAUSTED, "out of heap");
  g_blocks[g_num_blocks].ptr = block;
  g_blocks[g_num_blocks].bytes = bytes;
  g_blocks[g_num_blocks].in_use = 1;
  ++g_num_blocks;
  *inout_ptr = block;
  return iree_ok_status();
}

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
  const iree_allocator_t buffer_storage = {NULL, kws_buffer_storage_ctl};
  iree_status_t status = iree_hal_allocator_create_heap(identifier, buffer_storage,
                                                        host_allocator, &device_allocator);
  iree_hal_sync_device_params_t params;
  iree_hal_sync_device_params_initialize(&params);
  // The default 32 KiB blocks are sized for host transients; a step's command
  // buffers need far less, and every block is RAM on a microcontroller.
  params.arena_block_size = KWS_ARENA_BLOCK_SIZE;
#if KWS_IREE_LEGACY_DEVICE_API
  if (iree_status_is_ok(status)) {
    status = iree_hal_sync_device_create(identifier, &params, /*loader_count=*/1, &loader,
                                         device_allocator, host_allocator, out_device);
  }
#else
  // Zeroed pool options: no runner thread (there are no threads); the proactor
  // itself comes from generic_proactor.c.
  iree_async_proactor_pool_t* proactor_pool = NULL;
  iree_async_proactor_pool_options_t pool_options;
  memset(&pool_options, 0, sizeof(pool_options));
  if (iree_status_is_ok(status)) {
    status = iree_async_proactor_pool_create(iree_numa_node_count(), /*node_ids=*/NULL,
                                             pool_options, host_allocator, &proactor_pool);
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

static iree_status_t make_view(const int32_t* dims, int rank, iree_hal_element_type_t element_type,
                               const void* data, iree_host_size_t bytes,
                               iree_hal_buffer_view_t** out_view) {
  iree_hal_dim_t shape[8];
  for (int i = 0; i < rank; ++i) shape[i] = (iree_hal_dim_t)dims[i];
  return iree_hal_buffer_view_allocate_buffer_copy(
      g_device, iree_hal_device_allocator(g_device), (iree_host_size_t)rank, shape,
      element_type, IREE_HAL_ENCODING_TYPE_DENSE_ROW_MAJOR,
      (iree_hal_buffer_params_t){.type = IREE_HAL_MEMORY_TYPE_DEVICE_LOCAL,
                                 .usage = IREE_HAL_BUFFER_USAGE_DEFAULT},
      iree_make_const_byte_span(data, bytes), out_view);
}

int kws_runtime_num_state(void) { return KWS_NUM_STATE; }

size_t kws_runtime_state_bytes(int index) { return kws_state_info[index].bytes; }

iree_status_t kws_runtime_set_state(int index, const void* data, size_t bytes) {
  if (index < 0 || index >= KWS_NUM_STATE || bytes != kws_state_info[index].bytes) {
    return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "state %d: wrong index or size", index);
  }
  iree_hal_buffer_view_release(g_state[index]);
  g_state[index] = NULL;
  return make_view(kws_state_info[index].dims, kws_state_info[index].rank,
                   kws_state_info[index].element_type, data, bytes, &g_state[index]);
}

iree_status_t kws_runtime_get_state(int index, void* data, size_t bytes) {
  if (index < 0 || index >= KWS_NUM_STATE || bytes != kws_state_info[index].bytes) {
    return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "state %d: wrong index or size", index);
  }
  return iree_hal_device_transfer_d2h(g_device, iree_hal_buffer_view_buffer(g_state[index]), 0,
                                      data, bytes, IREE_HAL_TRANSFER_BUFFER_FLAG_DEFAULT,
                                      iree_infinite_timeout());
}

iree_status_t kws_runtime_create(void) {
  iree_runtime_instance_options_t instance_options;
  iree_runtime_instance_options_initialize(&instance_options);
  IREE_RETURN_IF_ERROR(iree_runtime_instance_create(&instance_options, iree_allocator_system(),
                                                    &g_instance));
  IREE_RETURN_IF_ERROR(create_device(iree_allocator_system(), &g_device));
  iree_runtime_session_options_t session_options;
  iree_runtime_session_options_initialize(&session_options);
  IREE_RETURN_IF_ERROR(iree_runtime_session_create_with_device(
      g_instance, &session_options, g_device, iree_runtime_instance_host_allocator(g_instance),
      &g_session));
  IREE_RETURN_IF_ERROR(jit_kws_step_create(iree_runtime_instance_vm_instance(g_instance),
                                           iree_allocator_system(), &g_module));
  IREE_RETURN_IF_ERROR(iree_runtime_session_append_module(g_session, g_module));
  IREE_RETURN_IF_ERROR(iree_runtime_call_initialize_by_name(
      g_session, iree_make_cstring_view(KWS_FUNCTION), &g_call));
  for (int i = 0; i < KWS_NUM_STATE; ++i) {
    IREE_RETURN_IF_ERROR(kws_runtime_set_state(i, kws_state_info[i].init, kws_state_info[i].bytes));
  }
  return iree_ok_status();
}

// Non-state outputs are small (class scores, VAD flag): read back through one buffer.
static uint8_t g_output_scratch[1024];

iree_status_t kws_runtime_step(const float* samples, kws_output_fn emit, void* user) {
  static const int32_t hop_dims[1] = {KWS_HOP_SIZE};
  iree_hal_buffer_view_t* input = NULL;
  iree_status_t status = make_view(hop_dims, 1, IREE_HAL_ELEMENT_TYPE_FLOAT_32, samples,
                                   KWS_HOP_SIZE * sizeof(float), &input);
  if (iree_status_is_ok(status)) status = iree_runtime_call_inputs_push_back_buffer_view(&g_call, input);
  iree_hal_buffer_view_release(input);
  for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    status = iree_runtime_call_inputs_push_back_buffer_view(&g_call, g_state[i]);
  }
  if (iree_status_is_ok(status)) status = iree_runtime_call_invoke(&g_call, /*flags=*/0);
  // Outputs: logits, scores, (VAD/smoothing outputs), then the new state.
  for (int i = 0; i < KWS_NUM_OUTPUTS - KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    iree_hal_buffer_view_t* out = NULL;
    status = iree_runtime_call_outputs_pop_front_buffer_view(&g_call, &out);
    iree_host_size_t bytes = iree_status_is_ok(status) ? iree_hal_buffer_view_byte_length(out) : 0;
    if (iree_status_is_ok(status) && bytes > sizeof(g_output_scratch)) {
      status = iree_make_status(IREE_STATUS_OUT_OF_RANGE, "output %d has %d bytes", i, (int)bytes);
    }
    if (iree_status_is_ok(status)) {
      status = iree_hal_device_transfer_d2h(g_device, iree_hal_buffer_view_buffer(out), 0,
                                            g_output_scratch, bytes,
                                            IREE_HAL_TRANSFER_BUFFER_FLAG_DEFAULT,
                                            iree_infinite_timeout());
    }
    if (iree_status_is_ok(status)) status = emit(i, g_output_scratch, bytes, user);
    iree_hal_buffer_view_release(out);
  }
  for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    iree_hal_buffer_view_release(g_state[i]);
    g_state[i] = NULL;
    status = iree_runtime_call_outputs_pop_front_buffer_view(&g_call, &g_state[i]);
  }
  iree_runtime_call_reset(&g_call);
  return status;
}

void kws_runtime_destroy(void) {
  for (int i = 0; i < KWS_NUM_STATE; ++i) iree_hal_buffer_view_release(g_state[i]);
  iree_runtime_call_deinitialize(&g_call);
  iree_vm_module_release(g_module);
  iree_runtime_session_release(g_session);
  iree_hal_device_release(g_device);
  iree_runtime_instance_release(g_instance);
}
