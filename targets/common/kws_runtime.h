// The exported streaming step on the IREE runtime, behind a small C API that both
// firmware mains use: main.c (a real board: microphone in, detections out through
// the weak board hooks) and ../emulated/hostlink_main.c (QEMU: a host program
// drives it hop by hop over semihosting).
#ifndef KWS_RUNTIME_H_
#define KWS_RUNTIME_H_

#include <stddef.h>

#include "iree/base/api.h"

// Called by kws_runtime_step for each non-state output, in meta.json order.
typedef iree_status_t (*kws_output_fn)(int index, const void* data, size_t bytes, void* user);

// Creates the VM instance, device (local-sync + static library), HAL module, model and context,
// and the state from kws_step_io.h's initial values.
iree_status_t kws_runtime_create(void);
void kws_runtime_destroy(void);

int kws_runtime_num_state(void);
size_t kws_runtime_state_bytes(int index);
// Writes / reads bytes offset..offset+bytes of state `index` (raw row-major data of its
// meta.json dtype), in place: a caller needs no buffer of a whole state array.
iree_status_t kws_runtime_write_state(int index, size_t offset, const void* data, size_t bytes);
iree_status_t kws_runtime_read_state(int index, size_t offset, void* data, size_t bytes);

// One hop of KWS_HOP_SIZE samples; the new state stays on the device.
iree_status_t kws_runtime_step(const float* samples, kws_output_fn emit, void* user);

#endif  // KWS_RUNTIME_H_
