
/*
 * ngx_llm_router: a JSON object handed to a hook member by member
 * (ngx_http_llm_lua_lazy.c), above ngx_http_llm_lua_json.c.
 */


#ifndef _NGX_HTTP_LLM_LUA_LAZY_H_INCLUDED_
#define _NGX_HTTP_LLM_LUA_LAZY_H_INCLUDED_


#include <stddef.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_lua_json.h"
#include "ngx_http_llm_jscan.h"


#define NGX_HTTP_LLM_LAZY_SPENT                                               \
    "a document can be read only during the call it was given to "           \
    "(keep a copy of what a later call needs)"


typedef struct ngx_http_llm_lazy_s  ngx_http_llm_lazy_t;


void ngx_http_llm_lua_json_lazy_init(lua_State *L);
ngx_http_llm_lazy_t *ngx_http_llm_lua_json_lazy(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len);
ngx_http_llm_lazy_t *ngx_http_llm_lua_json_lazy_scanned(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const ngx_http_llm_jscan_t *scan);
int ngx_http_llm_lua_json_lazy_all(lua_State *L, int idx,
    const char **error);
int ngx_http_llm_lua_json_lazy_encode(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, char **out, size_t *len, const char **error);
void ngx_http_llm_lua_json_lazy_spend(ngx_http_llm_lazy_t *lz);
void ngx_http_llm_lua_json_lazy_done(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz);


#endif /* _NGX_HTTP_LLM_LUA_LAZY_H_INCLUDED_ */
