// iree_async_proactor_create_platform for IREE_PLATFORM_GENERIC (bare metal).
//
// The local-sync device needs a proactor pool, and IREE's generic platform has no
// proactor (the function returns UNAVAILABLE), so firmware defines it here, in
// place of iree/async/proactor_platform.c (which the firmware does not link). It
// returns IREE's "js" proactor (off WebAssembly it compiles to plain C with no
// imports) with the notification entries, which the js proactor does not
// implement, replaced by single-threaded ones: with no threads nothing can signal
// while a wait runs, so a wait only reports whether a signal already happened.
#include <string.h>

#include "iree/async/notification.h"
#include "iree/async/platform/js/proactor.h"
#include "iree/async/proactor_platform.h"

static iree_async_proactor_vtable_t kws_vtable;

static iree_status_t kws_create_notification(iree_async_proactor_t* proactor,
                                             iree_async_notification_flags_t flags,
                                             iree_async_notification_t** out_notification) {
  iree_async_notification_t* notification = NULL;
  IREE_RETURN_IF_ERROR(iree_allocator_malloc(proactor->allocator, sizeof(*notification),
                                             (void**)&notification));
  memset(notification, 0, sizeof(*notification));
  iree_atomic_ref_count_init(&notification->ref_count);
  notification->proactor = proactor;
  notification->epoch_ptr = &notification->epoch;
  notification->flags = flags;
  *out_notification = notification;
  return iree_ok_status();
}

static void kws_destroy_notification(iree_async_proactor_t* proactor,
                                     iree_async_notification_t* notification) {
  iree_allocator_free(proactor->allocator, notification);
}

// The epoch was already advanced by iree_async_notification_signal: nobody to wake.
static void kws_notification_signal(iree_async_proactor_t* proactor,
                                    iree_async_notification_t* notification, int32_t wake_count) {
  (void)proactor;
  (void)notification;
  (void)wake_count;
}

static bool kws_notification_wait(iree_async_proactor_t* proactor,
                                  iree_async_notification_t* notification, uint32_t wait_token,
                                  iree_timeout_t timeout) {
  (void)proactor;
  (void)timeout;
  return (uint32_t)iree_atomic_load(notification->epoch_ptr, iree_memory_order_acquire) !=
         wait_token;
}

iree_status_t iree_async_proactor_create_platform(iree_async_proactor_options_t options,
                                                  iree_allocator_t allocator,
                                                  iree_async_proactor_t** out_proactor) {
  IREE_RETURN_IF_ERROR(iree_async_proactor_create_js(options, allocator, out_proactor));
  kws_vtable = *(*out_proactor)->vtable;
  kws_vtable.create_notification = kws_create_notification;
  kws_vtable.destroy_notification = kws_destroy_notification;
  kws_vtable.notification_signal = kws_notification_signal;
  kws_vtable.notification_wait = kws_notification_wait;
  (*out_proactor)->vtable = &kws_vtable;
  return iree_ok_status();
}
