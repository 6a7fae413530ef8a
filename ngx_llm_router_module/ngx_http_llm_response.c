
/*
 * ngx_llm_router: the response filters' entry: what to do with an answer.
 * Not here: JSON answers (response_json.c), event streams (response_sse.c).
 */

/*
 * A header and a body filter that look at the answers to routed requests
 * only, and touch them only where this request needs it:
 *
 *   - JSON answers (ngx_http_llm_response_json.c): "usage" is read into
 *     $llm_*_tokens from a copy kept beside the untouched buffers; when
 *     the route sent another model name upstream, the body is held
 *     (headers too) and sent once with "model" set back to the name the
 *     client asked for; engine errors (4xx, 5xx) that are not in OpenAI's
 *     shape are rewritten into it (ngx_http_llm_response_error.c);
 *   - event streams (ngx_http_llm_response_sse.c): an incremental parser
 *     (ngx_http_llm_sse.c) finds each event; usage, time to the first
 *     content event and the event count are read on the way; the buffers
 *     pass untouched unless an event must change (model name restored, a
 *     usage event the client did not ask for dropped), and then events are
 *     copied out one by one;
 *   - a stream the engine breaks off (closed, timed out) ends with an error
 *     event in the shape of its API (ngx_http_llm_response_fail.c), so
 *     that a client never takes a truncated answer for a whole one;
 *   - what a response or chunk hook must see and cannot (an answer over
 *     llm_response_buffer_size, an event over llm_event_max_size, a
 *     compressed answer) fails closed, unless llm_hook_on_error is pass;
 *     routed requests do not pass the client's Accept-Encoding on.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_response.h"
#include "ngx_http_llm_response_json.h"
#include "ngx_http_llm_response_sse.h"
#include "ngx_http_llm_response_fail.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_json.h"


/* by the lower-case key nginx keeps: no ngx_strncasecmp() per header */
#define ngx_http_llm_is_accept_encoding(h)                                    \
    ((h)->key.len == sizeof("accept-encoding") - 1                            \
     && (h)->lowcase_key[0] == 'a'                                            \
     && ngx_strncmp((h)->lowcase_key, "accept-encoding",                      \
                    sizeof("accept-encoding") - 1) == 0)

#define ngx_http_llm_is_identity(v)                                           \
    ((v)->len == sizeof("identity") - 1                                       \
     && (ngx_strncmp((v)->data, "identity", sizeof("identity") - 1) == 0      \
         || ngx_strncasecmp((v)->data, (u_char *) "identity",                 \
                            sizeof("identity") - 1) == 0))

#define NGX_HTTP_LLM_ERROR_KEEP     (64 * 1024)

/* ngx_http_llm_content_kind() */
#define NGX_HTTP_LLM_TYPE_OTHER     0
#define NGX_HTTP_LLM_TYPE_JSON      1
#define NGX_HTTP_LLM_TYPE_SSE       2


static ngx_int_t ngx_http_llm_response_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_response_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_uint_t ngx_http_llm_api(ngx_http_request_t *r);
static ngx_uint_t ngx_http_llm_compressed(ngx_str_t *value);
static ngx_uint_t ngx_http_llm_content_kind(ngx_str_t *type);
static ngx_int_t ngx_http_llm_unreadable(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_undecodable(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t kind);
static ngx_int_t ngx_http_llm_restore_model(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_response_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_llm_take_finalize(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp);
static void ngx_http_llm_upstream_finalize(ngx_http_request_t *r,
    ngx_int_t rc);


ngx_int_t
ngx_http_llm_response_filter_init(ngx_conf_t *cf)
{
    ngx_http_llm_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_response_header_filter;

    ngx_http_llm_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llm_response_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_response_header_filter(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_llm_ctx_t  *ctx;

    /* answers of engines only: nginx's own pages are the error filter's */

    if (r != r->main || r->upstream == NULL || r->err_status) {
        return ngx_http_llm_next_header_filter(r);
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || !ctx->routed || ctx->response) {
        return ngx_http_llm_next_header_filter(r);
    }

    rc = ngx_http_llm_response_start(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DONE) {
        /* held: the headers go out with the body */
        return NGX_OK;
    }

    return ngx_http_llm_next_header_filter(r);
}


/* picks what to do with this answer; NGX_DONE: headers held */

static ngx_int_t
ngx_http_llm_response_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_uint_t                status, kind;
    ngx_http_llm_response_t  *resp;
    ngx_http_llm_loc_conf_t  *llcf;

    status = r->headers_out.status;
    kind = ngx_http_llm_content_kind(&r->headers_out.content_type);

    if (kind != NGX_HTTP_LLM_TYPE_SSE) {
        ctx->ttft = ngx_http_llm_elapsed(r);
    }

    if (r->header_only || status < NGX_HTTP_OK
        || (status >= NGX_HTTP_SPECIAL_RESPONSE
            && status < NGX_HTTP_BAD_REQUEST))
    {
        return NGX_OK;
    }

    resp = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_response_t));
    if (resp == NULL) {
        return NGX_ERROR;
    }

    ctx->response = resp;
    resp->api = ngx_http_llm_api(r);

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    resp->hooks = ngx_http_llm_hook_kinds(r, ctx);

    if (status < NGX_HTTP_SPECIAL_RESPONSE
        && kind == NGX_HTTP_LLM_TYPE_OTHER)
    {
        return ngx_http_llm_unreadable(r, ctx);
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->hash
        && ngx_http_llm_compressed(&r->headers_out.content_encoding->value))
    {
        return ngx_http_llm_undecodable(r, ctx, kind);
    }

    if (ngx_http_llm_restore_model(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main_filter_need_in_memory = 1;

    if (status >= NGX_HTTP_BAD_REQUEST) {
        resp->mode = NGX_HTTP_LLM_MODE_ERROR;
        resp->limit = NGX_HTTP_LLM_ERROR_KEEP;

    } else if (kind == NGX_HTTP_LLM_TYPE_SSE) {

        if (ngx_http_llm_sse_start(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        /* to end a stream the engine breaks off */

        ngx_http_llm_take_finalize(r, resp);

        return NGX_OK;

    } else if (resp->model_json.len
               || (resp->hooks & (1 << NGX_HTTP_LLM_HOOK_RESPONSE)))
    {
        resp->mode = NGX_HTTP_LLM_MODE_EDIT;
        resp->limit = llcf->response_buffer_size;

    } else {
        resp->mode = NGX_HTTP_LLM_MODE_OBSERVE;
        resp->limit = llcf->response_buffer_size;
        return NGX_OK;
    }

    /* held until the whole body is in; the engine may break it off */

    r->allow_ranges = 0;

    ngx_http_llm_take_finalize(r, resp);

    return NGX_DONE;
}


/*
 * The first letter picks the one comparison worth making; engines write
 * the type in lower case, which ngx_strncmp() checks faster.
 */

static ngx_uint_t
ngx_http_llm_content_kind(ngx_str_t *type)
{
    if (type->len >= 17 && (type->data[0] | 0x20) == 't'
        && (ngx_strncmp(type->data, "text/event-stream", 17) == 0
            || ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                               17)
               == 0))
    {
        return NGX_HTTP_LLM_TYPE_SSE;
    }

    if (type->len >= 16 && (type->data[0] | 0x20) == 'a'
        && (ngx_strncmp(type->data, "application/json", 16) == 0
            || ngx_strncasecmp(type->data, (u_char *) "application/json",
                               16)
               == 0))
    {
        return NGX_HTTP_LLM_TYPE_JSON;
    }

    return NGX_HTTP_LLM_TYPE_OTHER;
}


/* neither JSON nor events: refused where a hook must read it */

static ngx_int_t
ngx_http_llm_unreadable(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_loc_conf_t  *llcf;

    if (!(ctx->response->hooks & ((1 << NGX_HTTP_LLM_HOOK_RESPONSE)
                                  | (1 << NGX_HTTP_LLM_HOOK_CHUNK)
                                  | (1 << NGX_HTTP_LLM_HOOK_DONE)))
        || r->headers_out.status == NGX_HTTP_NO_CONTENT
        || r->headers_out.content_length_n == 0)
    {
        return NGX_OK;      /* NGX_HTTP_LLM_MODE_NONE: nothing hidden */
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->hook_on_error) {
        return ngx_http_llm_refuse(r, ctx, "unexpected_content_type",
                                   "the engine's answer is neither JSON "
                                   "nor an event stream (Content-Type), "
                                   "the hooks cannot read it");
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm router: the engine's answer is neither JSON nor "
                  "an event stream (Content-Type: \"%V\"), passed on "
                  "without the hooks (llm_hook_on_error pass)",
                  &r->headers_out.content_type);

    return NGX_OK;
}


/* a compressed answer: the router cannot read it, refused where a hook must */

static ngx_int_t
ngx_http_llm_undecodable(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t kind)
{
    ngx_uint_t                read, level;
    ngx_http_llm_loc_conf_t  *llcf;

    read = (r->headers_out.status < NGX_HTTP_BAD_REQUEST
            && (ctx->response->hooks
                & (kind == NGX_HTTP_LLM_TYPE_SSE
                   ? ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                      | (1 << NGX_HTTP_LLM_HOOK_DONE))
                   : (1 << NGX_HTTP_LLM_HOOK_RESPONSE))));

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (read && !llcf->hook_on_error) {
        return ngx_http_llm_refuse(r, ctx, "compressed_response",
                                   "the engine's answer is compressed "
                                   "(Content-Encoding), the hooks "
                                   "cannot read it");
    }

    level = read ? NGX_LOG_ERR : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "llm router: the engine's answer is compressed "
                  "(Content-Encoding: %V), passed on as it is%s",
                  &r->headers_out.content_encoding->value,
                  read ? " without the hooks (llm_hook_on_error pass)"
                       : "");

    return NGX_OK;      /* NGX_HTTP_LLM_MODE_NONE */
}


/* the API of the request, by the end of its path */

static ngx_uint_t
ngx_http_llm_api(ngx_http_request_t *r)
{
    u_char  *last;

    last = r->uri.data + r->uri.len;

    /* "/chat/completions", "/completions": not "...es" */

    if (r->uri.len < 9 || last[-2] != 'e') {
        return NGX_HTTP_LLM_API_CHAT;
    }

    if (r->uri.len >= 10 && ngx_strncmp(last - 10, "/responses", 10) == 0) {
        return NGX_HTTP_LLM_API_RESPONSES;
    }

    if (r->uri.len >= 9 && ngx_strncmp(last - 9, "/messages", 9) == 0) {
        return NGX_HTTP_LLM_API_MESSAGES;
    }

    return NGX_HTTP_LLM_API_CHAT;
}


/* a Content-Encoding other than identity */

static ngx_uint_t
ngx_http_llm_compressed(ngx_str_t *value)
{
    if (value->len == 0) {
        return 0;
    }

    return !(value->len == 8
             && ngx_strncasecmp(value->data, (u_char *) "identity", 8) == 0);
}


/*
 * The name goes back to the client as the client wrote it, when the route
 * sent another name upstream and llm_restore_model is on.
 */

static ngx_int_t
ngx_http_llm_restore_model(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_response_t  *resp;
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->restore_model
        || (ctx->target.len == ctx->model.len
            && ngx_strncmp(ctx->target.data, ctx->model.data, ctx->model.len)
               == 0))
    {
        return NGX_OK;
    }

    resp = ctx->response;
    resp->model_json = ctx->model_json;

    if (resp->model_json.len == 0) {
        return ngx_http_llm_json_quote(r->pool, &ctx->model,
                                       &resp->model_json);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_response_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              *cl;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_response_t  *resp;

    if (r != r->main) {
        return ngx_http_llm_next_body_filter(r, in);
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->response == NULL) {
        return ngx_http_llm_next_body_filter(r, in);
    }

    resp = ctx->response;

    if (resp->injecting) {
        return ngx_http_llm_next_body_filter(r, in);
    }

    if (resp->ended) {
        /* our last buffer went out: swallow what nginx sends after it */

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        return ngx_http_llm_next_body_filter(r, NULL);
    }

    switch (resp->mode) {

    case NGX_HTTP_LLM_MODE_NONE:
        return ngx_http_llm_next_body_filter(r, in);

    case NGX_HTTP_LLM_MODE_OBSERVE:
        ngx_http_llm_observe_json(r, ctx, in);
        return ngx_http_llm_next_body_filter(r, in);

    case NGX_HTTP_LLM_MODE_SSE:
        return ngx_http_llm_sse_body(r, ctx, in);

    default: /* EDIT, ERROR */
        return ngx_http_llm_held_body(r, ctx, in);
    }
}


/*
 * The upstream's finalize_request, replaced: the one handler of the
 * upstream module that the response side takes over, and only here.
 *
 * What: r->upstream->finalize_request (the proxy's,
 * ngx_http_proxy_finalize_request(), which only logs), for the answers
 * whose end the router must see: an event stream, and a JSON answer held
 * whole (EDIT, ERROR); ngx_http_llm_take_finalize() puts
 * ngx_http_llm_upstream_finalize() in its place from the header filter.
 *
 * Why: when the engine breaks such an answer off after its headers (closed,
 * timed out), nginx would just close the client's connection, and a
 * client could take a truncated answer for a whole one.  The stream ends
 * instead with an error event in its API's shape (and [DONE] for chat:
 * ngx_http_llm_sse_broken()); a held answer, whose headers are not out,
 * becomes a 502 in OpenAI's shape (ngx_http_llm_refuse()).  A client that
 * went away only marks the stream aborted, for the metrics.
 *
 * What the original gets back: it is kept in resp->finalize and called
 * first, with the same arguments, before anything of ours (the ctx and
 * resp that hold it exist whenever it was replaced); then
 * nginx's ngx_http_upstream_finalize_request() goes on as usual.
 */

static void
ngx_http_llm_take_finalize(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp)
{
    resp->finalize = r->upstream->finalize_request;
    r->upstream->finalize_request = ngx_http_llm_upstream_finalize;
}


static void
ngx_http_llm_upstream_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_response_t  *resp;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->response == NULL) {
        return;
    }

    resp = ctx->response;

    if (resp->finalize) {
        resp->finalize(r, rc);
    }

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || r->connection->error) {
        if (!ctx->stream_done) {
            ctx->stream_aborted = 1;
        }

        return;
    }

    if (rc < NGX_HTTP_SPECIAL_RESPONSE || ctx->stream_done || resp->ended
        || !r->upstream->header_sent || r->header_only)
    {
        return;
    }

    if (resp->mode == NGX_HTTP_LLM_MODE_SSE) {
        ngx_http_llm_sse_broken(r, ctx, rc);
        return;
    }

    /* a held answer cut short: its headers are not out yet */

    (void) ngx_http_llm_refuse(r, ctx, "upstream_error",
                               (rc == NGX_HTTP_GATEWAY_TIME_OUT)
                               ? "the engine stopped sending in the "
                                 "middle of its answer"
                               : "the engine closed the connection "
                                 "before the end of its answer");
}


/*
 * Routed requests do not pass the client's Accept-Encoding to the engine
 * (the router reads the answers): the proxy copies the headers of
 * r->headers_in.headers, which is replaced by a copy without it.  The
 * elements the other r->headers_in fields point to stay where they are,
 * unchanged.  Nothing is copied for a request without the header.
 */

ngx_int_t
ngx_http_llm_hide_accept_encoding(ngx_http_request_t *r)
{
    ngx_uint_t        i, n, found;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

#if (NGX_HTTP_GZIP || NGX_HTTP_HEADERS)
    if (r->headers_in.accept_encoding == NULL) {
        return NGX_OK;
    }
#endif

    /* "identity" alone (Python's default) asks for what the router reads */

    n = 0;
    found = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;
        n += part->nelts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_llm_is_accept_encoding(&h[i])
                && !ngx_http_llm_is_identity(&h[i].value))
            {
                found = 1;
            }
        }
    }

    if (!found) {
        return NGX_OK;
    }

    if (ngx_list_init(&list, r->pool, ngx_max(n, 1), sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_llm_is_accept_encoding(&h[i])) {
                continue;
            }

            copy = ngx_list_push(&list);
            if (copy == NULL) {
                return NGX_ERROR;
            }

            *copy = h[i];
        }
    }

    /* one part, as many elements as were there: "last" is its own */

    r->headers_in.headers = list;
    r->headers_in.headers.last = &r->headers_in.headers.part;

    return NGX_OK;
}


/* llm_response_buffer_size, llm_event_max_size: at least 1k */

char *
ngx_http_llm_check_buffer_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp < 1024) {
        return "must be at least 1k";
    }

    return NGX_CONF_OK;
}
