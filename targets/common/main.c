// kws_jax firmware for a real board: runs the exported streaming step on the
// microphone's audio and reports detections.
//
// Built against an IREE runtime source tree (IREE_SOURCE_DIR) and a dir written by
// `python -m kws_jax.compile ... --target <name>` (KWS_COMPILED_DIR), which provides:
//   kws_step_lib.h / kws_step_lib.o  dispatch code (static library loader)
//   kws_step_emitc.h                 the VM module as C, weights inside (EmitC)
//   kws_step_io.h                    hop size, labels, state shapes and initial values
// The board provides kws_board_init / kws_board_read_hop / kws_board_report (see
// below), startup code and the linker script. The IREE setup is in kws_runtime.c;
// the emulated boards use ../emulated/hostlink_main.c instead of this file.

#include <stdio.h>
#include <string.h>

#include "kws_runtime.h"
#include "kws_step_io.h"

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

static float scores[KWS_NUM_CLASSES];

static iree_status_t keep_scores(int index, const void* data, size_t bytes, void* user) {
  (void)user;
  if (index == KWS_SCORES_OUTPUT && bytes == sizeof(scores)) memcpy(scores, data, bytes);
  return iree_ok_status();
}

int main(void) {
  iree_status_t status = kws_runtime_create();
  if (iree_status_is_ok(status)) kws_board_init();
  static float samples[KWS_HOP_SIZE];
  while (iree_status_is_ok(status) && kws_board_read_hop(samples)) {
    status = kws_runtime_step(samples, keep_scores, NULL);
    if (iree_status_is_ok(status)) kws_board_report(scores);
  }
  kws_runtime_destroy();
  if (!iree_status_is_ok(status)) {
    iree_status_fprint(stderr, status);
    iree_status_free(status);
    return 1;
  }
  return 0;
}
