
/*
 * ngx_llm_router: engine errors in OpenAI's shape
 * (ngx_http_llm_response_error.c).
 */


#ifndef _NGX_HTTP_LLM_RESPONSE_ERROR_H_INCLUDED_
#define _NGX_HTTP_LLM_RESPONSE_ERROR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


ngx_buf_t *ngx_http_llm_engine_error(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_buf_t *body);


#endif /* _NGX_HTTP_LLM_RESPONSE_ERROR_H_INCLUDED_ */
