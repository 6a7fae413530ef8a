
/*
 * ngx_llm_router: the precontent phase handler.  Reads the whole request
 * body after the access checks, scans it in the buffers nginx read it
 * into, finds the model, picks the route and edits the raw body: the new
 * body is a chain of the original spans, uncopied, and the edited pieces.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_text.h"


/* an edited body up to a page long is copied into one buffer */
#define NGX_HTTP_LLM_FLAT_BODY  4096

/* a member's key and value, or the member; the model; the insertion */
#define NGX_HTTP_LLM_MAX_EDITS  (2 * NGX_HTTP_LLM_JSCAN_MAX_MEMBERS + 2)


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
static ngx_int_t ngx_http_llm_check_keys(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_read_fields(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t **model);
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
static void ngx_http_llm_prefix_hash(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
static ngx_int_t ngx_http_llm_plan_edits(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t *model,
    ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_plan_rule(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_rule_t *rule, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits, ngx_uint_t *found);
static ngx_int_t ngx_http_llm_plan_stream_usage(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_edits_t *edits,
    ngx_str_t *insert);
static ngx_uint_t ngx_http_llm_stream_options_owned(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_member_t *m, ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_plan_profile(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_uint_t profile, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits, ngx_str_t *insert);
static ngx_int_t ngx_http_llm_plan_drops(ngx_http_request_t *r,
    ngx_http_llm_jscan_t *scan, u_char *dropped, ngx_http_llm_edits_t *edits,
    ngx_uint_t *kept);
static ngx_int_t ngx_http_llm_add_edit(ngx_http_request_t *r,
    ngx_http_llm_edits_t *edits, off_t start, off_t end, ngx_str_t *data);
static ngx_int_t ngx_http_llm_apply_edits(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_edits_t *edits);
static int ngx_http_llm_edit_copy(void *arg, const u_char *p, size_t len);
static int ngx_http_llm_edit_link(void *arg, const u_char *p, size_t len);
static void ngx_http_llm_body_link(ngx_chain_t *cl, ngx_buf_t *b,
    u_char *start, u_char *end);
static ngx_int_t ngx_http_llm_request_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_http_llm_jscan_t *out);
static ngx_int_t ngx_http_llm_choose_variant(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t **route);
static ngx_int_t ngx_http_llm_tokenize_near(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_route_t *first, ngx_uint_t prompt,
    ngx_int_t given, ngx_str_t *raw, ngx_str_t *key);
static ngx_int_t ngx_http_llm_estimate(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_model_t *model, ngx_uint_t *prompt, ngx_int_t *given,
    ngx_str_t *raw, ngx_str_t *key);
static size_t ngx_http_llm_text_bytes(ngx_str_t *value, ngx_uint_t *count);
static ngx_int_t ngx_http_llm_flat_body(ngx_http_request_t *r,
    ngx_str_t *doc);
static ngx_int_t ngx_http_llm_set_body(ngx_http_request_t *r,
    ngx_str_t *doc);
static ngx_int_t ngx_http_llm_body_length(ngx_http_request_t *r,
    off_t size);
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
    ngx_http_llm_edit_t           edit[NGX_HTTP_LLM_MAX_EDITS];
    ngx_http_llm_body_t           body;
    ngx_http_llm_edits_t          edits;
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

    ngx_http_llm_prefix_hash(ctx, &body, scan);

    ngx_http_llm_edits_init(&edits, edit, NGX_HTTP_LLM_MAX_EDITS);

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


/*
 * The index of the top-level member named "name", or NGX_DECLINED.  The
 * keys were checked (ngx_http_llm_check_keys()): plain and unique, so the
 * first equal key is the only one, and count is 0 or 1.
 */

static ngx_int_t
ngx_http_llm_find_member(ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_str_t *name, ngx_uint_t *count)
{
    ngx_str_t   *key;
    ngx_uint_t   i;

    for (i = 0; i < scan->nmembers; i++) {
        key = &body->keys[i];

        if (key->len == name->len
            && ngx_memcmp(key->data, name->data, name->len) == 0)
        {
            *count = 1;
            return i;
        }
    }

    *count = 0;

    return NGX_DECLINED;
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
    ngx_http_llm_jscan_member_t *model, ngx_http_llm_edits_t *edits)
{
    u_char                       *p, *dropped, *found, *touched;
    size_t                        len;
    ngx_int_t                     status;
    ngx_str_t                     insert, usage, profile_insert, *member;
    ngx_uint_t                    i, kept, given;
    ngx_http_llm_rule_t          *rule;
    ngx_http_llm_route_t         *route;
    ngx_http_llm_srv_conf_t      *lscf;

    route = ctx->route;

    /* model: NULL after a hook, which set the model it wants */

    if (model && route->send_json.len
        && (ctx->model.len != route->send.len
            || ngx_strncmp(ctx->model.data, route->send.data,
                           route->send.len) != 0))
    {
        if (ngx_http_llm_add_edit(r, edits, model->value, model->value_end,
                                  &route->send_json)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    rule = route->model->rules.elts;
    len = 0;
    kept = scan->nmembers;
    found = NULL;
    ngx_str_null(&profile_insert);

    lscf = ngx_http_conf_upstream_srv_conf(route->model->upstream,
                                           ngx_http_llm_router_module);

    if (route->model->rules.nelts == 0 && lscf->profile == 0) {
        goto usage;
    }

    /*
     * dropped[k]: 1 dropped; touched[k]: a rule changed member k.  The
     * model's rules come first, then the engine's profile, the drops, and
     * llm_stream_usage last: each leaves alone what the ones before it
     * took, and an edit overlapping another cannot be added anyway.
     */

    dropped = ngx_pcalloc(r->pool, 2 * (scan->nmembers + 1));
    found = ngx_pcalloc(r->pool, route->model->rules.nelts + 1);

    if (dropped == NULL || found == NULL) {
        return NGX_ERROR;
    }

    touched = dropped + scan->nmembers + 1;

    for (i = 0; i < route->model->rules.nelts; i++) {
        status = ngx_http_llm_plan_rule(r, ctx, body, scan, &rule[i],
                                        dropped, touched, edits, &given);
        if (status != NGX_OK) {
            return status;
        }

        found[i] = (u_char) given;

        if (rule[i].op == NGX_HTTP_LLM_RULE_SET && !given) {
            len += rule[i].member.len + 1;
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

    if (ngx_http_llm_plan_drops(r, scan, dropped, edits, &kept) != NGX_OK) {
        return NGX_ERROR;
    }

usage:

    status = ngx_http_llm_plan_stream_usage(r, ctx, body, scan, edits,
                                            &usage);
    if (status != NGX_OK) {
        return status;
    }

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

        /* the name the engine reads: its profile's max_tokens */

        member = (rule[i].engine_member.len
                  && (lscf->profile & NGX_HTTP_LLM_PROFILE_MAX_TOKENS))
                 ? &rule[i].engine_member : &rule[i].member;

        p = ngx_cpymem(p, member->data, member->len);
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

    return ngx_http_llm_add_edit(r, edits, scan->obj_end - 1,
                                 scan->obj_end - 1, &insert);
}


/*
 * One rule on its field.  max_tokens and max_completion_tokens are one
 * field (an engine reads either, vLLM the second first), so a rule on one
 * holds the other too: both are clamped or dropped, and a default is set
 * only when neither is given.  llama.cpp reads its own n_predict before
 * either: a third name there.  *given: the client sent the field, under
 * any of its names, null or not.
 */

static ngx_int_t
ngx_http_llm_plan_rule(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_rule_t *rule, u_char *dropped, u_char *touched,
    ngx_http_llm_edits_t *edits, ngx_uint_t *given)
{
    double                        number;
    ngx_int_t                     k[3];
    ngx_str_t                     raw, *name, *extra;
    ngx_uint_t                    j, count, set;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_jscan_member_t  *m;

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    k[0] = ngx_http_llm_find_member(body, scan, &rule->field, &count);
    k[1] = rule->alias.len
           ? ngx_http_llm_find_member(body, scan, &rule->alias, &count)
           : NGX_DECLINED;
    extra = rule->alias.len
            ? ngx_http_llm_engine_max_tokens_extra(lscf->engine) : NULL;
    k[2] = extra ? ngx_http_llm_find_member(body, scan, extra, &count)
                 : NGX_DECLINED;

    *given = (k[0] >= 0 || k[1] >= 0 || k[2] >= 0);

    /* set: the client's nulls are replaced when it gave no value */

    set = 1;

    for (j = 0; j < 3; j++) {
        if (k[j] >= 0 && scan->members[k[j]].type != NGX_HTTP_LLM_JSON_NULL)
        {
            set = 0;
        }
    }

    for (j = 0; j < 3; j++) {

        if (k[j] < 0) {
            continue;
        }

        m = &scan->members[k[j]];
        name = (j == 0) ? &rule->field : (j == 1) ? &rule->alias : extra;

        switch (rule->op) {

        case NGX_HTTP_LLM_RULE_SET:
            if (!set) {
                break;
            }

            touched[k[j]] = 1;

            if (ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
                                      &rule->value)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

        case NGX_HTTP_LLM_RULE_CLAMP:
            if (m->type == NGX_HTTP_LLM_JSON_NULL) {
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
                                           "a number", name);
            }

            /* a negative max_tokens is no limit to llama.cpp and Ollama */

            if (number > rule->limit || (rule->alias.len && number < 0)) {
                touched[k[j]] = 1;

                if (ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
                                          &rule->value)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            break;

        default: /* NGX_HTTP_LLM_RULE_DROP */
            dropped[k[j]] = 1;
            break;
        }
    }

    return NGX_OK;
}


/*
 * llm_stream_usage: a streamed request that does not ask for usage gets
 * "stream_options":{"include_usage":true}, and the response filter drops
 * the usage event the client did not ask for.  An existing stream_options
 * object is rewritten; one of another type is left to the engine, and so
 * is one a model's rule or the engine's profile owns.
 */

static ngx_int_t
ngx_http_llm_plan_stream_usage(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_str_t *insert)
{
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

    if (ngx_http_llm_stream_options_owned(ctx, i >= 0 ? &scan->members[i]
                                                      : NULL, edits))
    {
        return NGX_OK;
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
        return ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
                                     &value);
    }

    if (m->type != NGX_HTTP_LLM_JSON_OBJECT) {
        return NGX_OK;
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_json_include_usage(r->pool, &raw, &value);
    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    ctx->strip_usage = 1;

    return ngx_http_llm_add_edit(r, edits, m->value, m->value_end, &value);
}


/* a model's rule on stream_options, or an edit of the member, owns it */

static ngx_uint_t
ngx_http_llm_stream_options_owned(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_member_t *m, ngx_http_llm_edits_t *edits)
{
    ngx_uint_t            i;
    ngx_http_llm_rule_t  *rule;

    rule = ctx->route->model->rules.elts;

    for (i = 0; i < ctx->route->model->rules.nelts; i++) {
        if (rule[i].field.len == ngx_http_llm_key_stream_options.len
            && ngx_memcmp(rule[i].field.data,
                          ngx_http_llm_key_stream_options.data,
                          rule[i].field.len) == 0)
        {
            return 1;
        }
    }

    return m && ngx_http_llm_edits_covered(edits, m->key - 1, m->value_end);
}


/*
 * The engine's dialect (llm_engine; a rule is left out with skip=):
 *   max_tokens      max_completion_tokens is renamed max_tokens (dropped
 *                   when both are there, but for a null max_tokens, which
 *                   gives way to it): llama.cpp, TGI, Ollama;
 *   stream_options  removed: TGI;
 *   n               above 1 becomes 1: TGI makes one choice;
 *   cache_prompt    "cache_prompt":true unless the client set it: llama.cpp.
 * Members a model's rules changed or dropped are left alone, but for the
 * rename of a max_completion_tokens a rule clamped: its key alone changes.
 */

static ngx_int_t
ngx_http_llm_plan_profile(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_uint_t profile, u_char *dropped, u_char *touched,
    ngx_http_llm_edits_t *edits, ngx_str_t *insert)
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

        /*
         * a null max_tokens is no limit to the engine: with a value in
         * max_completion_tokens (clamped or not) that one is the limit
         */

        if (k >= 0 && !dropped[k] && j >= 0 && !dropped[j] && !touched[j]
            && scan->members[j].type == NGX_HTTP_LLM_JSON_NULL
            && scan->members[k].type != NGX_HTTP_LLM_JSON_NULL)
        {
            dropped[j] = 1;
            j = NGX_DECLINED;
        }

        if (k >= 0 && !dropped[k]) {
            if (j >= 0) {
                if (!touched[k]) {
                    dropped[k] = 1;
                }

            } else {
                m = &scan->members[k];
                touched[k] = 1;

                if (ngx_http_llm_add_edit(r, edits, m->key - 1,
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

                if (ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
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


/* removes the dropped members with their commas (ngx_http_llm_edit.c) */

static ngx_int_t
ngx_http_llm_plan_drops(ngx_http_request_t *r, ngx_http_llm_jscan_t *scan,
    u_char *dropped, ngx_http_llm_edits_t *edits, ngx_uint_t *kept)
{
    int     rc;
    size_t  n;

    rc = ngx_http_llm_edits_drop(edits, scan->members, scan->nmembers,
                                 dropped, &n);
    *kept = n;

    if (rc == NGX_HTTP_LLM_EDIT_OK) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: a drop of a member is refused: %s",
                  (rc == NGX_HTTP_LLM_EDIT_OVERLAP) ? "it overlaps an edit"
                  : (rc == NGX_HTTP_LLM_EDIT_FULL) ? "too many edits"
                  : "an invalid range");

    return NGX_ERROR;
}


/*
 * An edit overlapping one planned before it is refused (ngx_http_llm_edit.c):
 * the planner leaves alone what an earlier step took, so this is a bug of
 * the router's, and the request fails rather than go out half edited.
 */

static ngx_int_t
ngx_http_llm_add_edit(ngx_http_request_t *r, ngx_http_llm_edits_t *edits,
    off_t start, off_t end, ngx_str_t *data)
{
    int  rc;

    rc = ngx_http_llm_edits_add(edits, start, end, data ? data->data : NULL,
                                data ? data->len : 0);

    if (rc == NGX_HTTP_LLM_EDIT_OK) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: an edit of the body's bytes %O-%O is refused: "
                  "%s", start, end,
                  (rc == NGX_HTTP_LLM_EDIT_OVERLAP) ? "it overlaps another"
                  : (rc == NGX_HTTP_LLM_EDIT_FULL) ? "too many edits"
                  : "an invalid range");

    return NGX_ERROR;
}


/* where the edited body goes: one buffer, or buffers linked */
typedef struct {
    u_char                *pos;
    u_char                *end;
    ngx_buf_t             *b;
    ngx_chain_t           *cl;
    ngx_chain_t           *last;
} ngx_http_llm_edit_out_t;


/*
 * Replaces the request body with the kept spans of its buffers and the
 * edited pieces between them.  A body of up to NGX_HTTP_LLM_FLAT_BODY
 * bytes is copied into one buffer: one short copy costs less than the proxy
 * handling a buffer per piece.  A larger one is linked uncopied.  The walk
 * of ngx_http_llm_edit.c writes what the list counts, and never past the
 * buffer or the links made for it.
 */

static ngx_int_t
ngx_http_llm_apply_edits(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_edits_t *edits)
{
    off_t                       size;
    u_char                     *flat;
    ngx_str_t                   doc;
    ngx_uint_t                  n;
    ngx_chain_t                *src, *links;
    ngx_http_llm_edit_out_t     out;
    ngx_http_llm_edits_walk_t   walk;

    size = body->len + edits->delta;

    flat = NULL;
    links = NULL;

    if (size < 0) {
        goto failed;
    }

    if (size <= NGX_HTTP_LLM_FLAT_BODY) {
        flat = ngx_pnalloc(r->pool, (size_t) size + 1);
        if (flat == NULL) {
            return NGX_ERROR;
        }

        out.pos = flat;
        out.end = flat + size;

        ngx_http_llm_edits_walk_init(&walk, edits, ngx_http_llm_edit_copy,
                                     &out);

    } else {

        /* at most a piece of every buffer and an edit after each edit */

        n = 2 * edits->nelts + 1;

        for (src = body->bufs; src; src = src->next) {
            n++;
        }

        out.b = ngx_pcalloc(r->pool, n * sizeof(ngx_buf_t));
        links = ngx_palloc(r->pool, n * sizeof(ngx_chain_t));

        if (out.b == NULL || links == NULL) {
            return NGX_ERROR;
        }

        out.cl = links;
        out.last = links + n;

        ngx_http_llm_edits_walk_init(&walk, edits, ngx_http_llm_edit_link,
                                     &out);
    }

    for (src = body->bufs; src; src = src->next) {
        if (ngx_http_llm_edits_walk_feed(&walk, src->buf->pos,
                                         src->buf->last - src->buf->pos)
            != 0)
        {
            goto failed;
        }
    }

    if (ngx_http_llm_edits_walk_finish(&walk) != 0 || walk.out != size) {
        goto failed;
    }

    if (flat) {
        doc.data = flat;
        doc.len = (size_t) size;

        return ngx_http_llm_set_body(r, &doc);
    }

    if (out.cl == links) {
        goto failed;
    }

    out.cl[-1].next = NULL;
    out.cl[-1].buf->last_buf = 1;
    out.cl[-1].buf->last_in_chain = 1;

    r->request_body->bufs = links;

    return ngx_http_llm_body_length(r, size);

failed:

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: the edited body does not come to the %O "
                  "bytes planned", size);

    return NGX_ERROR;
}


static int
ngx_http_llm_edit_copy(void *arg, const u_char *p, size_t len)
{
    ngx_http_llm_edit_out_t  *out = arg;

    if (len > (size_t) (out->end - out->pos)) {
        return -1;
    }

    out->pos = ngx_cpymem(out->pos, p, len);

    return 0;
}


static int
ngx_http_llm_edit_link(void *arg, const u_char *p, size_t len)
{
    ngx_http_llm_edit_out_t  *out = arg;

    if (out->cl == out->last) {
        return -1;
    }

    /* the pieces are read, never written: the proxy sends them */

    ngx_http_llm_body_link(out->cl++, out->b++, (u_char *) p,
                           (u_char *) p + len);

    return 0;
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
    ngx_str_t                  raw, key;
    ngx_uint_t                 i, n, prompt, completion, need, largest,
                               context, best_ctx, down_ctx;
    ngx_msec_t                 retry;
    ngx_http_llm_route_t     **v, *best, *down;
    ngx_http_llm_model_t      *model;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    ngx_str_null(&raw);
    ngx_str_null(&key);

    /* when the engine counted, the texts are not read (nor copied) again */

    if (ngx_http_llm_estimate(r, body, scan, (*route)->model, &prompt,
                              &given, (ctx->tokenized && ctx->exact_tokens
                                       >= 0) ? NULL : &raw, &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* near a "tokenize on" variant's limit: ask its engine, once */

    if (ctx->tokenized) {
        if (ctx->exact_tokens >= 0) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "llm router: prompt of %i tokens, counted",
                           ctx->exact_tokens);
            prompt = ctx->exact_tokens;
        }

    } else {
        status = ngx_http_llm_tokenize_near(r, ctx, *route, prompt, given,
                                            &raw, &key);
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
 * estimate: its engine counts the prompt (raw: the value of "messages" or
 * "prompt" as the estimate read it, key: which).  NGX_AGAIN: routing
 * waits for it; NGX_DECLINED: no need, or it could not start.
 */

static ngx_int_t
ngx_http_llm_tokenize_near(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_route_t *first, ngx_uint_t prompt, ngx_int_t given,
    ngx_str_t *raw, ngx_str_t *key)
{
    ngx_int_t                  rc;
    ngx_str_t                  doc[NGX_HTTP_LLM_TOKENIZE_PARTS];
    ngx_uint_t                 i, context, need, margin, parts;
    ngx_http_llm_route_t     **v, *near;
    ngx_http_llm_model_t      *model;
    ngx_http_llm_srv_conf_t   *lscf;
    ngx_http_llm_main_conf_t  *lmcf;

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

    if (raw->len == 0) {
        return NGX_DECLINED;
    }

    lscf = ngx_http_conf_upstream_srv_conf(near->model->upstream,
                                           ngx_http_llm_router_module);
    rc = ngx_http_llm_engine_tokenize_body(r->pool, lscf->engine,
                                           near->send.len ? &near->send_json
                                                          : NULL,
                                           &ctx->model, key, raw, doc,
                                           &parts);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx->tokenized = 1;

    rc = ngx_http_llm_tokenize_start(r, ctx, near->model->upstream, doc,
                                     parts, near->model->tokenize_timeout,
                                     ngx_http_llm_resume_routing);

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
}


/*
 * Tokens, estimated: the bytes of the message texts (and of the tool
 * definitions), of "prompt" or of "input", divided by bytes_per_token
 * of the first block (default 4), plus 4 per message and 3; *given is
 * max_completion_tokens or max_tokens, -1 when the request has neither;
 * *text is the raw value of "messages" or "prompt" (*name says which),
 * read once for /tokenize too.  With text NULL only *given is found.
 */

static ngx_int_t
ngx_http_llm_estimate(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_model_t *model,
    ngx_uint_t *prompt, ngx_int_t *given, ngx_str_t *text, ngx_str_t *name)
{
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

    for (key = texts; text && key->len; key++) {
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

        bytes += ngx_http_llm_text_bytes(&raw, key == texts ? &messages
                                                            : NULL);

        if (text->len == 0 && key < &texts[2]) {
            *text = raw;            /* "messages" or "prompt": /tokenize */
            *name = *key;
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
 * The bytes of the texts in a value, decoded: a string; strings of an
 * array; chat messages' "content" (a string, or parts with "text"),
 * walked where they lie (ngx_http_llm_texts_next()): no tree, nothing
 * allocated, whatever the client sends.
 */

static size_t
ngx_http_llm_text_bytes(ngx_str_t *value, ngx_uint_t *count)
{
    int                    rc;
    size_t                 bytes, len, n;
    const u_char          *text;
    ngx_http_llm_texts_t   t;

    ngx_http_llm_texts_init(&t, value->data, value->len, count != NULL);

    bytes = 0;

    while ((rc = ngx_http_llm_texts_next(&t, &text, &len)) == 1) {
        n = ngx_http_llm_text_decode(NULL, text, len);
        bytes += (n == NGX_HTTP_LLM_TEXT_BAD) ? len : n;
    }

    if (rc < 0) {
        return value->len;      /* not JSON: its bytes */
    }

    if (count) {
        *count += t.messages;
    }

    return bytes;
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
    ngx_chain_t           *cl;
    ngx_http_llm_edit_t    edit[NGX_HTTP_LLM_MAX_EDITS];
    ngx_http_llm_body_t    body;
    ngx_http_llm_edits_t   edits;
    ngx_http_llm_jscan_t   scan;

    if (ngx_http_llm_body_init(r, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_jscan_init(&scan);

    for (cl = body.bufs; cl; cl = cl->next) {
        (void) ngx_http_llm_jscan_feed(&scan, cl->buf->pos,
                                       cl->buf->last - cl->buf->pos);
    }

    if (ngx_http_llm_jscan_finish(&scan) != NGX_HTTP_LLM_JSCAN_OK) {
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

    rc = ngx_http_llm_plan_edits(r, ctx, &body, &scan, NULL, &edits);
    if (rc != NGX_OK) {
        return rc;
    }

    if (edits.nelts == 0) {
        return NGX_OK;
    }

    return ngx_http_llm_apply_edits(r, &body, &edits);
}


/* llm.route(name): the request goes to that model, under its target */

/*
 * The top-level members of the body after the edits, from those of the
 * body before them: a member an edit covers from its key on was dropped, a
 * key an edit replaces whole (quotes and all) was renamed, a value an edit
 * replaces whole takes the edit's place and type, the rest move by the
 * lengths the edits before them changed, and the members an edit inserts
 * are skimmed from its text alone.  NGX_DECLINED for any other shape of
 * edit: the hook scans the body then.
 */

static ngx_int_t
ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_http_llm_jscan_t *out)
{
    off_t                         shift, at[NGX_HTTP_LLM_MAX_EDITS];
    size_t                        lead;
    ngx_uint_t                    i, k, n, moved, renamed;
    ngx_http_llm_edit_t          *e;
    ngx_http_llm_jskim_t          part;
    const u_char                 *from;
    ngx_http_llm_jscan_member_t  *m, *o;

    e = edits->elts;
    n = edits->nelts;

    if (n > NGX_HTTP_LLM_MAX_EDITS) {
        return NGX_DECLINED;
    }

    /* where each edit's text starts in the edited body */

    shift = 0;

    for (k = 0; k < n; k++) {
        at[k] = e[k].start + shift;
        shift += (off_t) e[k].len - (e[k].end - e[k].start);
    }

    out->nmembers = 0;
    out->obj_start = scan->obj_start;
    out->obj_end = scan->obj_end + shift;

    for (i = 0; i < scan->nmembers; i++) {
        m = &scan->members[i];
        shift = 0;
        moved = 0;
        renamed = 0;

        for (k = 0; k < n; k++) {
            if (e[k].start == m->key - 1
                && e[k].end == m->key + (off_t) m->key_len + 1
                && e[k].len >= 2)
            {
                renamed = k + 1;                        /* "new key" */
                continue;
            }

            if (e[k].start <= m->key - 1 && m->key - 1 < e[k].end) {
                break;                                  /* dropped */
            }

            if (e[k].start == m->value && e[k].end == m->value_end) {
                moved = k + 1;                          /* replaced */
                continue;
            }

            if (e[k].end <= m->key - 1) {
                shift += (off_t) e[k].len - (e[k].end - e[k].start);
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

        if (renamed) {
            k = renamed - 1;
            o->key = at[k] + 1;
            o->key_len = e[k].len - 2;
            shift += (off_t) e[k].len - (e[k].end - e[k].start);
        }

        if (moved) {
            k = moved - 1;
            o->value = at[k];
            o->value_end = at[k] + e[k].len;

            o->type = ngx_http_llm_jscan_type(e[k].len ? e[k].data[0] : 0);

        } else {
            o->value += shift;
            o->value_end += shift;
        }
    }

    /* members inserted: ,"a":1,"b":2, the router's own valid text, skimmed */

    for (k = 0; k < n; k++) {
        if (e[k].start != e[k].end || e[k].len == 0) {
            continue;
        }

        lead = (e[k].data[0] == ',');

        part.pos = e[k].data + lead;
        part.last = e[k].data + e[k].len;

        for ( ;; ) {
            from = part.pos;

            if (ngx_http_llm_jskim_next(&part) != NGX_HTTP_LLM_JSKIM_MEMBER) {
                break;
            }

            if (out->nmembers == NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
                return NGX_DECLINED;
            }

            o = &out->members[out->nmembers++];
            o->key = at[k] + (part.key - e[k].data);
            o->key_len = part.key_len;
            o->value = at[k] + (part.value - e[k].data);
            o->value_end = at[k] + (part.value_end - e[k].data);
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
