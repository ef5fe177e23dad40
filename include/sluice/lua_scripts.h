/* The Redis Lua scripts of the algorithms, one per file in src/limit/lua/, each preceded by the
 * shared src/limit/lua/prelude/prelude.lua and embedded in the binary at build time
 * (cmake/LuaScripts.cmake). Each follows the contract of sl_algorithm_ops.redis_script in
 * limit.h. */
#ifndef SLUICE_LUA_SCRIPTS_H
#define SLUICE_LUA_SCRIPTS_H

#include <stddef.h>

extern const char sl_lua_fixed_window[];
extern const char sl_lua_sliding_window[];
extern const char sl_lua_sliding_window_counter[];
extern const char sl_lua_token_bucket[];
extern const char sl_lua_leaky_bucket[];
extern const char sl_lua_rls_fixed_window[];

/* The length of the prelude every script above begins with; the algorithm's own part
 * follows it. */
extern const size_t sl_lua_prelude_len;

struct sl_lua_script {
    const char *name; /* the algorithm's name: "token_bucket" */
    const char *body;
};

/* Every embedded script, ended by {NULL, NULL}. */
extern const struct sl_lua_script sl_lua_scripts[];

/* The script of the algorithm called `name`, or NULL. */
const char *sl_lua_script_find(const char *name);

#endif
