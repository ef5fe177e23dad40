/* reload.watch: inotify on the directories that hold the watched files, a debounce timer,
 * and a digest of each file's content.
 *
 * Watching a file's inode misses most of the ways files are replaced: an editor writes a
 * new file and renames it over the old one; Kubernetes mounts a ConfigMap as
 * `name -> ..data/name`, `..data -> ..2026_12_07_22_00_00.123456/`, and updates it by
 * writing a new timestamped directory, renaming a symlink `..data_tmp` over `..data` and
 * deleting the old directory, so that neither `name` nor any inode it reached changes.
 * So the watch is on directories: the one the path names and the one its resolved target
 * lies in. Any event there (re)starts the debounce; when it expires the watches are set
 * again (the target may have moved to a new directory) and each file's content is hashed.
 * Only a changed digest counts: an event for a neighbour, a touch, or a rewrite with the
 * same bytes reloads nothing. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/config_watch.h"
#include "sluice/log.h"
#include "sluice/sha256.h"

/* What happens to a directory's entries (IN_CREATE, IN_MOVED_*, IN_DELETE: renames and
 * symlink swaps; IN_CLOSE_WRITE, IN_ATTRIB: writes in place) and to the directory itself
 * (removed or renamed: it has to be found again). Not IN_MODIFY: an edit in place ends
 * with a close, and a log another process keeps open in the same directory would wake the
 * loop on every write. */
#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* Events that never pause (a busy neighbour in the directory) put the check off at most
 * this many debounces after the first of them. */
#define MAX_DEBOUNCES 10

/* The loader refuses larger files (16 MiB of configuration, 1 GiB of rates); hashing stops
 * there so a wrong path (a device) ends. */
#define MAX_HASH_BYTES ((1u << 30) + 1)

/* Directories watched per path: its own and its target's. */
#define DIRS_PER_PATH 2

struct watched_file {
    char *path;
    bool present;
    uint8_t digest[SL_SHA256_LEN];
};

struct sl_cfg_watch {
    int fd;
    struct event *read_ev;
    struct event *timer;
    uint64_t debounce_ms;
    uint64_t burst_start_us; /* the first event since the last check */
    struct watched_file *files;
    size_t nfiles;
    int *wds; /* watch descriptors held, nwds of nfiles * DIRS_PER_PATH */
    size_t nwds;
    void (*changed)(void *arg);
    void *arg;
};

/* The content of `path` (following symlinks) as a digest; a file that cannot be read as a
 * regular file is "not present". */
static void fingerprint(const char *path, bool *present, uint8_t digest[SL_SHA256_LEN])
{
    struct sl_sha256 ctx;
    struct stat st;
    char buf[65536];
    size_t total = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    *present = false;
    memset(digest, 0, SL_SHA256_LEN);
    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        goto out;
    sl_sha256_init(&ctx);
    while (total < MAX_HASH_BYTES) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        sl_sha256_update(&ctx, buf, (size_t)n);
        total += (size_t)n;
    }
    sl_sha256_final(&ctx, digest);
    *present = true;
out:
    close(fd);
}

/* Adds a watch on the directory holding `path` to `wds` (unless held already). */
static int watch_dir_of(struct sl_cfg_watch *w, const char *path, int *wds, size_t *n, char *err,
                        size_t errlen)
{
    char *copy = strdup(path);
    int rc = -1;

    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *dir = dirname(copy);
    int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);
    if (wd < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
    for (size_t i = 0; i < *n; i++)
        if (wds[i] == wd)
            goto out;
    wds[(*n)++] = wd;
out:
    free(copy);
    return rc;
}

/* Sets the watches for where the files are now and drops those no longer needed.
 * Returns -1 with `err` set when a path's own directory cannot be watched. */
static int arm(struct sl_cfg_watch *w, char *err, size_t errlen)
{
    int *wds = calloc(w->nfiles ? w->nfiles * DIRS_PER_PATH : 1, sizeof *wds);
    size_t n = 0;
    int rc = 0;

    if (!wds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t f = 0; f < w->nfiles; f++) {
        char target[PATH_MAX];
        if (watch_dir_of(w, w->files[f].path, wds, &n, err, errlen) < 0)
            rc = -1;
        /* A target that does not resolve now is found again after the next event. */
        if (realpath(w->files[f].path, target) && watch_dir_of(w, target, wds, &n, err, errlen) < 0)
            rc = -1;
    }
    for (size_t i = 0; i < w->nwds; i++) {
        bool kept = false;
        for (size_t j = 0; j < n && !kept; j++)
            kept = wds[j] == w->wds[i];
        /* A directory removed took its watch with it: EINVAL then, harmless. */
        if (!kept)
            inotify_rm_watch(w->fd, w->wds[i]);
    }
    free(w->wds);
    w->wds = wds;
    w->nwds = n;
    return rc;
}

static void debounce_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_cfg_watch *w = arg;
    char err[PATH_MAX + 64];
    bool changed = false;

    if (arm(w, err, sizeof err) < 0)
        sl_log_warn("reload.watch: %s", err);
    for (size_t f = 0; f < w->nfiles; f++) {
        struct watched_file *file = &w->files[f];
        uint8_t digest[SL_SHA256_LEN];
        bool present;
        fingerprint(file->path, &present, digest);
        if (present != file->present || memcmp(digest, file->digest, sizeof digest) != 0) {
            file->present = present;
            memcpy(file->digest, digest, sizeof digest);
            changed = true;
        }
    }
    /* Last: the callback may free the watch. */
    if (changed)
        w->changed(w->arg);
}

/* (Re)starts the debounce: a check `debounce_ms` from now, or at the burst's bound. */
static void schedule(struct sl_cfg_watch *w)
{
    uint64_t now_us = sl_clock_mono_us();
    if (!evtimer_pending(w->timer, NULL))
        w->burst_start_us = now_us;
    uint64_t delay_us = w->debounce_ms * 1000;
    uint64_t last_us = w->burst_start_us + MAX_DEBOUNCES * delay_us;
    if (now_us + delay_us > last_us)
        delay_us = last_us > now_us ? last_us - now_us : 0;
    struct timeval tv = {(time_t)(delay_us / 1000000), (suseconds_t)(delay_us % 1000000)};
    evtimer_add(w->timer, &tv);
}

static void inotify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_cfg_watch *w = arg;
    /* Aligned as the events it receives, as inotify(7) shows. */
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool seen = false;

    /* Which event it was matters not: the digests decide after the debounce. An overflowed
     * queue (IN_Q_OVERFLOW) is one more event. */
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        seen = true;
    }
    if (seen)
        schedule(w);
}

struct sl_cfg_watch *sl_cfg_watch_new(struct event_base *base, const char *const *paths,
                                      const uint8_t *const *digests, size_t npaths,
                                      uint64_t debounce_ms, void (*changed)(void *arg), void *arg,
                                      char *err, size_t errlen)
{
    struct sl_cfg_watch *w = calloc(1, sizeof *w);
    bool stale = false;

    if (!w || !(w->files = calloc(npaths ? npaths : 1, sizeof *w->files))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->fd = -1;
    w->debounce_ms = debounce_ms;
    w->changed = changed;
    w->arg = arg;
    for (; w->nfiles < npaths; w->nfiles++) {
        struct watched_file *file = &w->files[w->nfiles];
        if (!(file->path = strdup(paths[w->nfiles]))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        fingerprint(file->path, &file->present, file->digest);
        /* Changed between its load and now: the first check must see it. */
        if (digests && digests[w->nfiles] &&
            (!file->present || memcmp(file->digest, digests[w->nfiles], SL_SHA256_LEN) != 0)) {
            file->present = true;
            memcpy(file->digest, digests[w->nfiles], SL_SHA256_LEN);
            stale = true;
        }
    }
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "inotify: %s", strerror(errno));
        goto fail;
    }
    if (arm(w, err, errlen) < 0)
        goto fail;
    w->read_ev = event_new(base, w->fd, EV_READ | EV_PERSIST, inotify_cb, w);
    w->timer = evtimer_new(base, debounce_cb, w);
    if (!w->read_ev || !w->timer || event_add(w->read_ev, NULL) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (stale)
        schedule(w);
    return w;

fail:
    sl_cfg_watch_free(w);
    return NULL;
}

void sl_cfg_watch_loaded(struct sl_cfg_watch *w, const uint8_t *const *digests)
{
    for (size_t f = 0; f < w->nfiles; f++) {
        if (!digests[f])
            continue;
        w->files[f].present = true;
        memcpy(w->files[f].digest, digests[f], SL_SHA256_LEN);
    }
}

uint64_t sl_cfg_watch_debounce_ms(const struct sl_cfg_watch *w)
{
    return w->debounce_ms;
}

void sl_cfg_watch_free(struct sl_cfg_watch *w)
{
    if (!w)
        return;
    if (w->read_ev)
        event_free(w->read_ev);
    if (w->timer)
        event_free(w->timer);
    if (w->fd >= 0)
        close(w->fd);
    for (size_t f = 0; f < w->nfiles; f++)
        free(w->files[f].path);
    free(w->files);
    free(w->wds);
    free(w);
}

bool sl_cfg_watch_watches(const struct sl_cfg_watch *w, const char *const *paths, size_t npaths)
{
    if (npaths != w->nfiles)
        return false;
    for (size_t i = 0; i < npaths; i++)
        if (strcmp(paths[i], w->files[i].path) != 0)
            return false;
    return true;
}
