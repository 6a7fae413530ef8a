
/*
 * ngx_llm_router: the Lua 5.4 API, reached through a function table.
 *
 * Debian's libnginx-mod-http-lua puts LuaJIT into nginx's global symbol
 * scope, and LuaJIT exports the same lua_* and luaL_* names as Lua 5.4.
 * Linking liblua5.4.so normally would let those names bind to LuaJIT, even
 * the calls Lua 5.4 makes to itself; Debian's liblua5.4.a is not built as
 * position-independent code, so it cannot be linked into a module either.
 * So the module opens liblua5.4.so.0 with RTLD_LOCAL|RTLD_DEEPBIND (its own
 * symbols first, nothing exported) and calls it through this table; the
 * macros below keep the code that uses it written as plain Lua C API.
 * Include this file instead of lua.h; list each new function used here.
 */


#ifndef _NGX_HTTP_LLM_LUA_API_H_INCLUDED_
#define _NGX_HTTP_LLM_LUA_API_H_INCLUDED_


#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>


#define NGX_HTTP_LLM_LUA_FUNCTIONS(X)                                         \
    X(lua_State *, luaL_newstate, (void))                                     \
    X(void, lua_close, (lua_State *L))                                        \
    X(void, luaL_requiref, (lua_State *L, const char *modname,                \
                            lua_CFunction openf, int glb))                    \
    X(int, luaopen_base, (lua_State *L))                                      \
    X(int, luaopen_math, (lua_State *L))                                      \
    X(void, lua_settop, (lua_State *L, int idx))                              \
    X(int, luaL_loadstring, (lua_State *L, const char *s))                    \
    X(int, lua_pcallk, (lua_State *L, int nargs, int nresults, int errfunc,   \
                        lua_KContext ctx, lua_KFunction k))                   \
    X(const char *, lua_tolstring, (lua_State *L, int idx, size_t *len))


typedef struct {
#define NGX_HTTP_LLM_LUA_POINTER(ret, name, args)  ret (*p_##name) args;
    NGX_HTTP_LLM_LUA_FUNCTIONS(NGX_HTTP_LLM_LUA_POINTER)
#undef NGX_HTTP_LLM_LUA_POINTER
} ngx_http_llm_lua_api_t;


extern ngx_http_llm_lua_api_t  ngx_http_llm_lua_api;


#define luaL_newstate    ngx_http_llm_lua_api.p_luaL_newstate
#define lua_close        ngx_http_llm_lua_api.p_lua_close
#define luaL_requiref    ngx_http_llm_lua_api.p_luaL_requiref
#define luaopen_base     ngx_http_llm_lua_api.p_luaopen_base
#define luaopen_math     ngx_http_llm_lua_api.p_luaopen_math
#define lua_settop       ngx_http_llm_lua_api.p_lua_settop
#define luaL_loadstring  ngx_http_llm_lua_api.p_luaL_loadstring
#define lua_pcallk       ngx_http_llm_lua_api.p_lua_pcallk
#define lua_tolstring    ngx_http_llm_lua_api.p_lua_tolstring


#endif /* _NGX_HTTP_LLM_LUA_API_H_INCLUDED_ */
