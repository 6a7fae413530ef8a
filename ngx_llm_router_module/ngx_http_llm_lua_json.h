
/*
 * ngx_llm_router: JSON documents as Lua values, and back
 * (ngx_http_llm_lua_json.c).
 */


#ifndef _NGX_HTTP_LLM_LUA_JSON_H_INCLUDED_
#define _NGX_HTTP_LLM_LUA_JSON_H_INCLUDED_


#include <stddef.h>

#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_jscan.h"


#define NGX_HTTP_LLM_LUA_NUMBER  "llm.number"

#define NGX_HTTP_LLM_LAZY_SPENT                                               \
    "a document can be read only during the call it was given to "           \
    "(keep a copy of what a later call needs)"


void ngx_http_llm_lua_json_init(lua_State *L);
void ngx_http_llm_lua_json_mark(lua_State *L, int idx, int array);
int ngx_http_llm_lua_number_tostring(lua_State *L);
int ngx_http_llm_lua_json_decode(lua_State *L, const unsigned char *p,
    size_t len, const char **error);
int ngx_http_llm_lua_json_decode_strict(lua_State *L, const unsigned char *p,
    size_t len, const char **error);
int ngx_http_llm_lua_json_encode(lua_State *L, int idx, size_t hint,
    char **out, size_t *len, const char **error);
int ngx_http_llm_lua_json_encode_member(lua_State *L, int idx, char **out,
    size_t *len, const char **error);

int ngx_http_llm_lua_json_same(lua_State *L, const char *v, size_t vlen,
    const unsigned char *raw, size_t rawlen);

/* ngx_http_llm_lua_lazy.c: a lazy document's state */
typedef struct ngx_http_llm_lazy_s  ngx_http_llm_lazy_t;

ngx_http_llm_lazy_t *ngx_http_llm_lua_json_lazy(lua_State *L,
    const unsigned char *p, size_t len);
ngx_http_llm_lazy_t *ngx_http_llm_lua_json_lazy_scanned(lua_State *L,
    const unsigned char *p, size_t len, const ngx_http_llm_jscan_t *scan);
int ngx_http_llm_lua_json_lazy_all(lua_State *L, int idx,
    const char **error);
void ngx_http_llm_lua_json_lazy_done(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz);
void ngx_http_llm_lua_json_object_mt(lua_State *L);

/* the buffers of the encoder and the decoder (ngx_http_llm_hook.c) */
void *ngx_http_llm_lua_tmp_alloc(size_t size);
void *ngx_http_llm_lua_tmp_realloc(void *p, size_t size);
void ngx_http_llm_lua_tmp_free(void *p);
void ngx_http_llm_lua_json_lazy_spend(ngx_http_llm_lazy_t *lz);
int ngx_http_llm_lua_json_is_array_mt(lua_State *L, int idx);
void ngx_http_llm_lua_json_lazy_init(lua_State *L);
int ngx_http_llm_lua_json_lazy_encode(lua_State *L, int idx,
    ngx_http_llm_lazy_t *lz, char **out, size_t *len, const char **error);


#endif /* _NGX_HTTP_LLM_LUA_JSON_H_INCLUDED_ */
