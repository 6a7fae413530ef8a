
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

/*
 * What the caller gives the decoder and the encoder: the allocator of
 * their buffers (realloc(ud, NULL, n) allocates; NULL: no memory; the
 * texts encode() returns are freed with free(), which takes NULL too),
 * and the layer above that hands objects over member by member (lua_lazy:
 * expand() decodes what of the object at idx was not read yet, before the
 * encoder writes it whole; 0, or -1 with *error set).  NULL expand: no
 * lazy tables.
 */

typedef struct ngx_http_llm_lua_json_env_s  ngx_http_llm_lua_json_env_t;

struct ngx_http_llm_lua_json_env_s {
    void                *(*realloc)(void *ud, void *p, size_t size);
    void                 (*free)(void *ud, void *p);
    void                  *ud;
    int                  (*expand)(lua_State *L, int idx, const char **error);
};


void ngx_http_llm_lua_json_init(lua_State *L);
void ngx_http_llm_lua_json_mark(lua_State *L, int idx, int array);
void ngx_http_llm_lua_json_object_mt(lua_State *L);
int ngx_http_llm_lua_json_is_array_mt(lua_State *L, int idx);
int ngx_http_llm_lua_number_tostring(lua_State *L);
int ngx_http_llm_lua_json_decode(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const char **error);
int ngx_http_llm_lua_json_decode_strict(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const unsigned char *p,
    size_t len, const char **error);
int ngx_http_llm_lua_json_encode(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, size_t hint,
    char **out, size_t *len, const char **error);
int ngx_http_llm_lua_json_encode_member(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, int idx, char **out,
    size_t *len, const char **error);
int ngx_http_llm_lua_json_same(lua_State *L,
    const ngx_http_llm_lua_json_env_t *env, const char *v, size_t vlen,
    const unsigned char *raw, size_t rawlen);


#endif /* _NGX_HTTP_LLM_LUA_JSON_H_INCLUDED_ */
