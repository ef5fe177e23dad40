/* The dashboard on the admin listener (SPEC.md section 13): GET / serves one page embedded
 * in the binary (dashboard.html, by cmake/Dashboard.cmake) that draws, every 2 s, what
 * GET /dashboard.json answers. The answer is built here from the counters /metrics reads,
 * the /top sketches and a history of the routes' counters that the admin thread samples
 * every SL_HISTORY_INTERVAL_MS (history.h): nothing on the request path changes for it.
 *
 * The answer stays small whatever the counts (about 560 bytes per used route with one
 * limit at a full history): each chart point is one character, the rate in steps of 1/61
 * of the route's peak of allowed plus limited (a chart is 48 pixels high, the two stacked);
 * the top keys fill the answer up to SL_DASHBOARD_FILL_BYTES, or take
 * SL_DASHBOARD_TOP_MIN_BYTES when the routes left less, the limits that denied most first.
 * The exact counts are in the same answer beside the steps. */
#ifndef SLUICE_ADMIN_DASHBOARD_H
#define SLUICE_ADMIN_DASHBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/metrics.h"
#include "sluice/top.h"

struct evbuffer;
struct sl_dashboard;

#define SL_DASHBOARD_TOP_KEYS 3         /* keys per list (requests, denials) of a limit */
#define SL_DASHBOARD_KEY_BYTES 40       /* longer keys are cut (at a character) and end in "…" */
#define SL_DASHBOARD_FILL_BYTES 61440   /* the top lists stop here; what follows is < 1 KiB */
#define SL_DASHBOARD_TOP_MIN_BYTES 4096 /* what they get when the routes took more */
#define SL_DASHBOARD_LEVELS 62          /* chart steps: "0"-"9", "a"-"z", "A"-"Z" */

/* The page (HTML, its style and script inline), generated from src/admin/dashboard.html. */
extern const char sl_dashboard_html[];
extern const size_t sl_dashboard_html_len;

/* A dashboard reading `metrics` and `top` (borrowed, must outlive it; `top` may be NULL),
 * its history starting at `now_ms` (sl_clock_mono_us() / 1000). NULL on ENOMEM. */
struct sl_dashboard *sl_dashboard_new(struct sl_metrics *metrics, struct sl_top *top,
                                      uint64_t now_ms);
void sl_dashboard_free(struct sl_dashboard *d);

/* Samples the counters of every used route of `cfg` (NULL: none) into the history at
 * `now_ms`; routes no longer in `cfg` lose their rings. Call from one thread, the one that
 * renders. Returns 0, or -1 on ENOMEM (the sample is partial or skipped). */
int sl_dashboard_sample(struct sl_dashboard *d, const struct sl_config *cfg, uint64_t now_ms);

/* Appends the JSON answer of GET /dashboard.json under `cfg` (bound by sl_metrics_bind and
 * sl_top_bind) to `out`: `mono_us` (sl_clock_mono_us) dates the /top window, `wall_ms`
 * (sl_clock_real_us() / 1000) is the answer's "now_ms". Keys from clients are escaped.
 * Returns 0, or -1 on ENOMEM. */
int sl_dashboard_render(struct sl_dashboard *d, const struct sl_config *cfg, uint64_t mono_us,
                        uint64_t wall_ms, struct evbuffer *out);

/* The Content-Security-Policy of the page: nothing but its own inline style and script
 * (by their SHA-256) and requests to the listener that served it. Written to `buf`; -1 when
 * `len` is too small or the page has no <style> or <script> element. */
int sl_dashboard_csp(char *buf, size_t len);

#endif
