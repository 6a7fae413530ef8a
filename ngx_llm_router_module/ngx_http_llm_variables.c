
/*
 * ngx_llm_router: $llm_* variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"


static ngx_int_t ngx_http_llm_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_stream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_peer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_llm_vars[] = {

    { ngx_string("llm_model"), NULL, ngx_http_llm_str_variable,
      offsetof(ngx_http_llm_ctx_t, model), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_target_model"), NULL, ngx_http_llm_str_variable,
      offsetof(ngx_http_llm_ctx_t, target), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_upstream"), NULL, ngx_http_llm_str_variable,
      offsetof(ngx_http_llm_ctx_t, upstream), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_error"), NULL, ngx_http_llm_str_variable,
      offsetof(ngx_http_llm_ctx_t, error.code), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_stream"), NULL, ngx_http_llm_stream_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_session"), NULL, ngx_http_llm_str_variable,
      offsetof(ngx_http_llm_ctx_t, session), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_peer"), NULL, ngx_http_llm_peer_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_llm_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_llm_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_str_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t           *s;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_stream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r->main);

    if (ctx == NULL || ctx->stream < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = 1;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = (u_char *) (ctx->stream ? "1" : "0");

    return NGX_OK;
}


/* the address of the peer the request went to last (after retries) */

static ngx_int_t
ngx_http_llm_peer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL || u->peer.name == NULL || u->peer.name->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = u->peer.name->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = u->peer.name->data;

    return NGX_OK;
}
