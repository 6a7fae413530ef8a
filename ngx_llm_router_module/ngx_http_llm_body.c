
/*
 * ngx_llm_router: the precontent handler, the body read, routed, rejected.
 * Not here: body spans (body_buf.c), edits (plan.c), variants (variant.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_text.h"
#include "ngx_http_llm_body_buf.h"
#include "ngx_http_llm_plan.h"
#include "ngx_http_llm_variant.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_edit.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_metrics.h"
#include "ngx_http_llm_response.h"
#include "ngx_http_llm_route.h"
#include "ngx_http_llm_upstream.h"
#include "ngx_http_llm_body.h"


static ngx_int_t ngx_http_llm_not_post(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_route_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_scan_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_check_keys(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_read_fields(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t **model);
static ngx_int_t ngx_http_llm_read_stream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_read_names(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_read_session(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_check_name(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const char *field, ngx_str_t *name);
static ngx_int_t ngx_http_llm_bad_name(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const char *field, int why);
static ngx_int_t ngx_http_llm_pick_route(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_pick_variant(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t **route);
static void ngx_http_llm_prefix_hash(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_edit_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t *model,
    ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_routed(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_request_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_hook_rules(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_hook_reroute(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *doc);
static ngx_int_t ngx_http_llm_no_healthy_upstream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_route_t *route);
static ngx_int_t ngx_http_llm_reject(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *param, const char *fmt, ...);


static ngx_str_t  ngx_http_llm_key_model = ngx_string("model");
static ngx_str_t  ngx_http_llm_key_user = ngx_string("user");

static ngx_str_t  ngx_http_llm_key_stream = ngx_string("stream");


ngx_int_t
ngx_http_llm_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx && ctx->status != NGX_AGAIN) {
        return ctx->status;
    }

    ctx = ngx_http_llm_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->status = NGX_DONE;

    if (!(r->method & NGX_HTTP_POST)) {
        return ngx_http_llm_not_post(r, ctx);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_llm_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/* 405 with Allow: POST, the body discarded */

static ngx_int_t
ngx_http_llm_not_post(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *allow;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    allow = ngx_list_push(&r->headers_out.headers);
    if (allow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow->hash = 1;
#if (nginx_version >= 1023000)
    allow->next = NULL;
#endif
    ngx_str_set(&allow->key, "Allow");
    ngx_str_set(&allow->value, "POST");

    rc = ngx_http_llm_reject(r, ctx, NGX_HTTP_NOT_ALLOWED,
                             "method_not_allowed", NULL,
                             "method %V is not allowed, use POST",
                             &r->method_name);

    ngx_http_finalize_request(r, ngx_http_llm_send_error(r, rc, ctx));

    return NGX_DONE;
}


/* routing goes on after a wait (an engine's /tokenize) */

void
ngx_http_llm_resume_routing(ngx_http_request_t *r)
{
    ngx_http_llm_body_handler(r);
}


static void
ngx_http_llm_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r);

    rc = ngx_http_llm_route_body(r, ctx);

    if (rc == NGX_AGAIN) {
        return;     /* ngx_http_llm_resume_routing() comes back here */
    }

    if (rc == NGX_OK) {
        ctx->status = NGX_DECLINED;

        r->preserve_body = 1;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    if (rc == NGX_ERROR) {
        rc = ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "internal_error", NULL,
                                 "the router failed to process the request");
    }

    ngx_http_finalize_request(r, ngx_http_llm_send_error(r, rc, ctx));
}



/*
 * NGX_OK: routed; NGX_AGAIN: waits for an engine's count; NGX_ERROR; or
 * the HTTP status of a rejection.  The steps: the body scanned, its fields
 * read, the route picked, the body edited for it, the request hooks run.
 */

static ngx_int_t
ngx_http_llm_route_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_int_t                     status;
    ngx_http_llm_edit_t           edit[NGX_HTTP_LLM_MAX_EDITS];
    ngx_http_llm_body_t           body;
    ngx_http_llm_edits_t          edits;
    ngx_http_llm_jscan_t          scan;
    ngx_http_llm_jscan_member_t  *model;

    if (ngx_http_llm_body_init(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the scan is over before this returns: it lives on the stack */

    status = ngx_http_llm_scan_body(r, ctx, &body, &scan);
    if (status != NGX_OK) {
        return status;
    }

    model = NULL;

    status = ngx_http_llm_read_fields(r, ctx, &body, &scan, &model);
    if (status != NGX_OK) {
        return status;
    }

    status = ngx_http_llm_pick_route(r, ctx, &body, &scan);
    if (status != NGX_OK) {
        return status;
    }

    ngx_http_llm_prefix_hash(ctx, &body, &scan);

    ngx_http_llm_edits_init(&edits, edit, NGX_HTTP_LLM_MAX_EDITS);

    status = ngx_http_llm_edit_body(r, ctx, &body, &scan, model, &edits);
    if (status != NGX_OK) {
        return status;
    }

    if (ngx_http_llm_hook_kinds(r, ctx) & (1 << NGX_HTTP_LLM_HOOK_REQUEST)) {
        status = ngx_http_llm_request_hook(r, ctx, &scan, &edits);
        if (status != NGX_OK) {
            return status;
        }
    }

    return ngx_http_llm_routed(r, ctx, &edits);
}


/* the body is a JSON object of at most 64 members; their keys are read */

static ngx_int_t
ngx_http_llm_scan_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    switch (ngx_http_llm_body_scan(body, scan)) {

    case NGX_HTTP_LLM_JSCAN_OK:
        break;

    case NGX_HTTP_LLM_JSCAN_NOT_OBJECT:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", NULL,
                                   "the request body must be a JSON object");

    case NGX_HTTP_LLM_JSCAN_TOO_MANY:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", NULL,
                                   "the request has more than %d top-level "
                                   "fields", NGX_HTTP_LLM_JSCAN_MAX_MEMBERS);

    default: /* NGX_HTTP_LLM_JSCAN_INVALID */
        if (body->len == 0) {
            return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_json", NULL,
                                       "the request body is empty");
        }

        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json", NULL,
                                   "the request body is not valid JSON: "
                                   "%s at byte %O", scan->error,
                                   scan->error_offset);
    }

    if (ngx_http_llm_body_keys(r, body, scan) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Top-level keys are plain and unique, before anything reads a field or a
 * hook runs.  A key with a JSON escape would name a field in a way the
 * rules do not see ("\u006dax_tokens" is max_tokens to the engine), and
 * of two copies of a field the router reads the first, Python engines the
 * last, and a hook either.  A body has a few members: the pairs are
 * compared by length first.
 */

static ngx_int_t
ngx_http_llm_check_keys(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    u_char      *param;
    ngx_str_t   *key;
    ngx_uint_t   i, j, count;

    key = body->keys;

    for (i = 0; i < scan->nmembers; i++) {

        if (body->escaped & ((uint64_t) 1 << i)) {
            goto refuse;
        }

        for (j = 0; j < i; j++) {
            if (key[j].len == key[i].len
                && ngx_memcmp(key[j].data, key[i].data, key[i].len) == 0)
            {
                goto refuse;
            }
        }
    }

    return NGX_OK;

refuse:

    param = ngx_pnalloc(r->pool, key[i].len + 1);
    if (param == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(param, key[i].data, key[i].len);
    param[key[i].len] = '\0';

    if (body->escaped & ((uint64_t) 1 << i)) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", (char *) param,
                                   "the top-level key \"%V\" is written "
                                   "with a JSON escape", &key[i]);
    }

    for (count = 0, j = 0; j < scan->nmembers; j++) {
        count += (key[j].len == key[i].len
                  && ngx_memcmp(key[j].data, key[i].data, key[i].len) == 0);
    }

    return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                               "invalid_request", (char *) param,
                               "the field \"%V\" appears %ui times",
                               &key[i], count);
}


static ngx_int_t
ngx_http_llm_read_fields(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_jscan_member_t **model)
{
    ngx_int_t                     i, rc;
    ngx_str_t                     raw;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    rc = ngx_http_llm_check_keys(r, ctx, body, scan);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_llm_read_stream(r, ctx, body, scan);
    if (rc != NGX_OK) {
        return rc;
    }

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_model,
                                 &count);

    if (i < 0) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_required", "model",
                                   "you must provide a model parameter");
    }

    m = &scan->members[i];

    if (m->type != NGX_HTTP_LLM_JSON_STRING) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "model",
                                   "the field \"model\" must be a string");
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->model_json = raw;

    rc = ngx_http_llm_json_string_value(r->pool, &raw, &ctx->model);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json", "model",
                                   "the field \"model\" is not a valid "
                                   "JSON string");
    }

    if (ctx->model.len == 0) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "model_required", "model",
                                   "you must provide a model parameter");
    }

    *model = m;

    return ngx_http_llm_read_names(r, ctx, body, scan);
}


/* "stream": a boolean, or null or absent for false */

static ngx_int_t
ngx_http_llm_read_stream(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    ngx_int_t                     i;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_stream,
                                 &count);

    m = (i >= 0) ? &scan->members[i] : NULL;

    if (m == NULL || m->type == NGX_HTTP_LLM_JSON_NULL) {
        ctx->stream = 0;

    } else if (m->type == NGX_HTTP_LLM_JSON_TRUE
               || m->type == NGX_HTTP_LLM_JSON_FALSE)
    {
        ctx->stream = (m->type == NGX_HTTP_LLM_JSON_TRUE);

    } else {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "stream",
                                   "the field \"stream\" must be a boolean");
    }

    return NGX_OK;
}


/*
 * The names from the body, checked before routing: the model's (decoded
 * already) and the session's.  They go into $llm_model and $llm_session,
 * headers, log lines and error messages as they are.
 */

static ngx_int_t
ngx_http_llm_read_names(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    ngx_int_t  rc;

    rc = ngx_http_llm_check_name(r, ctx, "model", &ctx->model);
    if (rc != NGX_OK) {
        ngx_str_null(&ctx->model);
        ngx_str_null(&ctx->model_json);
        return rc;
    }

    return ngx_http_llm_read_session(r, ctx, body, scan);
}


/* $llm_session: the body's "user", when it is a string */

static ngx_int_t
ngx_http_llm_read_session(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    ngx_int_t                     i, rc;
    ngx_str_t                     raw, name;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_user, &count);

    if (i < 0 || count != 1) {
        return (i == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    m = &scan->members[i];

    if (m->type != NGX_HTTP_LLM_JSON_STRING) {
        return NGX_OK;
    }

    /* a decoded byte takes at most 6 in JSON: longer is too long */

    if (m->value_end - m->value > 6 * NGX_HTTP_LLM_NAME_MAX + 2) {
        return ngx_http_llm_bad_name(r, ctx, "user", NGX_HTTP_LLM_NAME_LONG);
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_json_string_value(r->pool, &raw, &name);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_json", "user",
                                   "the field \"user\" is not a valid "
                                   "JSON string");
    }

    rc = ngx_http_llm_check_name(r, ctx, "user", &name);

    if (rc == NGX_OK) {
        ctx->session = name;
    }

    return rc;
}


/*
 * A name is at most 256 bytes of UTF-8 without control characters
 * (ngx_http_llm_text_name()): a single pass over a short string.
 */

static ngx_int_t
ngx_http_llm_check_name(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const char *field, ngx_str_t *name)
{
    int  why;

    why = ngx_http_llm_text_name(name->data, name->len);

    if (why == NGX_HTTP_LLM_NAME_OK) {
        return NGX_OK;
    }

    return ngx_http_llm_bad_name(r, ctx, field, why);
}


static ngx_int_t
ngx_http_llm_bad_name(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const char *field, int why)
{
    switch (why) {

    case NGX_HTTP_LLM_NAME_LONG:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", field,
                                   "the field \"%s\" is longer than %d bytes",
                                   field, NGX_HTTP_LLM_NAME_MAX);

    case NGX_HTTP_LLM_NAME_CONTROL:
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", field,
                                   "the field \"%s\" holds a control "
                                   "character", field);

    default: /* NGX_HTTP_LLM_NAME_UTF8 */
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", field,
                                   "the field \"%s\" is not valid UTF-8",
                                   field);
    }
}



/*
 * The route of the model, or of the variant that holds the request, or
 * the first fallback of it with a healthy peer.
 */

static ngx_int_t
ngx_http_llm_pick_route(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    ngx_int_t                  status;
    ngx_http_llm_route_t      *route, *healthy;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    route = ngx_http_llm_find_route(lmcf, &ctx->model);

    if (route == NULL) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_NOT_FOUND,
                                   "model_not_found", "model",
                                   "the model \"%V\" does not exist",
                                   &ctx->model);
    }

    if (route->model->variants) {
        status = ngx_http_llm_pick_variant(r, ctx, body, scan, &route);
        if (status != NGX_OK) {
            return status;
        }
    }

    healthy = ngx_http_llm_healthy_route(lmcf, route);

    if (healthy == NULL) {
        return ngx_http_llm_no_healthy_upstream(r, ctx, route);
    }

    if (healthy != route) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm router: model \"%V\" falls back to \"%V\": "
                      "no healthy peer in upstream \"%V\"", &ctx->model,
                      &healthy->model->name, &route->model->upstream->host);
        route = healthy;
    }

    ctx->route = route;
    ctx->upstream = route->model->upstream->host;
    ctx->target = route->send.len ? route->send : ctx->model;

    return NGX_OK;
}


/* the variant that holds the request (ngx_http_llm_variant.c), or why not */

static ngx_int_t
ngx_http_llm_pick_variant(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_route_t **route)
{
    ngx_int_t           status;
    ngx_http_llm_fit_t  fit;

    status = ngx_http_llm_choose_variant(r, ctx, body, scan, route, &fit,
                                         ngx_http_llm_resume_routing);

    if (status != NGX_DECLINED) {
        return status;
    }

    if (fit.largest == 0) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "no_healthy_upstream", NULL,
                                   "no engine of model \"%V\" has told its "
                                   "context size yet", &ctx->model);
    }

    return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                               "context_length_exceeded", "messages",
                               "the request needs about %ui tokens (a prompt "
                               "of about %ui and %ui to complete), more than "
                               "the largest context of model \"%V\", %ui "
                               "tokens", fit.need, fit.prompt, fit.completion,
                               &ctx->model, fit.largest);
}


/*
 * For "llm_balance prefix": the CRC32 of the prompt's first bytes (the
 * raw JSON of "messages", "prompt" or "input"), read where the body lies.
 */

static void
ngx_http_llm_prefix_hash(ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan)
{
    uint32_t                      crc;
    ngx_int_t                     i;
    ngx_str_t                    *key;
    ngx_uint_t                    count;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_jscan_member_t  *m;

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    if (lscf->balance != NGX_HTTP_LLM_BALANCE_PREFIX) {
        return;
    }

    i = NGX_DECLINED;

    for (key = ngx_http_llm_prompt_keys; key->len; key++) {
        i = ngx_http_llm_find_member(body, scan, key, &count);
        if (i >= 0) {
            break;
        }
    }

    if (i < 0) {
        return;
    }

    m = &scan->members[i];

    crc = ngx_http_llm_body_crc32(body, m->value,
                                  ngx_min(m->value_end,
                                          m->value
                                          + (off_t) lscf->prefix_length));

    /* CRC32 is linear: similar prompts would cluster on the ring */

    ctx->prefix_hash = ngx_murmur_hash2((u_char *) &crc, sizeof(uint32_t));
    ctx->has_prefix = 1;
}


/* the edits planned for the route (ngx_http_llm_plan.c) and applied */

static ngx_int_t
ngx_http_llm_edit_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_jscan_member_t *model, ngx_http_llm_edits_t *edits)
{
    ngx_int_t   status;
    ngx_str_t  *bad;

    bad = NULL;

    status = ngx_http_llm_plan_edits(r, ctx, body, scan, model, edits, &bad);

    if (status == NGX_DECLINED) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", NULL,
                                   "the field \"%V\" must be a number", bad);
    }

    if (status != NGX_OK) {
        return status;
    }

    if (edits->nelts == 0) {
        return NGX_OK;
    }

    return ngx_http_llm_apply_edits(r, body, edits);
}


/* the request goes on to the content phase: proxy_pass */

static ngx_int_t
ngx_http_llm_routed(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_edits_t *edits)
{
    ctx->routed = 1;

    if (ngx_http_llm_hide_accept_encoding(r) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_metrics_start(r, ctx);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: model \"%V\" -> \"%V\" upstream \"%V\", "
                   "%ui edits", &ctx->model, &ctx->target, &ctx->upstream,
                   edits->nelts);

    return NGX_OK;
}


/*
 * The Lua request hooks of the model and of the location, on the body as
 * it is now; a changed body replaces it (one buffer, new Content-Length).
 */

static ngx_int_t
ngx_http_llm_request_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_edits_t *edits)
{
    ngx_int_t             rc;
    ngx_str_t             doc;
    ngx_uint_t            drop;
    ngx_http_llm_jscan_t  edited;

    if (ngx_http_llm_flat_body(r, &doc) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the hook gets the members of the body as edited without a new scan */

    if (edits->nelts == 0) {
        ctx->body_scan = scan;

    } else if (ngx_http_llm_scan_edited(scan, edits, &edited) == NGX_OK) {
        ctx->body_scan = &edited;
    }

    rc = ngx_http_llm_hooks(r, ctx, NGX_HTTP_LLM_HOOK_REQUEST, &doc, &drop);

    ctx->body_scan = NULL;

    if (rc == NGX_DECLINED) {
        return ctx->hook_status;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->hook_route.len) {
        rc = ngx_http_llm_hook_reroute(r, ctx, &doc);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ctx->hook_changed) {
        return NGX_OK;      /* the body goes on as it was */
    }

    if (ngx_http_llm_set_body(r, &doc) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_hook_rules(r, ctx);
}



/*
 * The body a hook changed gets the rules of its model and the profile of
 * its engine again: those of the model llm.route() chose were never
 * applied, and a field the hook wrote (a max_completion_tokens for
 * llama.cpp, a stream_options for TGI) must hold to them too.  The rules
 * give the same body twice over, so what the router planned before the
 * hook is left as it is.  The model stays as the hook left it.
 */

static ngx_int_t
ngx_http_llm_hook_rules(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_http_llm_edit_t    edit[NGX_HTTP_LLM_MAX_EDITS];
    ngx_http_llm_body_t    body;
    ngx_http_llm_edits_t   edits;
    ngx_http_llm_jscan_t   scan;

    if (ngx_http_llm_body_init(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_body_scan(&body, &scan) != NGX_HTTP_LLM_JSCAN_OK) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "hook_error", NULL,
                                   "a hook left a body the router cannot "
                                   "read (a JSON object of at most %d "
                                   "fields)", NGX_HTTP_LLM_JSCAN_MAX_MEMBERS);
    }

    if (ngx_http_llm_body_keys(r, &body, &scan) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_check_keys(r, ctx, &body, &scan);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_llm_edits_init(&edits, edit, NGX_HTTP_LLM_MAX_EDITS);

    return ngx_http_llm_edit_body(r, ctx, &body, &scan, NULL, &edits);
}


/* llm.route(name): the request goes to that model, under its target */

static ngx_int_t
ngx_http_llm_hook_reroute(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *doc)
{
    ngx_str_t                     target, quoted;
    ngx_uint_t                    i;
    ngx_http_llm_jscan_t          scan;
    ngx_http_llm_route_t         *route;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_jscan_member_t  *m;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    route = ngx_http_llm_find_route(lmcf, &ctx->hook_route);

    if (route == NULL) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "hook_error", NULL,
                                   "a hook routed to the unknown model "
                                   "\"%V\"", &ctx->hook_route);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llm hook: model \"%V\" routed to \"%V\"", &ctx->model,
                  &ctx->hook_route);

    target = route->send.len ? route->send : ctx->hook_route;

    ctx->route = route;
    ctx->upstream = route->model->upstream->host;
    ctx->target = target;

    if (ngx_http_llm_json_quote(r->pool, &target, &quoted) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_jscan_init(&scan);
    (void) ngx_http_llm_jscan_feed(&scan, doc->data, doc->len);

    if (ngx_http_llm_jscan_finish(&scan) != NGX_HTTP_LLM_JSCAN_OK) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                   "hook_error", NULL,
                                   "a hook left a body that is not a JSON "
                                   "object");
    }

    for (i = 0; i < scan.nmembers; i++) {
        m = &scan.members[i];

        if (m->key_len != 5 || ngx_strncmp(doc->data + m->key, "model", 5))
        {
            continue;
        }

        if (ngx_http_llm_edit_doc(r, doc, m->value, m->value_end, &quoted)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->hook_changed = 1;

        return NGX_OK;
    }

    return ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "hook_error", NULL,
                               "a hook removed the field \"model\"");
}


/* 503 with Retry-After: the next check may bring a peer back */

static ngx_int_t
ngx_http_llm_no_healthy_upstream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_route_t *route)
{
    u_char                    *p;
    ngx_msec_t                 retry;
    ngx_table_elt_t           *h;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    (void) ngx_http_llm_upstream_usable(lmcf, route->model->upstream,
                                        &retry);

    h = ngx_list_push(&r->headers_out.headers);
    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);

    if (h == NULL || p == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%M", (retry + 999) / 1000) - p;

    ctx->upstream = route->model->upstream->host;

    return ngx_http_llm_reject(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "no_healthy_upstream", NULL,
                               "no healthy engine can serve the model "
                               "\"%V\" now", &ctx->model);
}


/* records the error for $llm_error, returns the status to answer with */

static ngx_int_t
ngx_http_llm_reject(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param,
    const char *fmt, ...)
{
    u_char     *p, buf[NGX_MAX_ERROR_STR];
    va_list     args;
    ngx_str_t   message;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    message.len = p - buf;
    message.data = ngx_pnalloc(r->pool, message.len);

    if (message.data == NULL) {
        ngx_str_set(&message, "out of memory");
    } else {
        ngx_memcpy(message.data, buf, message.len);
    }

    ngx_http_llm_set_error(ctx, code, NULL, param, &message);

    return status;
}
