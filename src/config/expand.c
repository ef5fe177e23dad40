/* ${VAR} and ${VAR:-default} expansion of configuration scalars. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sluice/config_parse.h"

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Expands the reference starting after "${" at `p` into `out`; returns the text after its
 * "}", or NULL with a message in `err`. */
static const char *expand_one(const char *p, struct sl_cfg_buf *out, struct sl_cfg_buf *err)
{
    const char *close = strchr(p, '}');
    if (!close) {
        sl_cfg_buf_addf(err, "unterminated \"${\" in \"${%s\"; expected \"}\"", p);
        return NULL;
    }
    size_t n = 0;
    if (is_name_start(p[0]))
        while (is_name_char(p[n]))
            n++;
    const char *rest = p + n;
    bool has_default = strncmp(rest, ":-", 2) == 0;
    if (n == 0 || (!has_default && rest != close)) {
        sl_cfg_buf_addf(err,
                        "expected \"${NAME}\" or \"${NAME:-default}\" with NAME of letters, "
                        "digits and \"_\", got \"${%.*s}\"",
                        (int)(close - p), p);
        return NULL;
    }

    char name[256];
    if (n >= sizeof name) {
        sl_cfg_buf_addf(err, "environment variable name \"%.40s...\" is too long", p);
        return NULL;
    }
    memcpy(name, p, n);
    name[n] = '\0';
    const char *value = getenv(name);
    /* As in the POSIX shell, ":-" also replaces a variable set to the empty string. */
    if (has_default && (!value || !*value))
        sl_cfg_buf_add(out, rest + 2, (size_t)(close - rest - 2));
    else if (value)
        sl_cfg_buf_adds(out, value);
    else {
        sl_cfg_buf_addf(err, "environment variable %s is not set and has no default", name);
        return NULL;
    }
    return close + 1;
}

int sl_expand_env(const char *text, char **out)
{
    struct sl_cfg_buf res = {0}, err = {0};
    const char *p = text;

    while (*p) {
        const char *dollar = strchr(p, '$');
        if (!dollar) {
            sl_cfg_buf_adds(&res, p);
            break;
        }
        sl_cfg_buf_add(&res, p, (size_t)(dollar - p));
        if (strncmp(dollar, "$${", 3) == 0) {
            /* "$${" is the escape for a literal "${". */
            sl_cfg_buf_add(&res, "${", 2);
            p = dollar + 3;
        } else if (dollar[1] == '{') {
            p = expand_one(dollar + 2, &res, &err);
            if (!p)
                goto fail;
        } else {
            sl_cfg_buf_add(&res, "$", 1);
            p = dollar + 1;
        }
    }
    *out = sl_cfg_buf_take(&res);
    return *out ? 0 : -1;

fail:
    sl_cfg_buf_deinit(&res);
    *out = sl_cfg_buf_take(&err);
    return -1;
}
