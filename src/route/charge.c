/* Cost and response charges: the units a request asks of each limit (see charge.h). */
#include "sluice/charge.h"

#include <strings.h>

bool sl_units_parse(const char *text, size_t len, uint64_t *out)
{
    /* 2^32 has 10 digits; leading zeros are allowed, so only the value bounds the length. */
    uint64_t v = 0;
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(text[i] - '0');
        if (v > SL_UNITS_MAX)
            return false;
    }
    *out = v;
    return true;
}

int sl_cost_units(const struct sl_limit *lim, const struct sl_request *req, struct sl_units *out)
{
    uint64_t cost = 1;
    switch (lim->cost_kind) {
    case SL_COST_CONST:
        cost = lim->cost;
        break;
    case SL_COST_HEADER: {
        const struct sl_header *h = sl_request_header(req, lim->cost_header, lim->cost_header_len);
        if (h && !sl_units_parse(h->value, h->value_len, &cost))
            return -1;
        break;
    }
    case SL_COST_DEFAULT:
        if (lim->charge_kind != SL_CHARGE_NONE) {
            *out = (struct sl_units){1, 0};
            return 0;
        }
        break;
    }
    *out = (struct sl_units){cost, cost};
    return 0;
}

bool sl_charge_header_units(const struct sl_limit *lim, const struct sl_header *hs, size_t nheaders,
                            uint64_t *out)
{
    for (size_t i = 0; i < nheaders; i++)
        if (hs[i].name_len == lim->charge_name_len &&
            strncasecmp(hs[i].name, lim->charge_name, hs[i].name_len) == 0)
            return sl_units_parse(hs[i].value, hs[i].value_len, out);
    return false;
}
