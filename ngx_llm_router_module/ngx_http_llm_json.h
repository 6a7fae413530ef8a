
/*
 * ngx_llm_router: JSON keys, values and quoting for nginx strings, a cJSON
 * tree printed into a pool (ngx_http_llm_json.c).
 */


#ifndef _NGX_HTTP_LLM_JSON_H_INCLUDED_
#define _NGX_HTTP_LLM_JSON_H_INCLUDED_


#include "ngx_http_llm_router.h"


struct cJSON;


ngx_uint_t ngx_http_llm_json_key_equals(u_char *p, size_t len,
    ngx_str_t *name);
ngx_int_t ngx_http_llm_json_string_value(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_json_quote(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_log_text(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_json_include_usage(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_json_number(u_char *p, size_t len, double *out);
ngx_int_t ngx_http_llm_json_count(u_char *p, size_t len);
ngx_int_t ngx_http_llm_json_print(ngx_pool_t *pool, struct cJSON *json,
    ngx_str_t *out);


#endif /* _NGX_HTTP_LLM_JSON_H_INCLUDED_ */
