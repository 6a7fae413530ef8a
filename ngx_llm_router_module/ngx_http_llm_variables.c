
/*
 * ngx_llm_router: the request's fields (one table, read by the $llm_*
 * variables and by a hook's ctx), and the $llm_* variables.
 * Not here: ctx itself and its Lua values (ngx_http_llm_hook_lib.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_variables.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_engine.h"


static ngx_int_t ngx_http_llm_field_str(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const ngx_http_llm_field_t *f,
    ngx_str_t *value);
static ngx_int_t ngx_http_llm_field_stream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const ngx_http_llm_field_t *f,
    ngx_str_t *value);
static ngx_int_t ngx_http_llm_field_engine(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const ngx_http_llm_field_t *f,
    ngx_str_t *value);
static ngx_int_t ngx_http_llm_field_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_peer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_int_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* the fields of the request: ctx.model is $llm_model, and so on */

static ngx_http_llm_field_t  ngx_http_llm_fields[] = {

    { ngx_string("model"), ngx_string("llm_model"),
      ngx_http_llm_field_str, offsetof(ngx_http_llm_ctx_t, model), 0 },

    { ngx_string("target"), ngx_string("llm_target_model"),
      ngx_http_llm_field_str, offsetof(ngx_http_llm_ctx_t, target), 0 },

    { ngx_string("upstream"), ngx_string("llm_upstream"),
      ngx_http_llm_field_str, offsetof(ngx_http_llm_ctx_t, upstream), 0 },

    { ngx_string("engine"), ngx_string("llm_engine"),
      ngx_http_llm_field_engine, 0, 0 },

    { ngx_string("stream"), ngx_string("llm_stream"),
      ngx_http_llm_field_stream, 0, 1 },

    { ngx_null_string, ngx_string("llm_error"),
      ngx_http_llm_field_str, offsetof(ngx_http_llm_ctx_t, error.code), 0 },

    { ngx_null_string, ngx_string("llm_session"),
      ngx_http_llm_field_str, offsetof(ngx_http_llm_ctx_t, session), 0 },

    { ngx_null_string, ngx_null_string, NULL, 0, 0 }
};


/* the variables that are not fields of the request */

static ngx_http_variable_t  ngx_http_llm_vars[] = {

    { ngx_string("llm_peer"), NULL, ngx_http_llm_peer_variable,
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
    ngx_http_variable_t   *var, *v;
    ngx_http_llm_field_t  *f;

    for (f = ngx_http_llm_fields; f->variable.len; f++) {
        var = ngx_http_add_variable(cf, &f->variable,
                                    NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_http_llm_field_variable;
        var->data = (uintptr_t) f;
    }

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


/* a hook's ctx.name: the field, or NULL (the variables only have none) */

const ngx_http_llm_field_t *
ngx_http_llm_field(const char *name, size_t len)
{
    ngx_http_llm_field_t  *f;

    if (len == 0) {
        return NULL;
    }

    for (f = ngx_http_llm_fields; f->variable.len; f++) {
        if (f->name.len == len && ngx_strncmp(f->name.data, name, len) == 0) {
            return f;
        }
    }

    return NULL;
}


/* $variable: a field of the request; not found when unknown or empty */

static ngx_int_t
ngx_http_llm_field_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   value;
    ngx_http_llm_ctx_t         *ctx;
    const ngx_http_llm_field_t *f = (const ngx_http_llm_field_t *) data;

    ctx = ngx_http_llm_find_ctx(r->main);

    if (ctx == NULL || f->get(r, ctx, f, &value) != NGX_OK
        || value.len == 0)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = value.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = value.data;

    return NGX_OK;
}


/* an ngx_str_t of the request's context, at f->data */

static ngx_int_t
ngx_http_llm_field_str(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const ngx_http_llm_field_t *f, ngx_str_t *value)
{
    *value = *(ngx_str_t *) ((char *) ctx + f->data);

    return NGX_OK;
}


/* "1" for a streamed request, "0" for one that is not; unknown before */

static ngx_int_t
ngx_http_llm_field_stream(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const ngx_http_llm_field_t *f, ngx_str_t *value)
{
    if (ctx->stream < 0) {
        return NGX_DECLINED;
    }

    value->len = 1;
    value->data = (u_char *) (ctx->stream ? "1" : "0");

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
ngx_http_llm_field_engine(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const ngx_http_llm_field_t *f, ngx_str_t *value)
{
    const char               *name;
    ngx_http_llm_srv_conf_t  *lscf;

    if (ctx->route == NULL) {
        return NGX_DECLINED;
    }

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    if (lscf == NULL || lscf->engine == NGX_HTTP_LLM_ENGINE_NONE) {
        return NGX_DECLINED;
    }

    name = ngx_http_llm_engine_name(lscf->engine);

    value->len = ngx_strlen(name);
    value->data = (u_char *) name;

    return NGX_OK;
}
