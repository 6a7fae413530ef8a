
/*
 * ngx_llm_router: the llm library and ctx of hooks
 * (ngx_http_llm_hook_lib.c).
 */


#ifndef _NGX_HTTP_LLM_HOOK_LIB_H_INCLUDED_
#define _NGX_HTTP_LLM_HOOK_LIB_H_INCLUDED_


#include "ngx_http_llm_lua.h"


extern const luaL_Reg  ngx_http_llm_hook_lib[];

void ngx_http_llm_hook_lib_init(lua_State *L);
void ngx_http_llm_push_ctx(lua_State *L, ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);


#endif /* _NGX_HTTP_LLM_HOOK_LIB_H_INCLUDED_ */
