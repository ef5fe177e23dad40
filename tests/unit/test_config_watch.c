/* sl_cfg_watch: a real inotify watch on a temporary directory and a real event loop. The
 * callback comes once per burst of changes to the content, by whatever route the new content
 * arrives (in place, by rename, by a Kubernetes ConfigMap's symlink swap, after a moment
 * without the file), and never for a touch, the same bytes, or a neighbouring file. */
#include <check.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/config_watch.h"
#include "sluice/sha256.h"
#include "support/run_suite.h"

#define DEBOUNCE_MS 20
/* How long a test waits for a callback that must come (a loaded machine), and how long it
 * watches for one that must not: well past the debounce. */
#define COME_MS 5000
#define QUIET_MS 300

struct fixture {
    char dir[64];
    char file[96];
    struct event_base *base;
    struct sl_cfg_watch *watch;
    int calls;
    bool free_in_callback;
};

static void changed(void *arg)
{
    struct fixture *f = arg;
    f->calls++;
    if (f->free_in_callback) {
        sl_cfg_watch_free(f->watch);
        f->watch = NULL;
    }
    event_base_loopbreak(f->base);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fputs(text, fp) >= 0, 1);
    ck_assert_int_eq(fclose(fp), 0);
}

static void join(char *out, size_t len, const char *dir, const char *name)
{
    ck_assert_int_lt(snprintf(out, len, "%s/%s", dir, name), (int)len);
}

static void setup(struct fixture *f, const char *file_name)
{
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/sluice-watch-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    join(f->file, sizeof f->file, f->dir, file_name);
    f->base = event_base_new();
    ck_assert_ptr_nonnull(f->base);
}

/* Starts the watch; `loaded` (NULL: none) is the content last loaded. */
static void start_loaded(struct fixture *f, const char *loaded)
{
    const char *paths[] = {f->file};
    uint8_t digest[SL_SHA256_LEN];
    const uint8_t *digests[] = {digest};
    char err[256];

    if (loaded) {
        struct sl_sha256 ctx;
        sl_sha256_init(&ctx);
        sl_sha256_update(&ctx, loaded, strlen(loaded));
        sl_sha256_final(&ctx, digest);
    }
    f->watch = sl_cfg_watch_new(f->base, paths, loaded ? digests : NULL, 1, DEBOUNCE_MS, changed, f,
                                err, sizeof err);
    ck_assert_msg(f->watch != NULL, "%s", err);
}

static void start(struct fixture *f)
{
    start_loaded(f, NULL);
}

/* Runs the loop until a callback or `ms` pass; returns the calls seen so far. */
static int run(struct fixture *f, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    return f->calls;
}

static void teardown(struct fixture *f)
{
    char cmd[128];
    sl_cfg_watch_free(f->watch);
    event_base_free(f->base);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(edit_in_place_calls_once)
{
    struct fixture f;
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    write_file(f.file, "a: 2\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    ck_assert_int_eq(run(&f, QUIET_MS), 1);
    /* Same size, other bytes: a digest, not the size, decides. */
    write_file(f.file, "a: 3\n");
    ck_assert_int_eq(run(&f, COME_MS), 2);
    teardown(&f);
}
END_TEST

START_TEST(touch_same_bytes_and_neighbours_call_nothing)
{
    struct fixture f;
    char other[128];
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    ck_assert_int_eq(utimensat(AT_FDCWD, f.file, NULL, 0), 0);
    write_file(f.file, "a: 1\n");
    join(other, sizeof other, f.dir, "other.yaml");
    write_file(other, "b: 1\n");
    ck_assert_int_eq(run(&f, QUIET_MS), 0);
    teardown(&f);
}
END_TEST

START_TEST(rename_over_calls_once)
{
    struct fixture f;
    char tmp[128];
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    join(tmp, sizeof tmp, f.dir, ".sluice.yaml.swp");
    write_file(tmp, "a: 22\n");
    ck_assert_int_eq(rename(tmp, f.file), 0);
    ck_assert_int_eq(chmod(f.file, 0600), 0);
    ck_assert_int_eq(run(&f, COME_MS), 1);
    ck_assert_int_eq(run(&f, QUIET_MS), 1);
    /* The new inode is watched as well as the old one was. */
    write_file(f.file, "a: 23\n");
    ck_assert_int_eq(run(&f, COME_MS), 2);
    teardown(&f);
}
END_TEST

/* What the kubelet does to a ConfigMap volume on an update. */
static void configmap_write(const struct fixture *f, int version, const char *text)
{
    char dir[128], name[64], file[192], data[128], data_tmp[128], old[128];
    snprintf(name, sizeof name, "..2026_12_07_22_00_00.%06d", version);
    join(dir, sizeof dir, f->dir, name);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    join(file, sizeof file, dir, "sluice.yaml");
    write_file(file, text);
    join(data, sizeof data, f->dir, "..data");
    join(data_tmp, sizeof data_tmp, f->dir, "..data_tmp");
    ck_assert_int_eq(symlink(name, data_tmp), 0);
    ck_assert_int_eq(rename(data_tmp, data), 0);
    if (version == 1) {
        ck_assert_int_eq(symlink("..data/sluice.yaml", f->file), 0);
        return;
    }
    snprintf(name, sizeof name, "..2026_12_07_22_00_00.%06d", version - 1);
    join(old, sizeof old, f->dir, name);
    join(file, sizeof file, old, "sluice.yaml");
    ck_assert_int_eq(unlink(file), 0);
    ck_assert_int_eq(rmdir(old), 0);
}

START_TEST(configmap_symlink_swap_calls)
{
    struct fixture f;
    setup(&f, "sluice.yaml");
    configmap_write(&f, 1, "a: 1\n");
    start(&f);
    configmap_write(&f, 2, "a: 2\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    ck_assert_int_eq(run(&f, QUIET_MS), 1);
    configmap_write(&f, 3, "a: 3\n");
    ck_assert_int_eq(run(&f, COME_MS), 2);
    teardown(&f);
}
END_TEST

/* A symlink to a file in another directory: an edit of the target in place is seen. */
START_TEST(symlink_target_elsewhere_is_watched)
{
    struct fixture f;
    char sub[128], target[160];
    setup(&f, "sluice.yaml");
    join(sub, sizeof sub, f.dir, "real");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    join(target, sizeof target, sub, "sluice.yaml");
    write_file(target, "a: 1\n");
    ck_assert_int_eq(symlink("real/sluice.yaml", f.file), 0);
    start(&f);
    write_file(target, "a: 2\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    teardown(&f);
}
END_TEST

static void write_neighbour(evutil_socket_t fd, short what, void *arg)
{
    write_file(arg, "b: 1\n");
}

/* A neighbour closed every few milliseconds, forever: the debounce never sees a pause,
 * and the change is still seen. */
START_TEST(endless_neighbour_events_delay_at_most_a_bound)
{
    struct fixture f;
    char other[128];
    setup(&f, "sluice.yaml");
    join(other, sizeof other, f.dir, "access.log");
    write_file(f.file, "a: 1\n");
    start(&f);
    struct event *tick = event_new(f.base, -1, EV_PERSIST, write_neighbour, other);
    struct timeval every = {0, 2000};
    ck_assert_int_eq(event_add(tick, &every), 0);
    write_file(f.file, "a: 2\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    event_free(tick);
    teardown(&f);
}
END_TEST

START_TEST(removed_then_restored_calls)
{
    struct fixture f;
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    ck_assert_int_eq(unlink(f.file), 0);
    ck_assert_int_eq(run(&f, COME_MS), 1);
    write_file(f.file, "a: 1\n");
    ck_assert_int_eq(run(&f, COME_MS), 2);
    teardown(&f);
}
END_TEST

START_TEST(callback_may_free_the_watch)
{
    struct fixture f;
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    f.free_in_callback = true;
    write_file(f.file, "a: 2\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    ck_assert_ptr_null(f.watch);
    teardown(&f);
}
END_TEST

/* The file changed between its load and the watch's start: that change is not lost. */
START_TEST(a_change_before_the_start_is_seen)
{
    struct fixture f;
    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 2\n");
    start_loaded(&f, "a: 1\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    teardown(&f);

    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start_loaded(&f, "a: 1\n");
    ck_assert_int_eq(run(&f, QUIET_MS), 0);
    teardown(&f);
}
END_TEST

/* A change loaded by other means before the watch checked it is not a change. */
START_TEST(a_change_reported_loaded_calls_nothing)
{
    struct fixture f;
    uint8_t digest[SL_SHA256_LEN];
    const uint8_t *digests[] = {digest};
    struct sl_sha256 ctx;

    setup(&f, "sluice.yaml");
    write_file(f.file, "a: 1\n");
    start(&f);
    write_file(f.file, "a: 2\n");
    sl_sha256_init(&ctx);
    sl_sha256_update(&ctx, "a: 2\n", 5);
    sl_sha256_final(&ctx, digest);
    sl_cfg_watch_loaded(f.watch, digests);
    ck_assert_int_eq(run(&f, QUIET_MS), 0);
    write_file(f.file, "a: 3\n");
    ck_assert_int_eq(run(&f, COME_MS), 1);
    teardown(&f);
}
END_TEST

START_TEST(missing_directory_is_an_error)
{
    struct event_base *base = event_base_new();
    const char *paths[] = {"/nonexistent-sluice-dir/sluice.yaml"};
    char err[256] = "";
    ck_assert_ptr_null(
        sl_cfg_watch_new(base, paths, NULL, 1, DEBOUNCE_MS, changed, NULL, err, sizeof err));
    ck_assert_str_eq(err, "cannot watch /nonexistent-sluice-dir: No such file or directory");
    event_base_free(base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_watch");
    TCase *tc = tcase_create("config_watch");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, edit_in_place_calls_once);
    tcase_add_test(tc, touch_same_bytes_and_neighbours_call_nothing);
    tcase_add_test(tc, rename_over_calls_once);
    tcase_add_test(tc, configmap_symlink_swap_calls);
    tcase_add_test(tc, symlink_target_elsewhere_is_watched);
    tcase_add_test(tc, endless_neighbour_events_delay_at_most_a_bound);
    tcase_add_test(tc, removed_then_restored_calls);
    tcase_add_test(tc, callback_may_free_the_watch);
    tcase_add_test(tc, a_change_before_the_start_is_seen);
    tcase_add_test(tc, a_change_reported_loaded_calls_nothing);
    tcase_add_test(tc, missing_directory_is_an_error);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
