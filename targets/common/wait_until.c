// IREE_WAIT_UNTIL_FN for bare metal: the synchronous device never waits on time,
// so report success immediately (see iree.dev "Running on a bare-metal platform").
#include <stdbool.h>
#include <stdint.h>

bool kws_wait_until(uint64_t nanos) {
  (void)nanos;
  return true;
}
