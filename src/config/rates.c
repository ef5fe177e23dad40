/* A limit's `rates:` (SPEC.md section 3, Per-consumer rates): `by`, inline `values` and a
 * `file` of "VALUE<TAB>RATE" lines, loaded into the limit's table (include/sluice/rates.h).
 *
 * A file is read whole and parsed where it lies: a million lines load in a fraction of a second,
 * most of it hashing. A bad line is a problem of the configuration, reported as
 * "file:line:column: key.path: message"; past MAX_FILE_ERRORS in one file the rest are counted,
 * not listed. A value listed twice (in the file, inline, or both) is an error too: which of two
 * rates was meant cannot be guessed, as envoyproxy/ratelimit refuses a duplicate descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/rates.h"
#include "sluice/sha256.h"

/* Ten million lines of long API keys fit; a wrong path (a device, a log) stops here. */
#define MAX_FILE_BYTES (1ull << 30)
#define MAX_FILE_ERRORS 20
/* A rate is a few characters; longer text is no rate. */
#define RATE_TEXT_MAX 64

static const char rate_expected[] =
    "expected a rate: \"N/unit\" such as \"100/s\" or \"5/10m\", \"unlimited\" or \"0/unit\"";

int sl_parse_plan_rate(const char *text, struct sl_rate *out)
{
    if (strcmp(text, "unlimited") == 0) {
        *out = (struct sl_rate){SL_RATE_UNLIMITED, 0};
        return 0;
    }
    /* "0/P": the period still matters, as Retry-After. */
    if (text[0] == '0' && text[1] == '/') {
        char one[RATE_TEXT_MAX + 1];
        if (snprintf(one, sizeof one, "1%s", text + 1) >= (int)sizeof one ||
            sl_parse_rate(one, &out->count, &out->period_us) < 0)
            return -1;
        out->count = 0;
        return 0;
    }
    return sl_parse_rate(text, &out->count, &out->period_us);
}

/* The quota a consumer rate gives `lim`: a burst the limit sets stays; else the algorithm's
 * default for this N, as for the limit's own rate. */
static struct sl_quota quota_of(const struct sl_limit *lim, struct sl_rate rate)
{
    uint64_t burst = 0;
    if (rate.count != 0 && rate.count != SL_RATE_UNLIMITED)
        burst = lim->burst_set ? lim->burst : lim->alg->burst_defaults_to_count ? rate.count : 0;
    return (struct sl_quota){rate.count, rate.period_us, burst};
}

/* Parses `text` as a rate for `lim` and finds its index in the table; NULL on success, else
 * what was expected (in `msg`). */
static const char *rate_index(const struct sl_config *cfg, struct sl_limit *lim, const char *text,
                              long *index, char *msg, size_t size)
{
    struct sl_rate rate;
    if (sl_parse_plan_rate(text, &rate) < 0)
        return rate_expected;
    struct sl_quota q = quota_of(lim, rate);
    if (rate.count != 0 && rate.count != SL_RATE_UNLIMITED &&
        sl_ld_quota_problem(cfg, lim, &q, msg, size))
        return msg;
    if ((*index = sl_rates_quota_index(lim->rates, &q)) < 0)
        return "out of memory";
    return NULL;
}

static void load_by(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                    struct sl_rates *r)
{
    static const char expected[] = "\"key\" (the limit's own key) or a key source (client_ip, "
                                   "header:NAME, query:NAME, cookie:NAME, method, path, host)";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, node, "by");

    sl_ld_path(vpath, path, "by");
    if (!v) {
        sl_ld_error(ld, node, vpath, "required key is missing; expected %s", expected);
        return;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return;
    if (strcmp(text, "key") == 0)
        r->by_key = true;
    else if (sl_ld_key_source(text, &r->by) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return;
    }
    r->by_text = sl_ld_strdup(ld, v, text);
}

static void load_values(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                        const struct sl_config *cfg, struct sl_limit *lim)
{
    char vpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX], got[96], msg[300];
    yaml_node_t *v = sl_ld_get(ld, node, "values");

    if (!v)
        return;
    sl_ld_path(vpath, path, "values");
    if (v->type != YAML_MAPPING_NODE && !sl_ld_is_null(v)) {
        sl_ld_error(ld, v, vpath, "expected a mapping of values to rates, got %s",
                    sl_ld_describe(ld, v, got, sizeof got));
        return;
    }
    if (v->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *pair = v->data.mapping.pairs.start; pair < v->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *kn = sl_ld_node(ld, pair->key), *rn = sl_ld_node(ld, pair->value);
        const char *value = sl_ld_scalar(ld, kn, vpath, "a value (a string)");
        if (!value)
            continue;
        if (snprintf(ipath, sizeof ipath, "%s.%s", vpath, sl_ld_quote(value, got, sizeof got)) < 0)
            ipath[0] = '\0';
        const char *text =
            sl_ld_scalar(ld, rn, ipath, "a rate such as \"100/s\", \"unlimited\" or \"0/h\"");
        long index;
        const char *problem = text ? rate_index(cfg, lim, text, &index, msg, sizeof msg) : NULL;
        if (!text)
            continue;
        if (problem) {
            sl_ld_error(ld, rn, ipath, "%s, got %s", problem, sl_ld_quote(text, got, sizeof got));
            continue;
        }
        const struct sl_rates_entry *earlier;
        int rc = sl_rates_add(lim->rates, value, strlen(value), (uint32_t)index, 0, &earlier);
        if (rc < 0)
            sl_ld_error(ld, kn, ipath, "out of memory");
        else if (rc > 0)
            sl_ld_error(ld, kn, ipath, "value listed twice");
        else
            lim->rates->ninline++;
    }
}

static int read_all(const char *path, char **out, size_t *out_len, const char **problem)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *data = NULL;
    size_t len = 0;

    *problem = NULL;
    if (fd < 0)
        goto fail;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if ((unsigned long long)st.st_size > MAX_FILE_BYTES) {
        *problem = "larger than 1 GiB";
        goto fail;
    }
    size_t cap = (size_t)st.st_size + 1; /* one more: a file that grew is read to its end */
    if (!(data = malloc(cap)))
        goto fail;
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES) {
                *problem = "larger than 1 GiB";
                goto fail;
            }
            char *bigger = realloc(data, cap * 2);
            if (!bigger)
                goto fail;
            data = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = data;
    *out_len = len;
    return 0;

fail:
    if (!*problem)
        *problem = strerror(errno);
    if (fd >= 0)
        close(fd);
    free(data);
    return -1;
}

/* One file's parse: where problems go and how many were listed. */
struct file_parse {
    struct sl_loader *ld;
    const yaml_node_t *at; /* the `file` node: problems sort there */
    const char *file, *path;
    size_t errors;
};

static void line_error(struct file_parse *fp, size_t line, size_t col, const char *fmt,
                       const char *a, const char *b)
{
    if (fp->errors++ < MAX_FILE_ERRORS)
        sl_ld_report_in(fp->ld, fp->file, line, col, fp->at, "%s: %s%s%s", fp->path, fmt, a, b);
}

/* Parses line `lineno`, `s` to `end` (no newline), into the table. */
static void parse_line(struct file_parse *fp, const struct sl_config *cfg, struct sl_limit *lim,
                       size_t lineno, const char *s, const char *end, char last_rate[],
                       long *last_index)
{
    char got[96], msg[300], rate[RATE_TEXT_MAX + 1];

    if (end > s && end[-1] == '\r')
        end--;
    if (end == s || s[0] == '#')
        return; /* blank lines and comments */
    /* The rate has no tab; a value may (a header value may hold one). */
    const char *tab = end;
    while (tab > s && tab[-1] != '\t')
        tab--;
    if (tab == s) {
        line_error(fp, lineno, 1, "expected VALUE<TAB>RATE, got a line without a tab", "", "");
        return;
    }
    size_t value_len = (size_t)(tab - 1 - s), rate_len = (size_t)(end - tab);
    if (value_len == 0) {
        line_error(fp, lineno, 1, "expected a value before the tab, got none", "", "");
        return;
    }
    if (rate_len > RATE_TEXT_MAX) {
        memcpy(rate, tab, RATE_TEXT_MAX);
        rate[RATE_TEXT_MAX] = '\0';
        line_error(fp, lineno, (size_t)(tab - s) + 1, rate_expected, ", got ",
                   sl_ld_quote(rate, got, sizeof got));
        return;
    }
    memcpy(rate, tab, rate_len);
    rate[rate_len] = '\0';
    long index = *last_index;
    /* Lines come in runs of one plan: the rate last parsed is most often the next. */
    if (index < 0 || strcmp(rate, last_rate) != 0) {
        const char *problem = rate_index(cfg, lim, rate, &index, msg, sizeof msg);
        if (problem) {
            line_error(fp, lineno, (size_t)(tab - s) + 1, problem, ", got ",
                       sl_ld_quote(rate, got, sizeof got));
            return;
        }
        memcpy(last_rate, rate, rate_len + 1);
        *last_index = index;
    }
    const struct sl_rates_entry *earlier;
    int rc = sl_rates_add(lim->rates, s, value_len, (uint32_t)index, (uint32_t)lineno, &earlier);
    if (rc < 0) {
        line_error(fp, lineno, 1, "out of memory, or more than 2^31 values or 4 GiB of them", "",
                   "");
    } else if (rc > 0) {
        char where[64];
        if (earlier->line)
            snprintf(where, sizeof where, "line %u", earlier->line);
        else
            snprintf(where, sizeof where, "values");
        line_error(fp, lineno, 1, "value listed twice; ", where, " has it already");
    } else {
        lim->rates->nfile++;
    }
}

static void load_file(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      const struct sl_config *cfg, struct sl_limit *lim)
{
    char vpath[SL_LD_PATH_MAX];
    yaml_node_t *v = sl_ld_get(ld, node, "file");
    char *data = NULL;
    size_t len = 0;
    const char *problem;

    if (!v)
        return;
    sl_ld_path(vpath, path, "file");
    const char *text = sl_ld_scalar(ld, v, vpath, "a file path");
    if (!text)
        return;
    if (!*text) {
        sl_ld_error(ld, v, vpath, "expected a file path, got \"\"");
        return;
    }
    struct sl_rates *r = lim->rates;
    if (!(r->file = sl_ld_resolve(ld, text))) {
        sl_ld_error(ld, v, vpath, "out of memory");
        return;
    }
    if (read_all(r->file, &data, &len, &problem) < 0) {
        sl_ld_error(ld, v, vpath, "cannot read %s: %s", r->file, problem);
        return;
    }
    struct sl_sha256 digest;
    sl_sha256_init(&digest);
    sl_sha256_update(&digest, data, len);
    sl_sha256_final(&digest, r->file_digest);

    /* One pass to count the lines: the table is then sized once, never rehashed. */
    size_t lines = 1;
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(data + len - p))); p++)
        lines++;
    if (sl_rates_reserve(r, lines, len) < 0) {
        sl_ld_error(ld, v, vpath, "out of memory for %zu lines of %s", lines, r->file);
        free(data);
        return;
    }
    struct file_parse fp = {ld, v, r->file, vpath, 0};
    char last_rate[RATE_TEXT_MAX + 1] = "";
    long last_index = -1;
    size_t lineno = 1;
    for (const char *s = data, *end = data + len; s < end; lineno++) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *stop = nl ? nl : end;
        parse_line(&fp, cfg, lim, lineno, s, stop, last_rate, &last_index);
        s = stop + 1;
    }
    if (fp.errors > MAX_FILE_ERRORS)
        sl_ld_report_in(ld, r->file, 0, 0, v, "%s: %zu more bad lines not listed", vpath,
                        fp.errors - MAX_FILE_ERRORS);
    free(data);
}

void sl_ld_rates(struct sl_loader *ld, const yaml_node_t *limit_node, const char *path,
                 const struct sl_config *cfg, struct sl_limit *lim)
{
    static const char *const keys[] = {"by", "values", "file", NULL};
    char rpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *node = sl_ld_get(ld, limit_node, "rates");

    if (!node)
        return;
    sl_ld_path(rpath, path, "rates");
    if (node->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, node, rpath, "expected a mapping with by and values or file, got %s",
                    sl_ld_describe(ld, node, got, sizeof got));
        return;
    }
    sl_ld_mapping(ld, node, rpath, keys);
    if (!(lim->rates = sl_rates_new())) {
        sl_ld_error(ld, node, rpath, "out of memory");
        return;
    }
    load_by(ld, node, rpath, lim->rates);
    if (!sl_ld_get(ld, node, "values") && !sl_ld_get(ld, node, "file"))
        sl_ld_error(ld, node, rpath, "expected values, file or both, got neither");
    load_values(ld, node, rpath, cfg, lim);
    load_file(ld, node, rpath, cfg, lim);
    sl_rates_trim(lim->rates);
}
