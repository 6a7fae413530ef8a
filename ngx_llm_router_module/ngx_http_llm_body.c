
/*
 * ngx_llm_router: the precontent phase handler.  Reads the whole request
 * body after the access checks, scans it in the buffers nginx read it
 * into, finds the model, picks the route and edits the raw body: the new
 * body is a chain of the original spans, uncopied, and the edited pieces.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"


/* an edited body up to a page long is copied into one buffer */
#define NGX_HTTP_LLM_FLAT_BODY  4096


/* the body as nginx read it: memory buffers, or a file read into one */
typedef struct {
    ngx_chain_t                   *bufs;
    off_t                          len;
    ngx_chain_t                    flat;
    ngx_str_t                     *keys;     /* of the top-level members */
    uint64_t                       escaped;  /* bit k: key k has a '\\' */
} ngx_http_llm_body_t;


static void ngx_http_llm_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_route_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_body_init(ngx_http_request_t *r,
    ngx_http_llm_body_t *body);
static ngx_int_t ngx_http_llm_body_read_file(ngx_http_request_t *r,
    ngx_http_llm_body_t *body);
static ngx_int_t ngx_http_llm_body_range(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, off_t from, off_t to, ngx_str_t *out);
static ngx_int_t ngx_http_llm_body_keys(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_find_member(ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_str_t *name, ngx_uint_t *count);
static ngx_int_t ngx_http_llm_read_fields(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t **model);
static ngx_int_t ngx_http_llm_read_session(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static void ngx_http_llm_prefix_hash(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_plan_edits(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t *model,
    ngx_array_t *edits);
static ngx_int_t ngx_http_llm_plan_stream_usage(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_array_t *edits, ngx_str_t *insert);
static ngx_int_t ngx_http_llm_plan_profile(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_uint_t profile, u_char *dropped,
    u_char *touched, ngx_array_t *edits, ngx_str_t *insert);
static ngx_int_t ngx_http_llm_plan_drops(ngx_http_llm_jscan_t *scan,
    u_char *dropped, ngx_array_t *edits, ngx_uint_t *kept);
static ngx_int_t ngx_http_llm_add_edit(ngx_array_t *edits, off_t start,
    off_t end, ngx_str_t *data);
static ngx_int_t ngx_http_llm_apply_edits(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_array_t *edits);
static void ngx_http_llm_body_link(ngx_chain_t *cl, ngx_buf_t *b,
    u_char *start, u_char *end);
static ngx_int_t ngx_http_llm_request_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_jscan_t *scan, ngx_array_t *edits);
static ngx_int_t ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan,
    ngx_array_t *edits, ngx_http_llm_jscan_t *out);
static ngx_int_t ngx_http_llm_choose_variant(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t **route);
static ngx_int_t ngx_http_llm_tokenize_near(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t *first,
    ngx_uint_t prompt, ngx_int_t given);
static ngx_int_t ngx_http_llm_estimate(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_model_t *model, ngx_uint_t *prompt, ngx_int_t *given);
static size_t ngx_http_llm_text_bytes(cJSON *item, ngx_uint_t *count);
static size_t ngx_http_llm_text_bytes_parts(cJSON *parts);
static ngx_int_t ngx_http_llm_flat_body(ngx_http_request_t *r,
    ngx_str_t *doc);
static ngx_int_t ngx_http_llm_set_body(ngx_http_request_t *r,
    ngx_str_t *doc);
static ngx_int_t ngx_http_llm_body_length(ngx_http_request_t *r,
    off_t size);
static ngx_int_t ngx_http_llm_hook_reroute(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *doc);
static ngx_int_t ngx_http_llm_no_healthy_upstream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_route_t *route);
static ngx_int_t ngx_http_llm_reject(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *param, const char *fmt, ...);


static ngx_str_t  ngx_http_llm_key_model = ngx_string("model");
static ngx_str_t  ngx_http_llm_key_user = ngx_string("user");

/* where the prompt is, by endpoint: chat, completions, embeddings */
static ngx_str_t  ngx_http_llm_prompt_keys[] = {
    ngx_string("messages"),
    ngx_string("prompt"),
    ngx_string("input"),
    ngx_null_string
};
static ngx_str_t  ngx_http_llm_key_stream = ngx_string("stream");
static ngx_str_t  ngx_http_llm_key_stream_options =
    ngx_string("stream_options");


ngx_int_t
ngx_http_llm_router_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_table_elt_t          *allow;
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

    rc = ngx_http_read_client_request_body(r, ngx_http_llm_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

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


/* NGX_OK: routed; NGX_ERROR; or the HTTP status of a rejection */

static ngx_int_t
ngx_http_llm_route_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    int                           rc;
    ngx_int_t                     status;
    ngx_chain_t                  *cl;
    ngx_array_t                   edits;
    ngx_http_llm_body_t           body;
    ngx_http_llm_route_t         *route, *healthy;
    ngx_http_llm_jscan_t         *scan, scanner;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_jscan_member_t  *model;

    if (ngx_http_llm_body_init(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the scan is over before this returns: it lives on the stack */

    scan = &scanner;
    ngx_http_llm_jscan_init(scan);

    rc = NGX_HTTP_LLM_JSCAN_AGAIN;

    for (cl = body.bufs; cl && rc == NGX_HTTP_LLM_JSCAN_AGAIN; cl = cl->next) {
        rc = ngx_http_llm_jscan_feed(scan, cl->buf->pos,
                                     cl->buf->last - cl->buf->pos);
    }

    switch (ngx_http_llm_jscan_finish(scan)) {

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
        if (body.len == 0) {
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

    if (ngx_http_llm_body_keys(r, &body, scan) != NGX_OK) {
        return NGX_ERROR;
    }

    model = NULL;

    status = ngx_http_llm_read_fields(r, ctx, &body, scan, &model);
    if (status != NGX_OK) {
        return status;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    route = ngx_http_llm_find_route(lmcf, &ctx->model);

    if (route == NULL) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_NOT_FOUND,
                                   "model_not_found", "model",
                                   "the model \"%V\" does not exist",
                                   &ctx->model);
    }

    if (route->model->variants) {
        status = ngx_http_llm_choose_variant(r, ctx, &body, scan, &route);
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

    if (ngx_http_llm_read_session(r, ctx, &body, scan) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_prefix_hash(ctx, &body, scan);

    if (ngx_array_init(&edits, r->pool, 4, sizeof(ngx_http_llm_edit_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    status = ngx_http_llm_plan_edits(r, ctx, &body, scan, model, &edits);
    if (status != NGX_OK) {
        return status;
    }

    if (edits.nelts && ngx_http_llm_apply_edits(r, &body, &edits) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_llm_hook_kinds(r, ctx) & (1 << NGX_HTTP_LLM_HOOK_REQUEST)) {
        status = ngx_http_llm_request_hook(r, ctx, scan, &edits);
        if (status != NGX_OK) {
            return status;
        }
    }

    ctx->routed = 1;

    if (ngx_http_llm_hide_accept_encoding(r) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_metrics_start(r, ctx);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: model \"%V\" -> \"%V\" upstream \"%V\", "
                   "%ui edits", &ctx->model, &ctx->target, &ctx->upstream,
                   edits.nelts);

    return NGX_OK;
}


/*
 * The body's buffers.  In memory they are scanned and cut where they are;
 * a body in a temporary file is read into one buffer (edits cannot be cut
 * out of the file: a retry to the next upstream would resend its first
 * piece from offset 0 on).
 */

static ngx_int_t
ngx_http_llm_body_init(ngx_http_request_t *r, ngx_http_llm_body_t *body)
{
    ngx_chain_t  *cl;

    body->bufs = NULL;
    body->len = 0;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            return ngx_http_llm_body_read_file(r, body);
        }

        body->len += cl->buf->last - cl->buf->pos;
    }

    body->bufs = r->request_body->bufs;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_body_read_file(ngx_http_request_t *r, ngx_http_llm_body_t *body)
{
    u_char       *p;
    off_t         len, size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    b = ngx_create_temp_buf(r->pool, (size_t) len + 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = b->pos;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {

        if (!cl->buf->in_file) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
            continue;
        }

        size = cl->buf->file_last - cl->buf->file_pos;

        n = ngx_read_file(cl->buf->file, p, (size_t) size,
                          cl->buf->file_pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n != size) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          ngx_read_file_n " \"%V\" returned only %z bytes "
                          "instead of %O", &cl->buf->file->name, n, size);
            return NGX_ERROR;
        }

        p += n;
    }

    b->last = p;

    body->flat.buf = b;
    body->flat.next = NULL;
    body->bufs = &body->flat;
    body->len = len;

    return NGX_OK;
}


/* the bytes [from, to) of the body: in place, or copied if they straddle */

static ngx_int_t
ngx_http_llm_body_range(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    off_t from, off_t to, ngx_str_t *out)
{
    off_t         start, size, n;
    u_char       *p;
    ngx_chain_t  *cl;

    start = 0;

    for (cl = body->bufs; cl; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;

        if (from < start + size) {
            break;
        }

        start += size;
    }

    if (cl == NULL) {
        return NGX_ERROR;
    }

    out->len = (size_t) (to - from);

    if (to <= start + size) {
        out->data = cl->buf->pos + (from - start);
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, out->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for ( /* void */ ; cl && from < to; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;
        n = ngx_min(to, start + size) - from;

        p = ngx_cpymem(p, cl->buf->pos + (from - start), (size_t) n);

        from += n;
        start += size;
    }

    return NGX_OK;
}


/* the raw keys of the top-level members, looked up once */

static ngx_int_t
ngx_http_llm_body_keys(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan)
{
    ngx_uint_t                    i;
    ngx_http_llm_jscan_member_t  *m;

    body->keys = ngx_palloc(r->pool, (scan->nmembers + 1) * sizeof(ngx_str_t));
    if (body->keys == NULL) {
        return NGX_ERROR;
    }

    body->escaped = 0;

    for (i = 0; i < scan->nmembers; i++) {
        m = &scan->members[i];

        if (ngx_http_llm_body_range(r, body, m->key, m->key + m->key_len,
                                    &body->keys[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (memchr(body->keys[i].data, '\\', body->keys[i].len)) {
            body->escaped |= (uint64_t) 1 << i;
        }
    }

    return NGX_OK;
}


/* the index of the first top-level member named "name", or NGX_DECLINED */

static ngx_int_t
ngx_http_llm_find_member(ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_str_t *name, ngx_uint_t *count)
{
    ngx_int_t    found;
    ngx_str_t   *key;
    ngx_uint_t   i;

    found = NGX_DECLINED;
    *count = 0;

    for (i = 0; i < scan->nmembers; i++) {
        key = &body->keys[i];

        if (!(body->escaped & ((uint64_t) 1 << i))) {
            if (key->len != name->len
                || ngx_strncmp(key->data, name->data, name->len) != 0)
            {
                continue;
            }

        } else if (key->len < name->len || key->len > 6 * name->len
                   || !ngx_http_llm_json_key_equals(key->data, key->len,
                                                    name))
        {
            /* an escaped key is at most 6 bytes a character */
            continue;
        }

        if (found == NGX_DECLINED) {
            found = i;
        }

        (*count)++;
    }

    return found;
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

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_stream,
                                 &count);
    if (i == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (count > 1) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "stream",
                                   "the field \"stream\" appears %ui times",
                                   count);
    }

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

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_model,
                                 &count);
    if (i == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (count > 1) {
        return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "invalid_request", "model",
                                   "the field \"model\" appears %ui times",
                                   count);
    }

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

    return NGX_OK;
}


/* $llm_session: the body's "user", when it is a string */

static ngx_int_t
ngx_http_llm_read_session(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    ngx_int_t                     i;
    ngx_str_t                     raw;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_user, &count);

    if (i < 0 || count != 1) {
        return NGX_OK;
    }

    m = &scan->members[i];

    if (m->type != NGX_HTTP_LLM_JSON_STRING
        || m->value_end - m->value > 1024)
    {
        return NGX_OK;
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return (ngx_http_llm_json_string_value(r->pool, &raw, &ctx->session)
            == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/*
 * For "llm_balance prefix": the CRC32 of the prompt's first bytes (the
 * raw JSON of "messages", "prompt" or "input"), read where the body lies.
 */

static void
ngx_http_llm_prefix_hash(ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan)
{
    off_t                         from, to, start, size, n;
    uint32_t                      crc;
    ngx_int_t                     i;
    ngx_str_t                    *key;
    ngx_uint_t                    count;
    ngx_chain_t                  *cl;
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
    from = m->value;
    to = ngx_min(m->value_end, from + (off_t) lscf->prefix_length);

    ngx_crc32_init(crc);

    start = 0;

    for (cl = body->bufs; cl && from < to; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;

        if (from < start + size) {
            n = ngx_min(to, start + size) - from;
            ngx_crc32_update(&crc, cl->buf->pos + (from - start), (size_t) n);
            from += n;
        }

        start += size;
    }

    ngx_crc32_final(crc);

    /* CRC32 is linear: similar prompts would cluster on the ring */

    ctx->prefix_hash = ngx_murmur_hash2((u_char *) &crc, sizeof(uint32_t));
    ctx->has_prefix = 1;
}


static ngx_int_t
ngx_http_llm_plan_edits(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_jscan_member_t *model, ngx_array_t *edits)
{
    u_char                       *p, *dropped, *found, *touched;
    double                        number;
    size_t                        len;
    ngx_int_t                     k, status;
    ngx_str_t                     insert, raw, usage, profile_insert;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_uint_t                    i, count, kept;
    ngx_http_llm_rule_t          *rule;
    ngx_http_llm_route_t         *route;
    ngx_http_llm_jscan_member_t  *m;

    route = ctx->route;

    if (route->send_json.len
        && (ctx->model.len != route->send.len
            || ngx_strncmp(ctx->model.data, route->send.data,
                           route->send.len) != 0))
    {
        if (ngx_http_llm_add_edit(edits, model->value, model->value_end,
                                  &route->send_json)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    status = ngx_http_llm_plan_stream_usage(r, ctx, body, scan, edits,
                                            &usage);
    if (status != NGX_OK) {
        return status;
    }

    rule = route->model->rules.elts;
    len = 0;
    kept = scan->nmembers;
    found = NULL;
    ngx_str_null(&profile_insert);

    lscf = ngx_http_conf_upstream_srv_conf(route->model->upstream,
                                           ngx_http_llm_router_module);

    if (route->model->rules.nelts == 0 && lscf->profile == 0) {
        goto insert;
    }

    /* dropped[k]: 1 dropped; touched[k]: a rule changed member k */

    dropped = ngx_pcalloc(r->pool, 2 * (scan->nmembers + 1));
    found = ngx_pcalloc(r->pool, route->model->rules.nelts + 1);

    if (dropped == NULL || found == NULL) {
        return NGX_ERROR;
    }

    touched = dropped + scan->nmembers + 1;

    for (i = 0; i < route->model->rules.nelts; i++) {

        k = ngx_http_llm_find_member(body, scan, &rule[i].field, &count);
        if (k == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (count > 1) {
            return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request", NULL,
                                       "the field \"%V\" appears %ui times",
                                       &rule[i].field, count);
        }

        m = (k >= 0) ? &scan->members[k] : NULL;
        found[i] = (m != NULL);

        switch (rule[i].op) {

        case NGX_HTTP_LLM_RULE_SET:
            if (m == NULL) {
                len += rule[i].member.len + 1;
                break;
            }

            if (m->type == NGX_HTTP_LLM_JSON_NULL) {
                touched[k] = 1;

                if (ngx_http_llm_add_edit(edits, m->value, m->value_end,
                                          &rule[i].value)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            break;

        case NGX_HTTP_LLM_RULE_CLAMP:
            if (m == NULL || m->type == NGX_HTTP_LLM_JSON_NULL) {
                break;
            }

            if (m->type != NGX_HTTP_LLM_JSON_NUMBER
                || ngx_http_llm_body_range(r, body, m->value, m->value_end,
                                           &raw)
                   != NGX_OK
                || ngx_http_llm_json_number(raw.data, raw.len, &number)
                   != NGX_OK)
            {
                return ngx_http_llm_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request", NULL,
                                           "the field \"%V\" must be "
                                           "a number", &rule[i].field);
            }

            if (number > rule[i].limit) {
                touched[k] = 1;

                if (ngx_http_llm_add_edit(edits, m->value, m->value_end,
                                          &rule[i].value)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            break;

        default: /* NGX_HTTP_LLM_RULE_DROP */
            if (m) {
                dropped[k] = 1;
            }

            break;
        }
    }

    if (lscf->profile) {
        status = ngx_http_llm_plan_profile(r, ctx, body, scan, lscf->profile,
                                           dropped, touched, edits,
                                           &profile_insert);
        if (status != NGX_OK) {
            return status;
        }
    }

    if (ngx_http_llm_plan_drops(scan, dropped, edits, &kept) != NGX_OK) {
        return NGX_ERROR;
    }

insert:

    if (usage.len) {
        len += usage.len + 1;
    }

    if (profile_insert.len) {
        len += profile_insert.len + 1;
    }

    if (len == 0) {
        return NGX_OK;
    }

    /* defaults go before the closing brace: ,"field":value ... */

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    insert.data = p;

    for (i = 0; found && i < route->model->rules.nelts; i++) {
        if (rule[i].op != NGX_HTTP_LLM_RULE_SET || found[i]) {
            continue;
        }

        if (kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, rule[i].member.data, rule[i].member.len);
    }

    if (usage.len) {
        if (kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, usage.data, usage.len);
    }

    if (profile_insert.len) {
        if (kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, profile_insert.data, profile_insert.len);
    }

    insert.len = p - insert.data;

    return ngx_http_llm_add_edit(edits, scan->obj_end - 1, scan->obj_end - 1,
                                 &insert);
}


/*
 * llm_stream_usage: a streamed request that does not ask for usage gets
 * "stream_options":{"include_usage":true}, and the response filter drops
 * the usage event the client did not ask for.  An existing stream_options
 * object is rewritten; one of another type is left to the engine.
 */

static ngx_int_t
ngx_http_llm_plan_stream_usage(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_array_t *edits, ngx_str_t *insert)
{
    char                         *text;
    cJSON                        *json, *item;
    ngx_int_t                     i, rc;
    ngx_str_t                     raw, value;
    ngx_uint_t                    count, on;
    ngx_http_llm_loc_conf_t      *llcf;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_jscan_member_t  *m;

    ngx_str_null(insert);

    if (ctx->stream != 1) {
        return NGX_OK;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    on = (ctx->route->model->stream_usage == NGX_CONF_UNSET)
         ? (ngx_uint_t) llcf->stream_usage
         : (ngx_uint_t) ctx->route->model->stream_usage;

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    if (!on || (lscf->profile & NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS)) {
        return NGX_OK;      /* an engine that refuses stream_options */
    }

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_stream_options,
                                 &count);
    if (i == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (i < 0) {
        ngx_str_set(insert, "\"stream_options\":{\"include_usage\":true}");
        ctx->strip_usage = 1;
        return NGX_OK;
    }

    m = &scan->members[i];

    if (count > 1) {
        return NGX_OK;
    }

    if (m->type == NGX_HTTP_LLM_JSON_NULL) {
        ngx_str_set(&value, "{\"include_usage\":true}");
        ctx->strip_usage = 1;
        return ngx_http_llm_add_edit(edits, m->value, m->value_end, &value);
    }

    if (m->type != NGX_HTTP_LLM_JSON_OBJECT) {
        return NGX_OK;
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    json = cJSON_ParseWithLength((char *) raw.data, raw.len);
    if (json == NULL) {
        return NGX_OK;
    }

    rc = NGX_OK;
    item = cJSON_GetObjectItemCaseSensitive(json, "include_usage");

    if (cJSON_IsTrue(item)) {
        goto done;      /* the client asked for it */
    }

    cJSON_DeleteItemFromObjectCaseSensitive(json, "include_usage");

    if (cJSON_AddTrueToObject(json, "include_usage") == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    text = cJSON_PrintUnformatted(json);
    if (text == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    value.len = ngx_strlen(text);
    value.data = ngx_pnalloc(r->pool, value.len);

    if (value.data == NULL) {
        cJSON_free(text);
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(value.data, text, value.len);
    cJSON_free(text);

    ctx->strip_usage = 1;
    rc = ngx_http_llm_add_edit(edits, m->value, m->value_end, &value);

done:

    cJSON_Delete(json);

    return rc;
}


/*
 * The engine's dialect (llm_engine; a rule is left out with skip=):
 *   max_tokens      max_completion_tokens is renamed max_tokens (dropped
 *                   when both are there): llama.cpp, TGI, Ollama;
 *   stream_options  removed: TGI;
 *   n               above 1 becomes 1: TGI makes one choice;
 *   cache_prompt    "cache_prompt":true unless the client set it: llama.cpp.
 * Members a model's rules changed or dropped are left alone.
 */

static ngx_int_t
ngx_http_llm_plan_profile(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_uint_t profile, u_char *dropped, u_char *touched, ngx_array_t *edits,
    ngx_str_t *insert)
{
    double                        number;
    ngx_int_t                     k, j;
    ngx_str_t                     raw;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  mct = ngx_string("max_completion_tokens");
    static ngx_str_t  mt = ngx_string("max_tokens");
    static ngx_str_t  mt_key = ngx_string("\"max_tokens\"");
    static ngx_str_t  so = ngx_string("stream_options");
    static ngx_str_t  n = ngx_string("n");
    static ngx_str_t  one = ngx_string("1");
    static ngx_str_t  cp = ngx_string("cache_prompt");

    if (profile & NGX_HTTP_LLM_PROFILE_MAX_TOKENS) {
        k = ngx_http_llm_find_member(body, scan, &mct, &count);
        j = ngx_http_llm_find_member(body, scan, &mt, &count);

        if (k >= 0 && !dropped[k] && !touched[k]) {
            if (j >= 0) {
                dropped[k] = 1;

            } else {
                m = &scan->members[k];
                touched[k] = 1;

                if (ngx_http_llm_add_edit(edits, m->key - 1,
                                          m->key + m->key_len + 1, &mt_key)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    if (profile & NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS) {
        k = ngx_http_llm_find_member(body, scan, &so, &count);

        if (k >= 0 && !touched[k]) {
            dropped[k] = 1;
        }
    }

    if (profile & NGX_HTTP_LLM_PROFILE_N) {
        k = ngx_http_llm_find_member(body, scan, &n, &count);

        if (k >= 0 && !dropped[k] && !touched[k]
            && scan->members[k].type == NGX_HTTP_LLM_JSON_NUMBER)
        {
            m = &scan->members[k];

            if (ngx_http_llm_body_range(r, body, m->value, m->value_end,
                                        &raw)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (ngx_http_llm_json_number(raw.data, raw.len, &number)
                    == NGX_OK
                && number > 1)
            {
                touched[k] = 1;

                if (ngx_http_llm_add_edit(edits, m->value, m->value_end,
                                          &one)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }
        }
    }

    if (profile & NGX_HTTP_LLM_PROFILE_CACHE_PROMPT) {
        k = ngx_http_llm_find_member(body, scan, &cp, &count);

        if (k < 0) {
            ngx_str_set(insert, "\"cache_prompt\":true");
        }
    }

    return NGX_OK;
}


/*
 * Removes dropped members with their commas.  Before the first kept member
 * a member goes with the comma after it, after it with the comma before.
 */

static ngx_int_t
ngx_http_llm_plan_drops(ngx_http_llm_jscan_t *scan, u_char *dropped,
    ngx_array_t *edits, ngx_uint_t *kept)
{
    ngx_uint_t                    i, first, n;
    ngx_http_llm_jscan_member_t  *m;

    m = scan->members;
    n = scan->nmembers;

    for (first = 0; first < n && dropped[first]; first++) { /* void */ }

    *kept = 0;

    for (i = 0; i < n; i++) {
        *kept += !dropped[i];
    }

    /* a member starts at its key's opening quote */

    if (first == n) {
        return n ? ngx_http_llm_add_edit(edits, m[0].key - 1,
                                         m[n - 1].value_end, NULL)
                 : NGX_OK;
    }

    for (i = 0; i < n; i++) {
        if (!dropped[i]) {
            continue;
        }

        if (i < first) {
            if (ngx_http_llm_add_edit(edits, m[i].key - 1, m[i + 1].key - 1,
                                      NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_http_llm_add_edit(edits, m[i - 1].value_end,
                                         m[i].value_end, NULL)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_add_edit(ngx_array_t *edits, off_t start, off_t end,
    ngx_str_t *data)
{
    ngx_uint_t            i;
    ngx_http_llm_edit_t  *e, *elts;

    e = ngx_array_push(edits);
    if (e == NULL) {
        return NGX_ERROR;
    }

    /* keep the list ordered by position */

    elts = edits->elts;

    for (i = edits->nelts - 1; i > 0 && elts[i - 1].start > start; i--) {
        elts[i] = elts[i - 1];
    }

    e = &elts[i];
    e->start = start;
    e->end = end;

    if (data) {
        e->data = *data;

    } else {
        ngx_str_null(&e->data);
    }

    return NGX_OK;
}


/*
 * Replaces the request body with the kept spans of its buffers and the
 * edited pieces between them.  A body of up to NGX_HTTP_LLM_FLAT_BODY
 * bytes is copied into one buffer: one short copy costs less than the proxy
 * handling a buffer per piece.  A larger one is linked uncopied.
 */

static ngx_int_t
ngx_http_llm_apply_edits(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_array_t *edits)
{
    off_t                 pos, stop, start, size, from, to;
    u_char               *flat, *p;
    ngx_str_t             doc;
    ngx_buf_t            *b;
    ngx_uint_t            i, n;
    ngx_chain_t          *cl, *src, *links;
    ngx_http_llm_edit_t  *e;

    e = edits->elts;
    size = body->len;

    for (i = 0; i < edits->nelts; i++) {
        size += (off_t) e[i].data.len - (e[i].end - e[i].start);
    }

    flat = NULL;
    p = NULL;
    b = NULL;
    links = NULL;

    if (size <= NGX_HTTP_LLM_FLAT_BODY) {
        flat = ngx_pnalloc(r->pool, (size_t) size);
        if (flat == NULL) {
            return NGX_ERROR;
        }

        p = flat;

    } else {

        /* at most a piece of every buffer and an edit after each edit */

        n = 2 * edits->nelts + 1;

        for (src = body->bufs; src; src = src->next) {
            n++;
        }

        b = ngx_pcalloc(r->pool, n * sizeof(ngx_buf_t));
        links = ngx_palloc(r->pool, n * sizeof(ngx_chain_t));

        if (b == NULL || links == NULL) {
            return NGX_ERROR;
        }
    }

    cl = links;
    src = body->bufs;
    start = 0;
    pos = 0;

    for (i = 0; i <= edits->nelts; i++) {

        /* the original bytes [pos, stop), then edit i */

        stop = (i < edits->nelts) ? e[i].start : body->len;

        while (pos < stop && src) {
            size = src->buf->last - src->buf->pos;

            if (pos >= start + size) {
                start += size;
                src = src->next;
                continue;
            }

            from = pos - start;
            to = ngx_min(stop, start + size) - start;

            if (flat) {
                p = ngx_cpymem(p, src->buf->pos + from, (size_t) (to - from));

            } else {
                ngx_http_llm_body_link(cl++, b++, src->buf->pos + from,
                                       src->buf->pos + to);
            }

            pos = start + to;
        }

        if (i == edits->nelts) {
            break;
        }

        if (e[i].data.len) {
            if (flat) {
                p = ngx_cpymem(p, e[i].data.data, e[i].data.len);

            } else {
                ngx_http_llm_body_link(cl++, b++, e[i].data.data,
                                       e[i].data.data + e[i].data.len);
            }
        }

        pos = e[i].end;
    }

    if (flat) {
        doc.data = flat;
        doc.len = p - flat;

        return ngx_http_llm_set_body(r, &doc);
    }

    if (cl == links) {
        return NGX_ERROR;
    }

    cl[-1].next = NULL;
    cl[-1].buf->last_buf = 1;
    cl[-1].buf->last_in_chain = 1;

    size = 0;

    for (cl = links; cl; cl = cl->next) {
        size += cl->buf->last - cl->buf->pos;
    }

    r->request_body->bufs = links;

    return ngx_http_llm_body_length(r, size);
}


/*
 * Variants of a model: the smallest max_context that holds the estimated
 * prompt plus the completion asked for, among those with a usable peer.
 */

static ngx_int_t
ngx_http_llm_choose_variant(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_route_t **route)
{
    ngx_int_t                  given, status;
    ngx_uint_t                 i, n, prompt, completion, need, largest,
                               context, best_ctx, down_ctx;
    ngx_msec_t                 retry;
    ngx_http_llm_route_t     **v, *best, *down;
    ngx_http_llm_model_t      *model;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    if (ngx_http_llm_estimate(r, body, scan, (*route)->model, &prompt,
                              &given)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* near a "tokenize on" variant's limit: ask its engine, once */

    if (ctx->tokenized) {
        if (ctx->exact_tokens >= 0) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "llm router: prompt estimate %ui, exact %i",
                           prompt, ctx->exact_tokens);
            prompt = ctx->exact_tokens;
        }

    } else {
        status = ngx_http_llm_tokenize_near(r, ctx, body, scan, *route,
                                            prompt, given);
        if (status != NGX_DECLINED) {
            return status;
        }
    }

    v = (*route)->model->variants->elts;
    largest = 0;
    best = NULL;
    down = NULL;
    best_ctx = 0;
    down_ctx = 0;
    need = 0;
    completion = 0;

    for (i = 0; i < (*route)->model->variants->nelts; i++) {
        model = v[i]->model;

        /* "auto": what the engines said; not known yet: passed over */

        context = (model->max_context == NGX_HTTP_LLM_CONTEXT_AUTO)
                  ? ngx_http_llm_learned_context(lmcf, model->upstream)
                  : model->max_context;

        if (context == 0) {
            continue;
        }

        /* the completion asked for, else this variant's default */

        completion = (given >= 0) ? (ngx_uint_t) given
                     : (model->default_max_tokens != NGX_CONF_UNSET_UINT)
                       ? model->default_max_tokens : 0;
        n = prompt + completion;

        largest = ngx_max(largest, context);

        if (context < n) {
            need = ngx_max(need, n);
            continue;
        }

        /* the smallest that holds it; equal ones: the first declared */

        if (ngx_http_llm_upstream_usable(lmcf, model->upstream, &retry)
            || model->fallback_route)
        {
            if (best == NULL || context < best_ctx) {
                best = v[i];
                best_ctx = context;
                need = n;
            }

        } else if (down == NULL || context < down_ctx) {
            down = v[i];
            down_ctx = context;
        }
    }

    if (best == NULL) {
        best = down;        /* only down variants hold it: 503 follows */
    }

    ctx->estimated_tokens = need;

    if (best) {
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm router: \"%V\" needs about %ui tokens, "
                       "variant in upstream \"%V\" of %ui",
                       &ctx->model, need, &best->model->upstream->host,
                       best == down ? down_ctx : best_ctx);
        *route = best;
        return NGX_OK;
    }

    if (largest == 0) {
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
                               "tokens", need, prompt, completion, &ctx->model,
                               largest);
}


/*
 * A variant with "tokenize on" whose limit is within its margin of the
 * estimate: its engine counts the prompt.  NGX_AGAIN: routing waits for
 * it; NGX_DECLINED: no need, or it could not start.
 */

static ngx_int_t
ngx_http_llm_tokenize_near(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_route_t *first, ngx_uint_t prompt, ngx_int_t given)
{
    cJSON                        *json, *item, *content;
    u_char                       *p;
    size_t                        len;
    ngx_int_t                     k, rc;
    ngx_str_t                     raw, key, doc, target;
    ngx_uint_t                    i, count, context, need, margin, engine;
    ngx_http_llm_route_t        **v, *near;
    ngx_http_llm_model_t         *model;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  keys[] = {
        ngx_string("messages"), ngx_string("prompt"), ngx_null_string
    };

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    v = first->model->variants->elts;
    near = NULL;

    for (i = 0; i < first->model->variants->nelts; i++) {
        model = v[i]->model;

        if (model->tokenize != 1) {
            continue;
        }

        context = (model->max_context == NGX_HTTP_LLM_CONTEXT_AUTO)
                  ? ngx_http_llm_learned_context(lmcf, model->upstream)
                  : model->max_context;

        need = prompt + ((given >= 0) ? (ngx_uint_t) given
                         : (model->default_max_tokens != NGX_CONF_UNSET_UINT)
                           ? model->default_max_tokens : 0);
        margin = context * model->tokenize_margin / 100;

        if (context && need + margin >= context && need <= context + margin) {
            near = v[i];
            break;
        }
    }

    if (near == NULL) {
        return NGX_DECLINED;
    }

    /* the prompt: chat messages or a completion prompt, as sent */

    k = -1;

    for (i = 0; keys[i].len; i++) {
        k = ngx_http_llm_find_member(body, scan, &keys[i], &count);
        if (k >= 0) {
            key = keys[i];
            break;
        }
    }

    if (k < 0) {
        return NGX_DECLINED;
    }

    m = &scan->members[k];

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    lscf = ngx_http_conf_upstream_srv_conf(near->model->upstream,
                                           ngx_http_llm_router_module);
    engine = lscf->engine;

    if (engine == NGX_HTTP_LLM_ENGINE_VLLM) {

        /* {"model":TARGET,"messages"|"prompt":...} */

        target = near->send.len ? near->send_json : ctx->model;

        if (!near->send.len
            && ngx_http_llm_json_quote(r->pool, &ctx->model, &target)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        len = sizeof("{\"model\":,\"\":}") + target.len + key.len + raw.len;

        doc.data = ngx_pnalloc(r->pool, len);
        if (doc.data == NULL) {
            return NGX_ERROR;
        }

        doc.len = ngx_sprintf(doc.data, "{\"model\":%V,\"%V\":%V}", &target,
                              &key, &raw)
                  - doc.data;

    } else {

        /* llama.cpp: {"content":"the texts, one per line"} */

        json = cJSON_ParseWithLength((char *) raw.data, raw.len);
        if (json == NULL) {
            return NGX_DECLINED;
        }

        len = 0;

        cJSON_ArrayForEach(item, json) {
            content = cJSON_IsObject(item)
                      ? cJSON_GetObjectItemCaseSensitive(item, "content")
                      : item;

            if (cJSON_IsString(content)) {
                len += ngx_strlen(content->valuestring) + 1;
            }
        }

        if (cJSON_IsString(json)) {
            len = ngx_strlen(json->valuestring) + 1;
        }

        raw.data = ngx_pnalloc(r->pool, len + 1);
        if (raw.data == NULL) {
            cJSON_Delete(json);
            return NGX_ERROR;
        }

        p = raw.data;

        if (cJSON_IsString(json)) {
            p = ngx_cpymem(p, json->valuestring,
                           ngx_strlen(json->valuestring));

        } else {
            cJSON_ArrayForEach(item, json) {
                content = cJSON_IsObject(item)
                          ? cJSON_GetObjectItemCaseSensitive(item, "content")
                          : item;

                if (cJSON_IsString(content)) {
                    if (p != raw.data) {
                        *p++ = '\n';
                    }

                    p = ngx_cpymem(p, content->valuestring,
                                   ngx_strlen(content->valuestring));
                }
            }
        }

        cJSON_Delete(json);

        raw.len = p - raw.data;

        if (ngx_http_llm_json_quote(r->pool, &raw, &target) != NGX_OK) {
            return NGX_ERROR;
        }

        len = sizeof("{\"content\":}") + target.len;

        doc.data = ngx_pnalloc(r->pool, len);
        if (doc.data == NULL) {
            return NGX_ERROR;
        }

        doc.len = ngx_sprintf(doc.data, "{\"content\":%V}", &target)
                  - doc.data;
    }

    ctx->tokenized = 1;

    rc = ngx_http_llm_tokenize_start(r, ctx, near->model->upstream, &doc,
                                     near->model->tokenize_timeout);

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
}


/*
 * Tokens, estimated: the bytes of the message texts (and of the tool
 * definitions), of "prompt" or of "input", divided by bytes_per_token
 * of the first block (default 4), plus 4 per message and 3; *given is
 * max_completion_tokens or max_tokens, -1 when the request has neither.
 */

static ngx_int_t
ngx_http_llm_estimate(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_model_t *model,
    ngx_uint_t *prompt, ngx_int_t *given)
{
    cJSON                        *json;
    double                        number;
    size_t                        bytes;
    ngx_int_t                     i;
    ngx_str_t                     raw, *key;
    ngx_uint_t                    count, messages, per;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  texts[] = {
        ngx_string("messages"), ngx_string("prompt"), ngx_string("input"),
        ngx_null_string
    };
    static ngx_str_t  limits[] = {
        ngx_string("max_completion_tokens"), ngx_string("max_tokens"),
        ngx_null_string
    };
    static ngx_str_t  tools = ngx_string("tools");

    bytes = 0;
    messages = 0;

    for (key = texts; key->len; key++) {
        i = ngx_http_llm_find_member(body, scan, key, &count);

        if (i < 0) {
            continue;
        }

        m = &scan->members[i];

        if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        json = cJSON_ParseWithLength((char *) raw.data, raw.len);

        if (json) {
            bytes += ngx_http_llm_text_bytes(json, key == texts ? &messages
                                                                : NULL);
            cJSON_Delete(json);

        } else {
            bytes += raw.len;
        }
    }

    i = ngx_http_llm_find_member(body, scan, &tools, &count);

    if (i >= 0) {
        bytes += scan->members[i].value_end - scan->members[i].value;
    }

    per = (model->bytes_per_token && model->bytes_per_token
                                     != NGX_CONF_UNSET_UINT)
          ? model->bytes_per_token : 4;

    *prompt = (bytes + per - 1) / per + 4 * messages + 3;

    *given = -1;

    for (key = limits; key->len; key++) {
        i = ngx_http_llm_find_member(body, scan, key, &count);

        if (i < 0 || scan->members[i].type != NGX_HTTP_LLM_JSON_NUMBER) {
            continue;
        }

        m = &scan->members[i];

        if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
                == NGX_OK
            && ngx_http_llm_json_number(raw.data, raw.len, &number) == NGX_OK
            && number >= 0 && number < 1e9)
        {
            *given = (ngx_int_t) number;
            break;
        }
    }

    return NGX_OK;
}


/*
 * The bytes of the texts in a value: a string; strings of an array;
 * chat messages' "content" (a string, or parts with "text").
 */

static size_t
ngx_http_llm_text_bytes(cJSON *item, ngx_uint_t *count)
{
    size_t  bytes;
    cJSON  *e, *content;

    if (cJSON_IsString(item)) {
        return ngx_strlen(item->valuestring);
    }

    if (!cJSON_IsArray(item)) {
        return 0;
    }

    bytes = 0;

    cJSON_ArrayForEach(e, item) {
        if (cJSON_IsString(e)) {
            bytes += ngx_strlen(e->valuestring);
            continue;
        }

        if (count == NULL || !cJSON_IsObject(e)) {
            continue;
        }

        (*count)++;

        content = cJSON_GetObjectItemCaseSensitive(e, "content");

        if (cJSON_IsString(content)) {
            bytes += ngx_strlen(content->valuestring);

        } else if (cJSON_IsArray(content)) {
            bytes += ngx_http_llm_text_bytes_parts(content);
        }
    }

    return bytes;
}


static size_t
ngx_http_llm_text_bytes_parts(cJSON *parts)
{
    size_t  bytes;
    cJSON  *p, *text;

    bytes = 0;

    cJSON_ArrayForEach(p, parts) {
        text = cJSON_GetObjectItemCaseSensitive(p, "text");

        if (cJSON_IsString(text)) {
            bytes += ngx_strlen(text->valuestring);
        }
    }

    return bytes;
}


/*
 * The Lua request hooks of the model and of the location, on the body as
 * it is now; a changed body replaces it (one buffer, new Content-Length).
 */

static ngx_int_t
ngx_http_llm_request_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_t *scan, ngx_array_t *edits)
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

    return ngx_http_llm_set_body(r, &doc);
}


/* llm.route(name): the request goes to that model, under its target */

/*
 * The top-level members of the body after the edits, from those of the
 * body before them: a member whose key an edit covers was dropped, a value
 * an edit replaces whole takes the edit's place and type, the rest move by
 * the lengths the edits before them changed, and the members an edit
 * inserts are skimmed from its text alone.  NGX_DECLINED for any other
 * shape of edit: the hook scans the body then.
 */

static ngx_int_t
ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan, ngx_array_t *edits,
    ngx_http_llm_jscan_t *out)
{
    off_t                         shift, at[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
    size_t                        lead;
    ngx_uint_t                    i, k, n, moved;
    ngx_http_llm_edit_t          *e;
    ngx_http_llm_jskim_t          part;
    const u_char                 *from;
    ngx_http_llm_jscan_member_t  *m, *o;

    e = edits->elts;
    n = edits->nelts;

    if (n > NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
        return NGX_DECLINED;
    }

    /* where each edit's text starts in the edited body */

    shift = 0;

    for (k = 0; k < n; k++) {
        at[k] = e[k].start + shift;
        shift += (off_t) e[k].data.len - (e[k].end - e[k].start);
    }

    out->nmembers = 0;
    out->obj_start = scan->obj_start;
    out->obj_end = scan->obj_end + shift;

    for (i = 0; i < scan->nmembers; i++) {
        m = &scan->members[i];
        shift = 0;
        moved = 0;

        for (k = 0; k < n; k++) {
            if (e[k].start <= m->key - 1 && m->key - 1 < e[k].end) {
                break;                                  /* dropped */
            }

            if (e[k].start == m->value && e[k].end == m->value_end) {
                moved = k + 1;                          /* replaced */
                continue;
            }

            if (e[k].end <= m->key - 1) {
                shift += (off_t) e[k].data.len - (e[k].end - e[k].start);
                continue;
            }

            if (e[k].start >= m->value_end) {
                continue;
            }

            return NGX_DECLINED;      /* an edit inside the member */
        }

        if (k < n) {
            continue;
        }

        o = &out->members[out->nmembers++];
        *o = *m;
        o->key += shift;

        if (moved) {
            k = moved - 1;
            o->value = at[k];
            o->value_end = at[k] + e[k].data.len;

            o->type = ngx_http_llm_jscan_type(e[k].data.len
                                              ? e[k].data.data[0] : 0);

        } else {
            o->value += shift;
            o->value_end += shift;
        }
    }

    /* members inserted: ,"a":1,"b":2, the router's own valid text, skimmed */

    for (k = 0; k < n; k++) {
        if (e[k].start != e[k].end || e[k].data.len == 0) {
            continue;
        }

        lead = (e[k].data.data[0] == ',');

        part.pos = e[k].data.data + lead;
        part.last = e[k].data.data + e[k].data.len;

        for ( ;; ) {
            from = part.pos;

            if (ngx_http_llm_jskim_next(&part) != NGX_HTTP_LLM_JSKIM_MEMBER) {
                break;
            }

            if (out->nmembers == NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
                return NGX_DECLINED;
            }

            o = &out->members[out->nmembers++];
            o->key = at[k] + (part.key - e[k].data.data);
            o->key_len = part.key_len;
            o->value = at[k] + (part.value - e[k].data.data);
            o->value_end = at[k] + (part.value_end - e[k].data.data);
            o->type = ngx_http_llm_jscan_type(*part.value);
        }

        if (from != part.last) {
            return NGX_DECLINED;     /* not members to the end of the text */
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_hook_reroute(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *doc)
{
    u_char                       *p;
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

        p = ngx_pnalloc(r->pool, doc->len - (m->value_end - m->value)
                                 + quoted.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, doc->data, m->value);
        ngx_memcpy(p + m->value, quoted.data, quoted.len);
        ngx_memcpy(p + m->value + quoted.len, doc->data + m->value_end,
                   doc->len - m->value_end);

        doc->len = doc->len - (m->value_end - m->value) + quoted.len;
        doc->data = p;
        ctx->hook_changed = 1;

        return NGX_OK;
    }

    return ngx_http_llm_reject(r, ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                               "hook_error", NULL,
                               "a hook removed the field \"model\"");
}


/* the request body in one piece (in memory, or read from its file) */

static ngx_int_t
ngx_http_llm_flat_body(ngx_http_request_t *r, ngx_str_t *doc)
{
    u_char       *p;
    off_t         len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, (size_t) len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    doc->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != (ssize_t) (b->file_last - b->file_pos)) {
            return NGX_ERROR;
        }

        p += n;
    }

    doc->len = p - doc->data;

    return NGX_OK;
}


/* the body becomes doc */

static ngx_int_t
ngx_http_llm_set_body(ngx_http_request_t *r, ngx_str_t *doc)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ngx_http_llm_body_link(cl, b, doc->data, doc->data + doc->len);
    cl->next = NULL;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->request_body->bufs = cl;

    return ngx_http_llm_body_length(r, (off_t) doc->len);
}


/* the body's new length; $content_length and the header stay right */

static ngx_int_t
ngx_http_llm_body_length(ngx_http_request_t *r, off_t size)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    r->headers_in.content_length_n = size;

    h = r->headers_in.content_length;

    if (h == NULL) {
        return NGX_OK;
    }

    /* the digits right to left: ngx_sprintf() would cost more than that */

    last = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (last == NULL) {
        return NGX_ERROR;
    }

    last += NGX_OFF_T_LEN;
    p = last;

    do {
        *--p = (u_char) ('0' + size % 10);
        size /= 10;
    } while (size);

    h->value.data = p;
    h->value.len = last - p;

    return NGX_OK;
}


/* upstream retries reset pos to start, so both mark the span */

static void
ngx_http_llm_body_link(ngx_chain_t *cl, ngx_buf_t *b, u_char *start,
    u_char *end)
{
    b->memory = 1;
    b->start = start;
    b->pos = start;
    b->end = end;
    b->last = end;

    cl->buf = b;
    cl->next = cl + 1;
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
