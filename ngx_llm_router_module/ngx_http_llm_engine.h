
/*
 * ngx_llm_router: the engines (llm_engine) and what each one knows: its
 * check URI, metric names, dialect profile, limits and /tokenize.
 */


#ifndef _NGX_HTTP_LLM_ENGINE_H_INCLUDED_
#define _NGX_HTTP_LLM_ENGINE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


/* at most so many pieces in the body of a /tokenize request */
#define NGX_HTTP_LLM_TOKENIZE_PARTS  5


const char *ngx_http_llm_engine_name(ngx_uint_t engine);
char *ngx_http_llm_engine_conf(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf);
ngx_int_t ngx_http_llm_engine_init_upstream(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf);
ngx_uint_t ngx_http_llm_engine_limits(ngx_uint_t engine, u_char *p,
    size_t len);
ngx_uint_t ngx_http_llm_engine_tokenizes(ngx_uint_t engine);
ngx_str_t *ngx_http_llm_engine_tokenize_uri(ngx_uint_t engine);
ngx_int_t ngx_http_llm_engine_tokenize_body(ngx_pool_t *pool,
    ngx_uint_t engine, ngx_str_t *model_json, ngx_str_t *model,
    ngx_str_t *key, ngx_str_t *raw, ngx_str_t *doc, ngx_uint_t *parts);
ngx_int_t ngx_http_llm_engine_tokenize_count(ngx_uint_t engine, u_char *p,
    size_t len);
ngx_str_t *ngx_http_llm_engine_max_tokens_extra(ngx_uint_t engine);


#endif /* _NGX_HTTP_LLM_ENGINE_H_INCLUDED_ */
