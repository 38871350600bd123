// kws_jax firmware for the emulated boards (QEMU): a host program drives the step
// hop by hop (kws_jax.deploy.firmware_runner). QEMU's semihosting opens host files
// relative to its working directory; the host makes two named pipes there:
//   kws_in   host -> firmware: commands (one uint32 each) and their payloads
//   kws_out  firmware -> host: a uint32 status (0 = ok) and the reply
// Commands: STEP + KWS_HOP_SIZE floats -> the non-state outputs' bytes;
// SET_STATE + every state array's bytes; GET_STATE -> every state array's bytes;
// INFO -> uint32 heap and stack high-water marks; QUIT.
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kws_memory.h"
#include "kws_runtime.h"
#include "kws_step_io.h"

enum { KWS_QUIT = 0, KWS_STEP = 1, KWS_SET_STATE = 2, KWS_GET_STATE = 3, KWS_INFO = 4 };

static int g_in = -1, g_out = -1;

static int read_all(void* data, size_t bytes) {
  uint8_t* p = data;
  while (bytes) {
    int n = read(g_in, p, bytes);
    if (n <= 0) return 0;
    p += n;
    bytes -= (size_t)n;
  }
  return 1;
}

static iree_status_t write_all(const void* data, size_t bytes) {
  const uint8_t* p = data;
  while (bytes) {
    int n = write(g_out, p, bytes);
    if (n <= 0) return iree_make_status(IREE_STATUS_UNAVAILABLE, "kws_out: write failed");
    p += n;
    bytes -= (size_t)n;
  }
  return iree_ok_status();
}

// A reply is collected first so that a failing step sends only the failure status.
static uint8_t g_reply[1024];
static size_t g_reply_bytes;

static iree_status_t collect_output(int index, const void* data, size_t bytes, void* user) {
  (void)index;
  (void)user;
  if (g_reply_bytes + bytes > sizeof(g_reply)) {
    return iree_make_status(IREE_STATUS_OUT_OF_RANGE, "outputs exceed %d bytes", (int)sizeof(g_reply));
  }
  memcpy(g_reply + g_reply_bytes, data, bytes);
  g_reply_bytes += bytes;
  return iree_ok_status();
}

// Empty: the instruction-count plugin reports its running count whenever this runs
// (kws_jax.deploy.firmware.MARK_SYMBOL), before and after each step.
__attribute__((noinline, used)) void kws_count_mark(void) { __asm volatile("" ::: "memory"); }

// State arrays travel in chunks of this many bytes (not a buffer of the largest one).
static uint8_t g_chunk[256];

// Bytes of state `index`'s chunk starting at byte `at`.
static size_t chunk_bytes(int index, size_t at) {
  size_t left = kws_runtime_state_bytes(index) - at;
  return left < sizeof(g_chunk) ? left : sizeof(g_chunk);
}

static iree_status_t handle(uint32_t command) {
  static const uint32_t ok = 0;
  static float samples[KWS_HOP_SIZE];
  switch (command) {
    case KWS_STEP: {
      if (!read_all(samples, sizeof(samples))) return iree_make_status(IREE_STATUS_DATA_LOSS, "short hop");
      g_reply_bytes = 0;
      kws_count_mark();
      iree_status_t status = kws_runtime_step(samples, collect_output, NULL);
      kws_count_mark();
      IREE_RETURN_IF_ERROR(status);
      IREE_RETURN_IF_ERROR(write_all(&ok, sizeof(ok)));
      return write_all(g_reply, g_reply_bytes);
    }
    case KWS_SET_STATE:
      for (int i = 0; i < kws_runtime_num_state(); ++i) {
        for (size_t at = 0, n; at < kws_runtime_state_bytes(i); at += n) {
          n = chunk_bytes(i, at);
          if (!read_all(g_chunk, n)) return iree_make_status(IREE_STATUS_DATA_LOSS, "short state");
          IREE_RETURN_IF_ERROR(kws_runtime_write_state(i, at, g_chunk, n));
        }
      }
      return write_all(&ok, sizeof(ok));
    case KWS_GET_STATE:
      IREE_RETURN_IF_ERROR(write_all(&ok, sizeof(ok)));
      for (int i = 0; i < kws_runtime_num_state(); ++i) {
        for (size_t at = 0, n; at < kws_runtime_state_bytes(i); at += n) {
          n = chunk_bytes(i, at);
          IREE_RETURN_IF_ERROR(kws_runtime_read_state(i, at, g_chunk, n));
          IREE_RETURN_IF_ERROR(write_all(g_chunk, n));
        }
      }
      return iree_ok_status();
    case KWS_INFO: {
      uint32_t info[3] = {ok, (uint32_t)kws_heap_high_water(), (uint32_t)kws_stack_high_water()};
      return write_all(info, sizeof(info));
    }
    default:
      return iree_make_status(IREE_STATUS_INVALID_ARGUMENT, "unknown command %u", (unsigned)command);
  }
}

int main(void) {
  g_in = open("kws_in", O_RDONLY);
  g_out = open("kws_out", O_WRONLY);
  if (g_in < 0 || g_out < 0) {
    fprintf(stderr, "kws firmware: cannot open the kws_in/kws_out pipes (semihosting)\n");
    return 2;
  }
  iree_status_t status = kws_runtime_create();
  uint32_t command = KWS_QUIT;
  while (iree_status_is_ok(status) && read_all(&command, sizeof(command)) && command != KWS_QUIT) {
    status = handle(command);
  }
  if (!iree_status_is_ok(status)) {
    static const uint32_t failed = 1;
    write_all(&failed, sizeof(failed));
    iree_status_fprint(stderr, status);
    iree_status_free(status);
    return 1;
  }
  kws_runtime_destroy();
  return 0;
}
