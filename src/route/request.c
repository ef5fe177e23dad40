/* Lookups in a parsed request head. */
#include <strings.h>

#include "sluice/request.h"

const struct sl_header *sl_request_header(const struct sl_request *req, const char *name,
                                          size_t name_len)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name_len == name_len &&
            strncasecmp(req->headers[i].name, name, name_len) == 0)
            return &req->headers[i];
    return NULL;
}
