
/*
 * ngx_llm_router: the Lua 5.4 runtime: liblua5.4.so.0 opened privately,
 * once per process, at configuration time, into the function table of
 * ngx_http_llm_lua_api.h, and proven to be Lua 5.4.
 * Not here: the hooks' states, sandbox and budget (ngx_http_llm_lua.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <dlfcn.h>

#include "ngx_http_llm_lua_api.h"


#ifndef NGX_HTTP_LLM_LUA_LIBRARY
#define NGX_HTTP_LLM_LUA_LIBRARY  "liblua5.4.so.0"
#endif


typedef struct {
    const char  *name;
    size_t       offset;
} ngx_http_llm_lua_symbol_t;


static ngx_int_t ngx_http_llm_lua_open(ngx_log_t *log);


ngx_http_llm_lua_api_t  ngx_http_llm_lua_api;

static void            *ngx_http_llm_lua_handle;

static ngx_http_llm_lua_symbol_t  ngx_http_llm_lua_symbols[] = {
#define NGX_HTTP_LLM_LUA_SYMBOL(ret, name, args)                              \
    { #name, offsetof(ngx_http_llm_lua_api_t, p_##name) },
    NGX_HTTP_LLM_LUA_FUNCTIONS(NGX_HTTP_LLM_LUA_SYMBOL)
#undef NGX_HTTP_LLM_LUA_SYMBOL
    { NULL, 0 }
};


static ngx_int_t
ngx_http_llm_lua_open(ngx_log_t *log)
{
    void                       *handle, *sym;
    ngx_http_llm_lua_symbol_t  *s;

    if (ngx_http_llm_lua_handle) {
        return NGX_OK;
    }

    handle = dlopen(NGX_HTTP_LLM_LUA_LIBRARY,
                    RTLD_NOW|RTLD_LOCAL|RTLD_DEEPBIND);

    if (handle == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm router: cannot load Lua 5.4: %s "
                      "(install the Debian package liblua5.4-0)", dlerror());
        return NGX_ERROR;
    }

    for (s = ngx_http_llm_lua_symbols; s->name; s++) {
        sym = dlsym(handle, s->name);

        if (sym == NULL) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "llm router: %s has no symbol \"%s\"",
                          NGX_HTTP_LLM_LUA_LIBRARY, s->name);
            dlclose(handle);
            return NGX_ERROR;
        }

        ngx_memcpy((u_char *) &ngx_http_llm_lua_api + s->offset, &sym,
                   sizeof(void *));
    }

    ngx_http_llm_lua_handle = handle;

    return NGX_OK;
}


/* runs a chunk to prove that the runtime really is Lua 5.4 */

ngx_int_t
ngx_http_llm_lua_check_runtime(ngx_log_t *log)
{
    size_t       len;
    ngx_int_t    rc;
    lua_State   *L;
    const char  *version;

    if (ngx_http_llm_lua_open(log) != NGX_OK) {
        return NGX_ERROR;
    }

    L = luaL_newstate();
    if (L == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm router: cannot create a Lua state");
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    lua_pop(L, 2);

    if (luaL_dostring(L, "return _VERSION .. '/' .. math.type(1)") == 0) {
        version = lua_tostring(L, -1);
        len = version ? ngx_strlen(version) : 0;

        if (len == sizeof("Lua 5.4/integer") - 1
            && ngx_strncmp(version, "Lua 5.4/integer", len) == 0)
        {
            rc = NGX_OK;
        }
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "llm router: %s does not run as Lua 5.4",
                      NGX_HTTP_LLM_LUA_LIBRARY);
    }

    lua_close(L);

    return rc;
}
