/* Lookup in the table of embedded scripts (the table itself is generated at build time). */
#include <string.h>

#include "sluice/lua_scripts.h"

const char *sl_lua_script_find(const char *name)
{
    for (const struct sl_lua_script *s = sl_lua_scripts; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s->body;
    return NULL;
}
