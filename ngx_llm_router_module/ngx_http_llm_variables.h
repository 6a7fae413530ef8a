
/*
 * ngx_llm_router: the request's fields, read by the $llm_* variables and
 * by a hook's ctx (ngx_http_llm_variables.c).
 */


#ifndef _NGX_HTTP_LLM_VARIABLES_H_INCLUDED_
#define _NGX_HTTP_LLM_VARIABLES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


typedef struct ngx_http_llm_field_s  ngx_http_llm_field_t;

/* NGX_OK and *value (which may be empty), or NGX_DECLINED: not known */
typedef ngx_int_t (*ngx_http_llm_field_pt)(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const ngx_http_llm_field_t *f,
    ngx_str_t *value);

struct ngx_http_llm_field_s {
    ngx_str_t                  name;       /* ctx.name; empty: not in ctx */
    ngx_str_t                  variable;   /* $variable */
    ngx_http_llm_field_pt      get;
    uintptr_t                  data;
    unsigned                   flag:1;     /* "1" or "0": a boolean */
};


ngx_int_t ngx_http_llm_add_variables(ngx_conf_t *cf);
const ngx_http_llm_field_t *ngx_http_llm_field(const char *name,
    size_t len);


#endif /* _NGX_HTTP_LLM_VARIABLES_H_INCLUDED_ */
