
/*
 * Outside nginx (fuzz targets, unit tests): fills the Lua function table
 * of ngx_http_llm_lua_api.h from handle, liblua5.4.so.0 opened with
 * dlopen() or RTLD_DEFAULT where Lua 5.4 is linked.  0, or -1 with
 * *missing set to the first name not found.
 */


#ifndef _LLM_LUA_OPEN_H_INCLUDED_
#define _LLM_LUA_OPEN_H_INCLUDED_


#include <stddef.h>
#include <string.h>
#include <dlfcn.h>

#include "ngx_http_llm_lua_api.h"


ngx_http_llm_lua_api_t  ngx_http_llm_lua_api;


static int
llm_lua_open(void *handle, const char **missing)
{
    void    *sym;
    size_t   i;

    static const struct {
        const char  *name;
        size_t       offset;
    } symbols[] = {
#define LLM_LUA_SYMBOL(ret, name, args)                                       \
        { #name, offsetof(ngx_http_llm_lua_api_t, p_##name) },
        NGX_HTTP_LLM_LUA_FUNCTIONS(LLM_LUA_SYMBOL)
#undef LLM_LUA_SYMBOL
    };

    for (i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        sym = dlsym(handle, symbols[i].name);
        if (sym == NULL) {
            *missing = symbols[i].name;
            return -1;
        }

        memcpy((char *) &ngx_http_llm_lua_api + symbols[i].offset, &sym,
               sizeof(void *));
    }

    return 0;
}


#endif /* _LLM_LUA_OPEN_H_INCLUDED_ */
