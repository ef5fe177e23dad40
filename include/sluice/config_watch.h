/* Reload on change: watches files for a change of their content, with inotify on the
 * caller's event loop (no thread of its own). Linux only. */
#ifndef SLUICE_CONFIG_WATCH_H
#define SLUICE_CONFIG_WATCH_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_cfg_watch;

/* Watches the files at `paths` (`npaths` of them; copied): after an event in a directory
 * that holds one of them, or the target of one that is a symlink, and `debounce_ms` without
 * another (at most 10 debounces after the first event), calls `changed(arg)` when the
 * content of at least one file differs from the last seen (a missing or unreadable file is
 * a content of its own). A file written in place is seen when its writer closes it.
 * `digests` (NULL, or one SHA-256 or NULL per path) are the contents last loaded: a file
 * that differs from its digest already counts as changed, after one debounce. Other files
 * are first seen by this call. `changed` runs on `base`'s thread and may free the watch.
 * Returns NULL with a message in `err` when inotify or a directory cannot be watched. Free
 * with sl_cfg_watch_free(). */
struct sl_cfg_watch *sl_cfg_watch_new(struct event_base *base, const char *const *paths,
                                      const uint8_t *const *digests, size_t npaths,
                                      uint64_t debounce_ms, void (*changed)(void *arg), void *arg,
                                      char *err, size_t errlen);

/* Records `digests` (as for sl_cfg_watch_new; NULL entries skipped) as the contents last
 * loaded, so that a reload by other means (SIGHUP) of a file the watch has yet to check
 * does not reload it a second time. Call after a successful reload, on `base`'s thread. */
void sl_cfg_watch_loaded(struct sl_cfg_watch *w, const uint8_t *const *digests);

/* Whether `w` watches exactly `paths` (`npaths` of them, in this order). */
bool sl_cfg_watch_watches(const struct sl_cfg_watch *w, const char *const *paths, size_t npaths);

/* The debounce the watch was made with. */
uint64_t sl_cfg_watch_debounce_ms(const struct sl_cfg_watch *w);

/* Stops watching and releases `w`; accepts NULL. Call on `base`'s thread. */
void sl_cfg_watch_free(struct sl_cfg_watch *w);

#endif
