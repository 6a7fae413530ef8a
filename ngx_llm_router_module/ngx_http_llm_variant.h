
/*
 * ngx_llm_router: the estimate of a request's tokens and the choice of a
 * variant of its model (ngx_http_llm_variant.c).
 */


#ifndef _NGX_HTTP_LLM_VARIANT_H_INCLUDED_
#define _NGX_HTTP_LLM_VARIANT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_body_buf.h"
#include "ngx_http_llm_tokenize.h"


/* the numbers of a choice, for the rejection when no variant holds it */
typedef struct {
    ngx_uint_t                     prompt;      /* tokens, about */
    ngx_uint_t                     completion;  /* asked for, or default */
    ngx_uint_t                     need;
    ngx_uint_t                     largest;     /* context; 0: none known */
} ngx_http_llm_fit_t;


extern ngx_str_t  ngx_http_llm_prompt_keys[];   /* messages, prompt, input */


ngx_int_t ngx_http_llm_choose_variant(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t **route,
    ngx_http_llm_fit_t *fit, ngx_http_llm_tokenize_done_pt done);
ngx_uint_t ngx_http_llm_model_context(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_model_t *model);


#endif /* _NGX_HTTP_LLM_VARIANT_H_INCLUDED_ */
