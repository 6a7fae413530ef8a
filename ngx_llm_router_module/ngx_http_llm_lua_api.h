
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
    X(lua_State *, lua_newstate, (lua_Alloc f, void *ud))                     \
    X(void, lua_close, (lua_State *L))                                        \
    X(void, luaL_requiref, (lua_State *L, const char *modname,                \
                            lua_CFunction openf, int glb))                    \
    X(int, luaopen_base, (lua_State *L))                                      \
    X(int, luaopen_math, (lua_State *L))                                      \
    X(int, luaopen_table, (lua_State *L))                                     \
    X(int, luaopen_string, (lua_State *L))                                    \
    X(int, luaopen_utf8, (lua_State *L))                                      \
    X(int, luaopen_coroutine, (lua_State *L))                                 \
    X(void, lua_settop, (lua_State *L, int idx))                              \
    X(int, lua_gettop, (lua_State *L))                                        \
    X(int, lua_absindex, (lua_State *L, int idx))                             \
    X(void, lua_rotate, (lua_State *L, int idx, int n))                       \
    X(void, lua_pushvalue, (lua_State *L, int idx))                          \
    X(void, lua_copy, (lua_State *L, int fromidx, int toidx))                 \
    X(void, lua_xmove, (lua_State *from, lua_State *to, int n))               \
    X(const char *, lua_setupvalue, (lua_State *L, int funcindex, int n))     \
    X(void, luaL_checkany, (lua_State *L, int arg))                           \
    X(int, lua_checkstack, (lua_State *L, int n))                             \
    X(int, luaL_loadstring, (lua_State *L, const char *s))                    \
    X(int, luaL_loadbufferx, (lua_State *L, const char *buff, size_t sz,      \
                              const char *name, const char *mode))            \
    X(int, luaL_loadfilex, (lua_State *L, const char *filename,               \
                            const char *mode))                                \
    X(int, lua_pcallk, (lua_State *L, int nargs, int nresults, int errfunc,   \
                        lua_KContext ctx, lua_KFunction k))                   \
    X(void, lua_callk, (lua_State *L, int nargs, int nresults,                \
                        lua_KContext ctx, lua_KFunction k))                   \
    X(const char *, lua_tolstring, (lua_State *L, int idx, size_t *len))      \
    X(void, lua_pushnil, (lua_State *L))                                      \
    X(void, lua_pushboolean, (lua_State *L, int b))                           \
    X(void, lua_pushinteger, (lua_State *L, lua_Integer n))                   \
    X(void, lua_pushnumber, (lua_State *L, lua_Number n))                     \
    X(const char *, lua_pushlstring, (lua_State *L, const char *s,            \
                                      size_t len))                            \
    X(const char *, lua_pushstring, (lua_State *L, const char *s))            \
    X(void, lua_pushlightuserdata, (lua_State *L, void *p))                   \
    X(void, lua_pushcclosure, (lua_State *L, lua_CFunction fn, int n))        \
    X(void, lua_createtable, (lua_State *L, int narr, int nrec))              \
    X(void *, lua_newuserdatauv, (lua_State *L, size_t sz, int nuvalue))      \
    X(void, lua_setfield, (lua_State *L, int idx, const char *k))             \
    X(int, lua_getfield, (lua_State *L, int idx, const char *k))              \
    X(void, lua_rawset, (lua_State *L, int idx))                              \
    X(int, lua_rawget, (lua_State *L, int idx))                               \
    X(void, lua_rawseti, (lua_State *L, int idx, lua_Integer n))              \
    X(int, lua_rawgeti, (lua_State *L, int idx, lua_Integer n))               \
    X(int, lua_rawgetp, (lua_State *L, int idx, const void *p))               \
    X(void, lua_rawsetp, (lua_State *L, int idx, const void *p))              \
    X(lua_Unsigned, lua_rawlen, (lua_State *L, int idx))                      \
    X(int, lua_next, (lua_State *L, int idx))                                 \
    X(int, lua_type, (lua_State *L, int idx))                                 \
    X(int, lua_toboolean, (lua_State *L, int idx))                            \
    X(lua_Integer, lua_tointegerx, (lua_State *L, int idx, int *isnum))       \
    X(lua_Number, lua_tonumberx, (lua_State *L, int idx, int *isnum))         \
    X(int, lua_isinteger, (lua_State *L, int idx))                            \
    X(void *, lua_touserdata, (lua_State *L, int idx))                        \
    X(int, lua_setmetatable, (lua_State *L, int objindex))                    \
    X(int, lua_getmetatable, (lua_State *L, int objindex))                    \
    X(lua_State *, lua_newthread, (lua_State *L))                             \
    X(lua_State *, lua_tothread, (lua_State *L, int idx))                     \
    X(int, lua_resume, (lua_State *L, lua_State *from, int narg, int *nres))  \
    X(int, lua_yieldk, (lua_State *L, int nresults, lua_KContext ctx,         \
                        lua_KFunction k))                                     \
    X(int, lua_isyieldable, (lua_State *L))                                   \
    X(void, lua_sethook, (lua_State *L, lua_Hook func, int mask, int count))  \
    X(int, lua_error, (lua_State *L))                                         \
    X(int, luaL_error, (lua_State *L, const char *fmt, ...))                  \
    X(void, lua_setglobal, (lua_State *L, const char *name))                  \
    X(int, lua_getglobal, (lua_State *L, const char *name))                   \
    X(const char *, luaL_checklstring, (lua_State *L, int arg, size_t *l))    \
    X(lua_Integer, luaL_checkinteger, (lua_State *L, int arg))                \
    X(const char *, luaL_optlstring, (lua_State *L, int arg,                  \
                                      const char *def, size_t *l))            \
    X(int, luaL_newmetatable, (lua_State *L, const char *tname))              \
    X(void, luaL_setmetatable, (lua_State *L, const char *tname))              \
    X(void *, luaL_testudata, (lua_State *L, int ud, const char *tname))      \
    X(int, luaL_ref, (lua_State *L, int t))                                   \
    X(void, luaL_unref, (lua_State *L, int t, int ref))                       \
    X(int, lua_rawequal, (lua_State *L, int idx1, int idx2))                  \
    X(int, lua_resetthread, (lua_State *L))                                   \
    X(int, lua_gc, (lua_State *L, int what, ...))                             \
    X(lua_CFunction, lua_atpanic, (lua_State *L, lua_CFunction panicf))       \
    X(int, lua_gethookcount, (lua_State *L))                                  \
    X(int, lua_gethookmask, (lua_State *L))                                   \
    X(int, lua_status, (lua_State *L))                                        \
    X(void, luaL_where, (lua_State *L, int lvl))                              \
    X(void, lua_concat, (lua_State *L, int n))                                \
    X(int, lua_stringtonumber, (lua_State *L, const char *s))                 \
    X(void, luaL_checktype, (lua_State *L, int arg, int t))                   \
    X(void, luaL_traceback, (lua_State *L, lua_State *L1, const char *msg,    \
                             int level))


typedef struct {
#define NGX_HTTP_LLM_LUA_POINTER(ret, name, args)  ret (*p_##name) args;
    NGX_HTTP_LLM_LUA_FUNCTIONS(NGX_HTTP_LLM_LUA_POINTER)
#undef NGX_HTTP_LLM_LUA_POINTER
} ngx_http_llm_lua_api_t;


extern ngx_http_llm_lua_api_t  ngx_http_llm_lua_api;


#define luaL_newstate        ngx_http_llm_lua_api.p_luaL_newstate
#define lua_newstate         ngx_http_llm_lua_api.p_lua_newstate
#define lua_close            ngx_http_llm_lua_api.p_lua_close
#define luaL_requiref        ngx_http_llm_lua_api.p_luaL_requiref
#define luaopen_base         ngx_http_llm_lua_api.p_luaopen_base
#define luaopen_math         ngx_http_llm_lua_api.p_luaopen_math
#define luaopen_table        ngx_http_llm_lua_api.p_luaopen_table
#define luaopen_string       ngx_http_llm_lua_api.p_luaopen_string
#define luaopen_utf8         ngx_http_llm_lua_api.p_luaopen_utf8
#define luaopen_coroutine    ngx_http_llm_lua_api.p_luaopen_coroutine
#define lua_settop           ngx_http_llm_lua_api.p_lua_settop
#define lua_gettop           ngx_http_llm_lua_api.p_lua_gettop
#define lua_absindex         ngx_http_llm_lua_api.p_lua_absindex
#define lua_rotate           ngx_http_llm_lua_api.p_lua_rotate
#define lua_pushvalue        ngx_http_llm_lua_api.p_lua_pushvalue
#define lua_copy             ngx_http_llm_lua_api.p_lua_copy
#define lua_xmove            ngx_http_llm_lua_api.p_lua_xmove
#define lua_setupvalue       ngx_http_llm_lua_api.p_lua_setupvalue
#define luaL_checkany        ngx_http_llm_lua_api.p_luaL_checkany
#define lua_checkstack       ngx_http_llm_lua_api.p_lua_checkstack
#define luaL_loadstring      ngx_http_llm_lua_api.p_luaL_loadstring
#define luaL_loadbufferx     ngx_http_llm_lua_api.p_luaL_loadbufferx
#define luaL_loadfilex       ngx_http_llm_lua_api.p_luaL_loadfilex
#define lua_pcallk           ngx_http_llm_lua_api.p_lua_pcallk
#define lua_callk            ngx_http_llm_lua_api.p_lua_callk
#define lua_tolstring        ngx_http_llm_lua_api.p_lua_tolstring
#define lua_pushnil          ngx_http_llm_lua_api.p_lua_pushnil
#define lua_pushboolean      ngx_http_llm_lua_api.p_lua_pushboolean
#define lua_pushinteger      ngx_http_llm_lua_api.p_lua_pushinteger
#define lua_pushnumber       ngx_http_llm_lua_api.p_lua_pushnumber
#define lua_pushlstring      ngx_http_llm_lua_api.p_lua_pushlstring
#define lua_pushstring       ngx_http_llm_lua_api.p_lua_pushstring
#define lua_pushlightuserdata ngx_http_llm_lua_api.p_lua_pushlightuserdata
#define lua_pushcclosure     ngx_http_llm_lua_api.p_lua_pushcclosure
#define lua_createtable      ngx_http_llm_lua_api.p_lua_createtable
#define lua_newuserdatauv    ngx_http_llm_lua_api.p_lua_newuserdatauv
#define lua_setfield         ngx_http_llm_lua_api.p_lua_setfield
#define lua_getfield         ngx_http_llm_lua_api.p_lua_getfield
#define lua_rawset           ngx_http_llm_lua_api.p_lua_rawset
#define lua_rawget           ngx_http_llm_lua_api.p_lua_rawget
#define lua_rawseti          ngx_http_llm_lua_api.p_lua_rawseti
#define lua_rawgeti          ngx_http_llm_lua_api.p_lua_rawgeti
#define lua_rawgetp          ngx_http_llm_lua_api.p_lua_rawgetp
#define lua_rawsetp          ngx_http_llm_lua_api.p_lua_rawsetp
#define lua_rawlen           ngx_http_llm_lua_api.p_lua_rawlen
#define lua_next             ngx_http_llm_lua_api.p_lua_next
#define lua_type             ngx_http_llm_lua_api.p_lua_type
#define lua_toboolean        ngx_http_llm_lua_api.p_lua_toboolean
#define lua_tointegerx       ngx_http_llm_lua_api.p_lua_tointegerx
#define lua_tonumberx        ngx_http_llm_lua_api.p_lua_tonumberx
#define lua_isinteger        ngx_http_llm_lua_api.p_lua_isinteger
#define lua_touserdata       ngx_http_llm_lua_api.p_lua_touserdata
#define lua_setmetatable     ngx_http_llm_lua_api.p_lua_setmetatable
#define lua_getmetatable     ngx_http_llm_lua_api.p_lua_getmetatable
#define lua_newthread        ngx_http_llm_lua_api.p_lua_newthread
#define lua_tothread         ngx_http_llm_lua_api.p_lua_tothread
#define lua_resume           ngx_http_llm_lua_api.p_lua_resume
#define lua_yieldk           ngx_http_llm_lua_api.p_lua_yieldk
#define lua_isyieldable      ngx_http_llm_lua_api.p_lua_isyieldable
#define lua_sethook          ngx_http_llm_lua_api.p_lua_sethook
#define lua_error            ngx_http_llm_lua_api.p_lua_error
#define luaL_error           ngx_http_llm_lua_api.p_luaL_error
#define lua_setglobal        ngx_http_llm_lua_api.p_lua_setglobal
#define lua_getglobal        ngx_http_llm_lua_api.p_lua_getglobal
#define luaL_checklstring    ngx_http_llm_lua_api.p_luaL_checklstring
#define luaL_checkinteger    ngx_http_llm_lua_api.p_luaL_checkinteger
#define luaL_optlstring      ngx_http_llm_lua_api.p_luaL_optlstring
#define luaL_newmetatable    ngx_http_llm_lua_api.p_luaL_newmetatable
#define luaL_setmetatable    ngx_http_llm_lua_api.p_luaL_setmetatable
#define luaL_testudata       ngx_http_llm_lua_api.p_luaL_testudata
#define luaL_ref             ngx_http_llm_lua_api.p_luaL_ref
#define luaL_unref           ngx_http_llm_lua_api.p_luaL_unref
#define lua_rawequal         ngx_http_llm_lua_api.p_lua_rawequal
#define lua_resetthread      ngx_http_llm_lua_api.p_lua_resetthread
#define lua_atpanic          ngx_http_llm_lua_api.p_lua_atpanic
#define lua_gethookcount     ngx_http_llm_lua_api.p_lua_gethookcount
#define lua_gethookmask      ngx_http_llm_lua_api.p_lua_gethookmask
#define lua_status           ngx_http_llm_lua_api.p_lua_status
#define luaL_where           ngx_http_llm_lua_api.p_luaL_where
#define lua_concat           ngx_http_llm_lua_api.p_lua_concat
#define lua_gc               ngx_http_llm_lua_api.p_lua_gc
#define lua_stringtonumber   ngx_http_llm_lua_api.p_lua_stringtonumber
#define luaL_checktype       ngx_http_llm_lua_api.p_luaL_checktype
#define luaL_traceback       ngx_http_llm_lua_api.p_luaL_traceback


/* ngx_http_llm_lua_api.c: the table, filled; only where nginx is */
#ifdef _NGX_CORE_H_INCLUDED_
ngx_int_t ngx_http_llm_lua_check_runtime(ngx_log_t *log);
#endif


#endif /* _NGX_HTTP_LLM_LUA_API_H_INCLUDED_ */
