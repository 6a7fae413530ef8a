
/*
 * ngx_llm_router: running a Lua hook (ngx_http_llm_hook.c).
 */


#ifndef _NGX_HTTP_LLM_HOOK_H_INCLUDED_
#define _NGX_HTTP_LLM_HOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


struct lua_State;


ngx_int_t ngx_http_llm_hooks(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t kind, ngx_str_t *doc, ngx_uint_t *drop);
ngx_uint_t ngx_http_llm_hook_kinds(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);

/* for ngx_http_llm_hook_conf.c: a state's slots, a loaded hook's table */
void ngx_http_llm_hook_state_init(struct lua_State *L);
void ngx_http_llm_hook_keep(struct lua_State *L, ngx_uint_t index);


#endif /* _NGX_HTTP_LLM_HOOK_H_INCLUDED_ */
