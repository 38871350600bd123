// IREE setup and the per-hop call for the firmware (see kws_runtime.h). Device
// creation follows IREE's samples/static_library/static_library_demo.c. The VM context
// is built here from the HAL module and the EmitC module rather than through
// iree/runtime's session: the session sizes its frontier tracker for 256 queue axes
// (16 KB of heap for the one queue here) and its instance registers every HAL driver,
// which links IREE's flag parser (a 10 KB static table).

#include "kws_runtime.h"

#include <stdlib.h>
#include <string.h>

#include "iree/async/frontier_tracker.h"
#include "iree/async/util/proactor_pool.h"
#include "iree/base/threading/numa.h"
#include "iree/hal/device_group.h"
#include "iree/hal/drivers/local_sync/sync_device.h"
#include "iree/hal/local/loaders/static_library_loader.h"
#include "iree/modules/hal/module.h"
#include "iree/modules/hal/types.h"
#include "iree/vm/api.h"
// This file holds the EmitC module's definitions (and its weights).
#ifndef EMITC_IMPLEMENTATION
#define EMITC_IMPLEMENTATION
#endif
#include "kws_step_emitc.h"
#include "kws_step_io.h"
#include "kws_step_lib.h"

#ifndef KWS_ARENA_BLOCK_SIZE
#define KWS_ARENA_BLOCK_SIZE (1 * 1024)  // iree_bare_metal.h lowers IREE's 4 KiB minimum
#endif

#ifndef KWS_FRONTIER_AXES
#define KWS_FRONTIER_AXES 4  // queue axes the frontier tracker can name (one device, one queue)
#endif

static iree_vm_instance_t* g_instance;
static iree_hal_device_t* g_device;
static iree_vm_context_t* g_context;
static iree_vm_function_t g_function;
static iree_vm_list_t* g_inputs;
static iree_vm_list_t* g_outputs;
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

static iree_status_t check_range(int index, size_t offset, size_t bytes) {
  if (index < 0 || index >= KWS_NUM_STATE || offset + bytes > kws_state_info[index].bytes) {
    return iree_make_status(IREE_STATUS_OUT_OF_RANGE, "state %d: no bytes %d..%d", index,
                            (int)offset, (int)(offset + bytes));
  }
  return iree_ok_status();
}

iree_status_t kws_runtime_write_state(int index, size_t offset, const void* data, size_t bytes) {
  IREE_RETURN_IF_ERROR(check_range(index, offset, bytes));
  return iree_hal_device_transfer_h2d(g_device, data, iree_hal_buffer_view_buffer(g_state[index]),
                                      offset, bytes, IREE_HAL_TRANSFER_BUFFER_FLAG_DEFAULT,
                                      iree_infinite_timeout());
}

iree_status_t kws_runtime_read_state(int index, size_t offset, void* data, size_t bytes) {
  IREE_RETURN_IF_ERROR(check_range(index, offset, bytes));
  return iree_hal_device_transfer_d2h(g_device, iree_hal_buffer_view_buffer(g_state[index]),
                                      offset, data, bytes, IREE_HAL_TRANSFER_BUFFER_FLAG_DEFAULT,
                                      iree_infinite_timeout());
}

// The HAL module over a device group of the one device.
static iree_status_t create_hal_module(iree_allocator_t host, iree_vm_module_t** out_module) {
  iree_async_frontier_tracker_options_t options = iree_async_frontier_tracker_options_default();
  options.axis_table_capacity = KWS_FRONTIER_AXES;
  iree_async_frontier_tracker_t* tracker = NULL;
  IREE_RETURN_IF_ERROR(iree_async_frontier_tracker_create(options, host, &tracker));
  iree_hal_device_group_t* group = NULL;
  iree_status_t status = iree_hal_device_group_create_from_device(g_device, tracker, host, &group);
  iree_async_frontier_tracker_release(tracker);
  if (iree_status_is_ok(status)) {
    status = iree_hal_module_create(g_instance, iree_hal_module_device_policy_default(), group,
                                    IREE_HAL_MODULE_FLAG_NONE, iree_hal_module_debug_sink_null(),
                                    host, out_module);
  }
  iree_hal_device_group_release(group);
  return status;
}

iree_status_t kws_runtime_create(void) {
  iree_allocator_t host = iree_allocator_system();
  IREE_RETURN_IF_ERROR(iree_vm_instance_create(IREE_VM_TYPE_CAPACITY_DEFAULT, host, &g_instance));
  IREE_RETURN_IF_ERROR(iree_hal_module_register_all_types(g_instance));
  IREE_RETURN_IF_ERROR(create_device(host, &g_device));
  iree_vm_module_t* modules[2] = {NULL, NULL};
  iree_status_t status = create_hal_module(host, &modules[0]);
  if (iree_status_is_ok(status)) status = jit_kws_step_create(g_instance, host, &modules[1]);
  if (iree_status_is_ok(status)) {
    status = iree_vm_context_create_with_modules(g_instance, IREE_VM_CONTEXT_FLAG_NONE,
                                                 IREE_ARRAYSIZE(modules), modules, host,
                                                 &g_context);
  }
  for (size_t i = 0; i < IREE_ARRAYSIZE(modules); ++i) iree_vm_module_release(modules[i]);
  IREE_RETURN_IF_ERROR(status);
  IREE_RETURN_IF_ERROR(iree_vm_context_resolve_function(
      g_context, iree_make_cstring_view(KWS_FUNCTION), &g_function));
  IREE_RETURN_IF_ERROR(iree_vm_list_create(iree_vm_make_undefined_type_def(), KWS_NUM_INPUTS,
                                           host, &g_inputs));
  IREE_RETURN_IF_ERROR(iree_vm_list_create(iree_vm_make_undefined_type_def(), KWS_NUM_OUTPUTS,
                                           host, &g_outputs));
  for (int i = 0; i < KWS_NUM_STATE; ++i) {
    IREE_RETURN_IF_ERROR(make_view(kws_state_info[i].dims, kws_state_info[i].rank,
                                   kws_state_info[i].element_type, kws_state_info[i].init,
                                   kws_state_info[i].bytes, &g_state[i]));
  }
  return iree_ok_status();
}

// Non-state outputs are small (class scores, VAD flag): read back through one buffer.
static uint8_t g_output_scratch[1024];

static iree_status_t push_input(iree_hal_buffer_view_t* view) {
  iree_vm_ref_t ref = iree_hal_buffer_view_retain_ref(view);
  return iree_vm_list_push_ref_move(g_inputs, &ref);
}

iree_status_t kws_runtime_step(const float* samples, kws_output_fn emit, void* user) {
  static const int32_t hop_dims[1] = {KWS_HOP_SIZE};
  iree_hal_buffer_view_t* input = NULL;
  iree_status_t status = make_view(hop_dims, 1, IREE_HAL_ELEMENT_TYPE_FLOAT_32, samples,
                                   KWS_HOP_SIZE * sizeof(float), &input);
  if (iree_status_is_ok(status)) status = push_input(input);
  iree_hal_buffer_view_release(input);
  for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    status = push_input(g_state[i]);
  }
  if (iree_status_is_ok(status)) {
    status = iree_vm_invoke(g_context, g_function, IREE_VM_INVOCATION_FLAG_NONE,
                            /*policy=*/NULL, g_inputs, g_outputs, iree_allocator_system());
  }
  iree_vm_list_clear(g_inputs);
  // Outputs: logits, scores, (VAD/smoothing outputs), then the new state.
  for (int i = 0; i < KWS_NUM_OUTPUTS - KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    iree_hal_buffer_view_t* out = iree_vm_list_get_buffer_view_assign(g_outputs, i);
    if (!out) status = iree_make_status(IREE_STATUS_INTERNAL, "output %d is not a buffer view", i);
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
  }
  for (int i = 0; i < KWS_NUM_STATE && iree_status_is_ok(status); ++i) {
    iree_hal_buffer_view_release(g_state[i]);
    g_state[i] = iree_vm_list_get_buffer_view_retain(g_outputs,
                                                     KWS_NUM_OUTPUTS - KWS_NUM_STATE + i);
    if (!g_state[i]) status = iree_make_status(IREE_STATUS_INTERNAL, "state %d is missing", i);
  }
  iree_vm_list_clear(g_outputs);
  return status;
}

void kws_runtime_destroy(void) {
  for (int i = 0; i < KWS_NUM_STATE; ++i) iree_hal_buffer_view_release(g_state[i]);
  iree_vm_list_release(g_inputs);
  iree_vm_list_release(g_outputs);
  iree_vm_context_release(g_context);
  iree_hal_device_release(g_device);
  iree_vm_instance_release(g_instance);
}
