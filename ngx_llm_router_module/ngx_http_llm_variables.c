
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
static ngx_int_t ngx_http_llm_int_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_engine_variable(ngx_http_request_t *r,
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

    { ngx_string("llm_engine"), NULL, ngx_http_llm_engine_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_prompt_tokens"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, prompt_tokens), NGX_HTTP_VAR_NOCACHEABLE,
      0 },

    { ngx_string("llm_completion_tokens"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, completion_tokens),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_total_tokens"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, total_tokens), NGX_HTTP_VAR_NOCACHEABLE,
      0 },

    { ngx_string("llm_ttft"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, ttft), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_estimated_tokens"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, estimated_tokens),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_stream_events"), NULL, ngx_http_llm_int_variable,
      offsetof(ngx_http_llm_ctx_t, events), NGX_HTTP_VAR_NOCACHEABLE, 0 },

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


/* a count from the response; empty when unknown (-1) */

static ngx_int_t
ngx_http_llm_int_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char              *p;
    ngx_int_t            n;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r->main);

    if (ctx == NULL
        || (!ctx->routed
            && data != offsetof(ngx_http_llm_ctx_t, estimated_tokens)))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    n = *(ngx_int_t *) ((char *) ctx + data);

    if (n < 0 || (data == offsetof(ngx_http_llm_ctx_t, events) && !ctx->sse))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%i", n) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


/* the llm_engine of the upstream the request was routed to */

static ngx_int_t
ngx_http_llm_engine_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char               *name;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_srv_conf_t  *lscf;

    ctx = ngx_http_llm_find_ctx(r->main);

    if (ctx == NULL || ctx->route == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    if (lscf == NULL || lscf->engine == NGX_HTTP_LLM_ENGINE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = ngx_http_llm_engine_name(lscf->engine);

    v->len = ngx_strlen(name);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = (u_char *) name;

    return NGX_OK;
}
