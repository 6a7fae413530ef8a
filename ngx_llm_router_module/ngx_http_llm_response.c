
/*
 * ngx_llm_router: the response side.
 *
 * A header and a body filter that look at the answers to routed requests
 * only, and touch them only where this request needs it:
 *
 *   - JSON answers: "usage" is read into $llm_*_tokens from a copy kept
 *     beside the untouched buffers; when the route sent another model name
 *     upstream, the body is held (headers too) and sent once with "model"
 *     set back to the name the client asked for;
 *   - event streams: an incremental parser (ngx_http_llm_sse.c) finds each
 *     event; usage, time to the first content event and the event count
 *     are read on the way; the buffers pass untouched unless an event must
 *     change (model name restored, a usage event the client did not ask
 *     for dropped), and then events are copied out one by one;
 *   - a stream the engine breaks off (closed, timed out) ends with an error
 *     event in the shape of its API (Chat Completions: the error and
 *     "data: [DONE]"; Responses and Messages: "event: error"), so that a
 *     client never takes a truncated answer for a whole one; a stream ends
 *     by its API's last event ([DONE]; response.completed, .failed,
 *     .incomplete; message_stop);
 *   - what a response or chunk hook must see and cannot (an answer over
 *     llm_response_buffer_size, an event over llm_event_max_size, a
 *     compressed answer) fails closed, unless llm_hook_on_error is pass;
 *     routed requests do not pass the client's Accept-Encoding on;
 *   - engine errors (4xx, 5xx) that are not in OpenAI's shape are rewritten
 *     into it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_sse.h"


#define NGX_HTTP_LLM_JSON_TAIL      8192           /* kept past the limit */


#define ngx_http_llm_is_space(c)                                              \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

/* the top-level member m of the document at data is named name */
#define ngx_http_llm_member_is(data, m, name)                                 \
    ((m)->key_len == sizeof(name) - 1                                         \
     && ngx_strncmp((data) + (m)->key, name, sizeof(name) - 1) == 0)

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
#define NGX_HTTP_LLM_OUT_SIZE       4096

/* why a chunk hook cannot see an event */
#define NGX_HTTP_LLM_UNSEEN_SIZE    0    /* over llm_event_max_size */
#define NGX_HTTP_LLM_UNSEEN_LINES   1    /* data on more than one line */

#define NGX_HTTP_LLM_OUT_BUFS       4    /* waiting downstream, at most */
#define NGX_HTTP_LLM_SCRATCH_SIZE   4096 /* a chunk hook's, per event */

#define NGX_HTTP_LLM_MODE_NONE      0
#define NGX_HTTP_LLM_MODE_OBSERVE   1    /* JSON, passed on untouched */
#define NGX_HTTP_LLM_MODE_EDIT      2    /* JSON, held to restore model */
#define NGX_HTTP_LLM_MODE_ERROR     3    /* engine error, held */
#define NGX_HTTP_LLM_MODE_SSE       4

#define NGX_HTTP_LLM_EVENT_KEEP     0
#define NGX_HTTP_LLM_EVENT_DROP     1
#define NGX_HTTP_LLM_EVENT_EDIT     2
#define NGX_HTTP_LLM_EVENT_REPLACE  3    /* by resp->replacement */
#define NGX_HTTP_LLM_EVENT_ABORT    4    /* a chunk hook failed */
#define NGX_HTTP_LLM_EVENT_RAW      5    /* resp->replacement, whole */

/* the API of a stream, by its path: how it ends, how its errors look */
#define NGX_HTTP_LLM_API_CHAT       0    /* chat/completions, completions */
#define NGX_HTTP_LLM_API_RESPONSES  1    /* OpenAI's /v1/responses */
#define NGX_HTTP_LLM_API_MESSAGES   2    /* Anthropic's /v1/messages */


struct ngx_http_llm_response_s {
    ngx_uint_t                      mode;
    ngx_buf_t                      *body;       /* JSON kept */
    size_t                          limit;
    size_t                          event_max;
    ngx_uint_t                      api;        /* NGX_HTTP_LLM_API_* */
    ngx_http_llm_sse_t              sse;
    ngx_buf_t                      *raw;        /* the event, rewriting */
    ngx_str_t                       model_json; /* to restore, or empty */
    ngx_str_t                       edit_before;    /* EDIT: raw parts */
    ngx_str_t                       edit_after;
    ngx_chain_t                    *in;         /* the engine's, unread */
    ngx_chain_t                    *free;
    ngx_chain_t                    *busy;
    ngx_chain_t                    *out;
    ngx_chain_t                    *out_last;   /* out's last link */
    ngx_uint_t                      nout;       /* buffers in out */
    ngx_uint_t                      nbusy;      /* busy ones with bytes */
    ngx_pool_t                     *scratch;    /* reset after each event */
    void                          (*finalize)(ngx_http_request_t *r,
                                                ngx_int_t rc);

    ngx_str_t                       replacement;   /* REPLACE */
    ngx_uint_t                      hooks;      /* NGX_HTTP_LLM_HOOK_* bits */

    unsigned                        rewrite:1;  /* SSE events copied */
    unsigned                        tail:1;     /* JSON over the limit */
    unsigned                        raw_pass:1; /* event too big to hold */
    unsigned                        ended:1;    /* our last buffer sent */
    unsigned                        injecting:1;
    unsigned                        hook_abort:1;
    unsigned                        in_last:1;  /* last_buf is in in */
};


static ngx_int_t ngx_http_llm_response_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_response_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llm_response_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_uint_t ngx_http_llm_restore_wanted(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_uint_t ngx_http_llm_api(ngx_http_request_t *r);
static ngx_uint_t ngx_http_llm_compressed(ngx_str_t *value);
static ngx_int_t ngx_http_llm_refuse(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, const char *code, const char *text);
static ngx_int_t ngx_http_llm_keep(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, u_char *p, size_t n);
static void ngx_http_llm_observe_json(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static void ngx_http_llm_tail_usage(ngx_http_llm_ctx_t *ctx, u_char *start,
    u_char *last);
static ngx_int_t ngx_http_llm_answer_model(ngx_http_llm_ctx_t *ctx,
    ngx_buf_t *body, ngx_http_llm_jskim_t *k);
static ngx_int_t ngx_http_llm_held_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_send_edited(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_send_engine_error(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_send_held(ngx_http_request_t *r,
    ngx_buf_t *b);
static ngx_buf_t *ngx_http_llm_response_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_buf_t *b);
static ngx_uint_t ngx_http_llm_done_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_uint_t ngx_http_llm_chunk_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t what, size_t ms, size_t me);
static ngx_uint_t ngx_http_llm_event_hooked(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t what, size_t ms, size_t me);
static ngx_int_t ngx_http_llm_too_large(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t *cl);
static ngx_int_t ngx_http_llm_release_held(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_observe(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_rewrite(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_read(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t *flush, ngx_uint_t *last_buf);
static void ngx_http_llm_scratch_cleanup(void *data);
static ngx_uint_t ngx_http_llm_sse_event(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, size_t *model_start, size_t *model_end);
static ngx_int_t ngx_http_llm_sse_emit(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_hook_abort_stream(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_upstream_stop(ngx_http_request_t *r);
static ngx_uint_t ngx_http_llm_choices_content(u_char *p, size_t len);
static ngx_uint_t ngx_http_llm_delta_content(u_char *p, size_t len);
static ngx_uint_t ngx_http_llm_event_unseen(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t why);
static ngx_uint_t ngx_http_llm_stream_end(ngx_uint_t api, u_char *name,
    size_t len);
static ngx_int_t ngx_http_llm_out(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, u_char *p, size_t n);
static ngx_int_t ngx_http_llm_out_flush(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, ngx_uint_t flush, ngx_uint_t last);
static ngx_int_t ngx_http_llm_stream_error_text(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *text);
static ngx_int_t ngx_http_llm_error_event(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t status, ngx_str_t *text);
static void ngx_http_llm_stream_failed(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_llm_upstream_finalize(ngx_http_request_t *r,
    ngx_int_t rc);
static char *ngx_http_llm_cstrdup(ngx_pool_t *pool, const char *s);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_llm_response_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_response_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
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
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || !ctx->routed || ctx->response) {
        return ngx_http_next_header_filter(r);
    }

    rc = ngx_http_llm_response_start(r, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DONE) {
        /* held: the headers go out with the body */
        return NGX_OK;
    }

    return ngx_http_next_header_filter(r);
}


/* picks what to do with this answer; NGX_DONE: headers held */

static ngx_int_t
ngx_http_llm_response_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    size_t                    size;
    ngx_str_t                *type;
    ngx_uint_t                status, sse, json, read, level;
    ngx_pool_cleanup_t       *cln;
    ngx_http_llm_response_t  *resp;
    ngx_http_llm_loc_conf_t  *llcf;

    status = r->headers_out.status;
    type = &r->headers_out.content_type;

    /*
     * The first letter picks the one comparison worth making; engines
     * write the type in lower case, which ngx_strncmp() checks faster.
     */

    sse = (type->len >= 17 && (type->data[0] | 0x20) == 't'
           && (ngx_strncmp(type->data, "text/event-stream", 17) == 0
               || ngx_strncasecmp(type->data,
                                  (u_char *) "text/event-stream", 17)
                  == 0));
    json = (!sse && type->len >= 16 && (type->data[0] | 0x20) == 'a'
            && (ngx_strncmp(type->data, "application/json", 16) == 0
                || ngx_strncasecmp(type->data,
                                   (u_char *) "application/json", 16)
                   == 0));

    if (!sse) {
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

    if (status < NGX_HTTP_SPECIAL_RESPONSE && !sse && !json) {

        /* neither JSON nor events: refused where a hook must read it */

        if (!(resp->hooks & ((1 << NGX_HTTP_LLM_HOOK_RESPONSE)
                             | (1 << NGX_HTTP_LLM_HOOK_CHUNK)
                             | (1 << NGX_HTTP_LLM_HOOK_DONE)))
            || status == NGX_HTTP_NO_CONTENT
            || r->headers_out.content_length_n == 0)
        {
            return NGX_OK;      /* NGX_HTTP_LLM_MODE_NONE: nothing hidden */
        }

        if (!llcf->hook_on_error) {
            return ngx_http_llm_refuse(r, ctx, "unexpected_content_type",
                                       "the engine's answer is neither JSON "
                                       "nor an event stream (Content-Type), "
                                       "the hooks cannot read it");
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm router: the engine's answer is neither JSON nor "
                      "an event stream (Content-Type: \"%V\"), passed on "
                      "without the hooks (llm_hook_on_error pass)", type);

        return NGX_OK;
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->hash
        && ngx_http_llm_compressed(&r->headers_out.content_encoding->value))
    {
        /* the router cannot read it: refused where a hook must */

        read = (status < NGX_HTTP_BAD_REQUEST
                && (resp->hooks
                    & (sse ? ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                              | (1 << NGX_HTTP_LLM_HOOK_DONE))
                           : (1 << NGX_HTTP_LLM_HOOK_RESPONSE))));

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

    /* the name goes back to the client as the client wrote it */

    if (ngx_http_llm_restore_wanted(r, ctx)) {
        resp->model_json = ctx->model_json;

        if (resp->model_json.len == 0
            && ngx_http_llm_json_quote(r->pool, &ctx->model,
                                       &resp->model_json)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    r->main_filter_need_in_memory = 1;

    if (status >= NGX_HTTP_BAD_REQUEST) {
        resp->mode = NGX_HTTP_LLM_MODE_ERROR;
        resp->limit = NGX_HTTP_LLM_ERROR_KEEP;

    } else if (sse) {
        resp->mode = NGX_HTTP_LLM_MODE_SSE;
        ctx->sse = 1;

        resp->rewrite = (resp->model_json.len || ctx->strip_usage
                         || (resp->hooks & ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                                            | (1 << NGX_HTTP_LLM_HOOK_DONE))));

        size = llcf->event_max_size;
        resp->event_max = size;
        ngx_http_llm_sse_init(&resp->sse, ngx_pnalloc(r->pool, size), size);

        if (resp->sse.data == NULL) {
            return NGX_ERROR;
        }

        /* an error event may be added: the engine's length would lie */

        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);

        /* what a chunk hook makes of an event lives until it is sent */

        if (resp->hooks & ((1 << NGX_HTTP_LLM_HOOK_CHUNK)
                           | (1 << NGX_HTTP_LLM_HOOK_DONE)))
        {
            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                return NGX_ERROR;
            }

            resp->scratch = ngx_create_pool(NGX_HTTP_LLM_SCRATCH_SIZE,
                                            r->connection->log);
            if (resp->scratch == NULL) {
                return NGX_ERROR;
            }

            cln->handler = ngx_http_llm_scratch_cleanup;
            cln->data = resp->scratch;
        }

        /* to end a stream the engine breaks off */

        resp->finalize = r->upstream->finalize_request;
        r->upstream->finalize_request = ngx_http_llm_upstream_finalize;

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

    resp->finalize = r->upstream->finalize_request;
    r->upstream->finalize_request = ngx_http_llm_upstream_finalize;

    return NGX_DONE;
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
 * An answer the hooks must see and cannot: the client gets a 502 in
 * OpenAI's shape instead, sent from here, its headers not yet gone; what
 * the engine sends after it is swallowed.
 */

static ngx_int_t
ngx_http_llm_refuse(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const char *code, const char *text)
{
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_str_t                 message;
    ngx_chain_t               out;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    resp->mode = NGX_HTTP_LLM_MODE_NONE;
    resp->ended = 1;

    if (resp->body) {
        resp->body->last = resp->body->pos;
    }

    message.data = (u_char *) text;
    message.len = ngx_strlen(text);

    ngx_http_llm_set_error(ctx, code, "server_error", NULL, &message);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm router: %V, the client gets 502 %s", &message, code);

    b = ngx_http_llm_error_body(r, NGX_HTTP_BAD_GATEWAY, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_BAD_GATEWAY;
    r->headers_out.status_line.len = 0;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    if (r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_next_body_filter(r, &out);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DONE;
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


/* the route sent another name upstream, and llm_restore_model is on */

static ngx_uint_t
ngx_http_llm_restore_wanted(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (!llcf->restore_model) {
        return 0;
    }

    return ctx->target.len != ctx->model.len
           || ngx_strncmp(ctx->target.data, ctx->model.data, ctx->model.len)
              != 0;
}


/* ms since the request came in */

ngx_msec_int_t
ngx_http_llm_elapsed(ngx_http_request_t *r)
{
    ngx_time_t      *tp;
    ngx_msec_int_t   ms;

    tp = ngx_timeofday();

    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    return ngx_max(ms, 0);
}


static ngx_int_t
ngx_http_llm_response_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              *cl;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_response_t  *resp;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->response == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    resp = ctx->response;

    if (resp->injecting) {
        return ngx_http_next_body_filter(r, in);
    }

    if (resp->ended) {
        /* our last buffer went out: swallow what nginx sends after it */

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        return ngx_http_next_body_filter(r, NULL);
    }

    switch (resp->mode) {

    case NGX_HTTP_LLM_MODE_NONE:
        return ngx_http_next_body_filter(r, in);

    case NGX_HTTP_LLM_MODE_OBSERVE:
        ngx_http_llm_observe_json(r, ctx, in);
        return ngx_http_next_body_filter(r, in);

    case NGX_HTTP_LLM_MODE_SSE:
        return ngx_http_llm_sse_body(r, ctx, in);

    default: /* EDIT, ERROR */
        return ngx_http_llm_held_body(r, ctx, in);
    }
}


/*
 * Keeps a copy of the body: all of it up to the limit, then only its last
 * NGX_HTTP_LLM_JSON_TAIL bytes (where "usage" is in a long answer).
 */

static ngx_int_t
ngx_http_llm_keep(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    u_char *p, size_t n)
{
    size_t      size, have, keep;
    ngx_buf_t  *b;

    b = resp->body;

    if (b == NULL) {

        /* the length the engine announced, else room for the tail */

        size = NGX_HTTP_LLM_JSON_TAIL;

        if (r->headers_out.content_length_n > 0) {
            size = (size_t) ngx_min(r->headers_out.content_length_n,
                                    (off_t) resp->limit);
        }

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_ERROR;
        }

        resp->body = b;
    }

    if (!resp->tail && (size_t) (b->end - b->last) < n) {
        have = b->last - b->pos;

        if (have + n <= resp->limit) {
            size = ngx_min(ngx_max(2 * (size_t) (b->end - b->start),
                                   have + n),
                           resp->limit);

            b = ngx_create_temp_buf(r->pool, size);
            if (b == NULL) {
                return NGX_ERROR;
            }

            b->last = ngx_cpymem(b->pos, resp->body->pos, have);
            resp->body = b;

        } else {
            resp->tail = 1;

            if ((size_t) (b->end - b->start) < NGX_HTTP_LLM_JSON_TAIL) {
                b = ngx_create_temp_buf(r->pool, NGX_HTTP_LLM_JSON_TAIL);
                if (b == NULL) {
                    return NGX_ERROR;
                }

                b->last = ngx_cpymem(b->pos, resp->body->pos, have);
                resp->body = b;
            }
        }
    }

    if (!resp->tail) {
        b->last = ngx_cpymem(b->last, p, n);
        return NGX_OK;
    }

    /* the last bytes only */

    if (n >= NGX_HTTP_LLM_JSON_TAIL) {
        b->last = ngx_cpymem(b->pos, p + n - NGX_HTTP_LLM_JSON_TAIL,
                             NGX_HTTP_LLM_JSON_TAIL);
        return NGX_OK;
    }

    have = b->last - b->pos;
    keep = ngx_min(have, NGX_HTTP_LLM_JSON_TAIL - n);

    ngx_memmove(b->pos, b->last - keep, keep);
    b->last = ngx_cpymem(b->pos + keep, p, n);

    return NGX_OK;
}


static void
ngx_http_llm_observe_json(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf) && cl->buf->last > cl->buf->pos) {
            if (ngx_http_llm_keep(r, resp, cl->buf->pos,
                                  cl->buf->last - cl->buf->pos)
                != NGX_OK)
            {
                resp->mode = NGX_HTTP_LLM_MODE_NONE;    /* no memory: stop */
                return;
            }
        }

        if (cl->buf->last_buf) {
            if (resp->body) {
                ngx_http_llm_tail_usage(ctx, resp->body->pos,
                                        resp->body->last);
            }

            resp->mode = NGX_HTTP_LLM_MODE_NONE;
        }
    }
}


/*
 * The last "usage": {...} of an answer, found from its end: engines put it
 * last or nearly (llama.cpp adds "timings" after it), and no other object
 * of a completion has such a key, so the answer is not scanned whole.  A
 * "usage" inside a string cannot match: its quotes would be escaped.
 */

static void
ngx_http_llm_tail_usage(ngx_http_llm_ctx_t *ctx, u_char *start, u_char *last)
{
    u_char  *brace, *q;

    /* from each '{', the last first, back over ':' to "usage" */

    for (brace = last; /* void */ ; /* void */ ) {

        brace = memrchr(start, '{', brace - start);
        if (brace == NULL) {
            return;
        }

        for (q = brace; q > start && ngx_http_llm_is_space(q[-1]); q--) {
            /* void */
        }

        if (q == start || q[-1] != ':') {
            continue;
        }

        for (q--; q > start && ngx_http_llm_is_space(q[-1]); q--) {
            /* void */
        }

        if (q - start >= 7 && q[-1] == '"' && q[-7] == '"'
            && ngx_strncmp(q - 6, "usage", 5) == 0)
        {
            (void) ngx_http_llm_read_usage(ctx, brace, last - brace);
            return;
        }
    }
}


/*
 * Reads {"prompt_tokens":N,"completion_tokens":N,"total_tokens":N}; what
 * follows the object is ignored.  Its members are skimmed, not checked:
 * no tree, no allocation, once per answer or stream.  The counts are kept
 * only if the object closes.
 */

ngx_int_t
ngx_http_llm_read_usage(ngx_http_llm_ctx_t *ctx, u_char *p, size_t len)
{
    int                    rc;
    ngx_int_t              n, counts[3];
    ngx_uint_t             i;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t       names[] = {
        ngx_string("prompt_tokens"),
        ngx_string("completion_tokens"),
        ngx_string("total_tokens")
    };

    if (!ngx_http_llm_jskim_open(&k, p, len)) {
        return NGX_DECLINED;
    }

    counts[0] = -1;
    counts[1] = -1;
    counts[2] = -1;

    while ((rc = ngx_http_llm_jskim_next(&k)) == NGX_HTTP_LLM_JSKIM_MEMBER) {

        for (i = 0; i < 3; i++) {
            if (k.key_len == names[i].len
                && ngx_strncmp(k.key, names[i].data, names[i].len) == 0)
            {
                break;
            }
        }

        if (i < 3) {
            n = ngx_http_llm_json_count((u_char *) k.value,
                                        k.value_end - k.value);
            if (n >= 0) {
                counts[i] = n;
            }
        }
    }

    if (rc != NGX_HTTP_LLM_JSKIM_END) {
        return NGX_DECLINED;
    }

    if (counts[0] >= 0) {
        ctx->prompt_tokens = counts[0];
    }

    if (counts[1] >= 0) {
        ctx->completion_tokens = counts[1];
    }

    if (counts[2] >= 0) {
        ctx->total_tokens = counts[2];

    } else if (ctx->prompt_tokens >= 0) {

        /* each count is below NGX_MAX_INT_T_VALUE, not their sum */

        n = ngx_max(ctx->completion_tokens, 0);

        ctx->total_tokens = (ctx->prompt_tokens > NGX_MAX_INT_T_VALUE - n)
                            ? NGX_MAX_INT_T_VALUE
                            : ctx->prompt_tokens + n;
    }

    return NGX_OK;
}


/* EDIT and ERROR: the body is copied, the headers wait for its end */

static ngx_int_t
ngx_http_llm_held_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                    n, have;
    ngx_uint_t                last;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    last = 0;

    for (cl = in; cl; cl = cl->next) {
        n = cl->buf->last - cl->buf->pos;

        if (ngx_buf_in_memory(cl->buf) && n) {
            have = resp->body ? (size_t) (resp->body->last - resp->body->pos)
                              : 0;

            if (have + n > resp->limit) {
                return ngx_http_llm_too_large(r, ctx, in, cl);
            }

            if (ngx_http_llm_keep(r, resp, cl->buf->pos, n) != NGX_OK) {
                return NGX_ERROR;
            }

            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->last_buf) {
            last = 1;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    if (resp->mode == NGX_HTTP_LLM_MODE_ERROR) {
        return ngx_http_llm_send_engine_error(r, ctx);
    }

    return ngx_http_llm_send_edited(r, ctx);
}


/*
 * A held body over the limit: a response hook cannot see it, and the
 * answer is refused with a 502, unless llm_hook_on_error is pass; else it
 * is passed on as the engine sent it, without its model restored.
 */

static ngx_int_t
ngx_http_llm_too_large(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t *cl)
{
    ngx_int_t                 rc;
    ngx_chain_t              *ln;
    ngx_http_llm_loc_conf_t  *llcf;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    if (resp->mode == NGX_HTTP_LLM_MODE_ERROR
        || !(resp->hooks & (1 << NGX_HTTP_LLM_HOOK_RESPONSE)))
    {
        return ngx_http_llm_release_held(r, ctx, cl);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    if (llcf->hook_on_error) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm router: the answer is over "
                      "llm_response_buffer_size (%uz bytes), passed on "
                      "without the response hook (llm_hook_on_error pass)",
                      resp->limit);

        return ngx_http_llm_release_held(r, ctx, cl);
    }

    for (ln = in; ln; ln = ln->next) {
        ln->buf->pos = ln->buf->last;
    }

    ngx_http_llm_upstream_stop(r);

    rc = ngx_http_llm_refuse(r, ctx, "response_too_large",
                             "the engine's answer is over "
                             "llm_response_buffer_size, the response hook "
                             "cannot see it");

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/*
 * A held body over the limit: the headers go out as the engine sent them,
 * then the bytes held, then cl and the rest as they come.
 */

static ngx_int_t
ngx_http_llm_release_held(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *cl)
{
    ngx_int_t                 rc;
    ngx_buf_t                *held;
    ngx_chain_t               out, *chain;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llm router: the answer is over %uz bytes, passed on "
                  "as the engine sent it", resp->limit);

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    held = resp->body;
    resp->body = NULL;
    chain = cl;

    if (held && held->last > held->pos) {
        out.buf = held;
        out.next = cl;
        chain = &out;
    }

    if (resp->mode == NGX_HTTP_LLM_MODE_ERROR) {
        resp->mode = NGX_HTTP_LLM_MODE_NONE;

    } else {

        /* what is kept from here on is not the whole answer: its tail */

        resp->mode = NGX_HTTP_LLM_MODE_OBSERVE;
        resp->tail = 1;
        ngx_http_llm_observe_json(r, ctx, cl);
    }

    return ngx_http_next_body_filter(r, chain);
}


/*
 * The answer's top-level "model" string, looked for among its members
 * from the first: engines send it early.  The answer is skimmed, not
 * checked, only as far as the model; "usage" is looked for from the end.
 */

static ngx_int_t
ngx_http_llm_answer_model(ngx_http_llm_ctx_t *ctx, ngx_buf_t *body,
    ngx_http_llm_jskim_t *k)
{
    ngx_int_t  rc;

    rc = NGX_DECLINED;

    if (ngx_http_llm_jskim_open(k, body->pos, body->last - body->pos)) {

        while (ngx_http_llm_jskim_next(k) == NGX_HTTP_LLM_JSKIM_MEMBER) {
            if (k->key_len == 5 && ngx_strncmp(k->key, "model", 5) == 0
                && *k->value == '"')
            {
                rc = NGX_OK;
                break;
            }
        }
    }

    ngx_http_llm_tail_usage(ctx, body->pos, body->last);

    return rc;
}


/* the whole JSON answer is in: usage read, model restored, all sent */

static ngx_int_t
ngx_http_llm_send_edited(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    u_char                   *p;
    size_t                    len, head, tail;
    ngx_buf_t                *b, *body;
    ngx_http_llm_jskim_t      k;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    resp->ended = 1;

    body = resp->body;

    if (body == NULL) {
        body = ngx_calloc_buf(r->pool);
        if (body == NULL) {
            return NGX_ERROR;
        }
    }

    b = body;

    /* a response hook alone restores nothing (and reads the usage) */

    if (resp->model_json.len == 0) {
        ngx_http_llm_tail_usage(ctx, body->pos, body->last);

    } else if (ngx_http_llm_answer_model(ctx, body, &k) == NGX_OK) {
        head = k.value - body->pos;
        tail = body->last - k.value_end;
        len = head + resp->model_json.len + tail;

        b = ngx_create_temp_buf(r->pool, len);
        if (b == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(b->pos, body->pos, head);
        p = ngx_cpymem(p, resp->model_json.data, resp->model_json.len);
        b->last = ngx_cpymem(p, k.value_end, tail);
    }

    if (resp->hooks & (1 << NGX_HTTP_LLM_HOOK_RESPONSE)) {
        b = ngx_http_llm_response_hook(r, ctx, b);
        if (b == NULL) {
            return NGX_ERROR;
        }
    }

    return ngx_http_llm_send_held(r, b);
}


/* a held answer goes out: the headers, with its length, then b */

static ngx_int_t
ngx_http_llm_send_held(ngx_http_request_t *r, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/*
 * The Lua response hooks on a whole JSON answer: the buffer to send, the
 * same, changed, or an error in its place when a hook rejected or failed.
 */

static ngx_buf_t *
ngx_http_llm_response_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_buf_t *b)
{
    ngx_int_t   rc;
    ngx_str_t   doc;
    ngx_uint_t  drop;
    ngx_buf_t  *nb;

    doc.data = b->pos;
    doc.len = b->last - b->pos;

    rc = ngx_http_llm_hooks(r, ctx, NGX_HTTP_LLM_HOOK_RESPONSE, &doc, &drop);

    if (rc == NGX_DECLINED) {
        r->headers_out.status = ctx->hook_status;
        r->headers_out.status_line.len = 0;

        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;

        return ngx_http_llm_error_body(r, ctx->hook_status, ctx);
    }

    if (rc != NGX_OK) {
        return NULL;
    }

    if (doc.data == b->pos) {
        return b;
    }

    nb = ngx_calloc_buf(r->pool);
    if (nb == NULL) {
        return NULL;
    }

    nb->pos = doc.data;
    nb->last = doc.data + doc.len;
    nb->memory = 1;

    return nb;
}


/*
 * An engine's error: passed on when it is in OpenAI's shape already,
 * else rewritten into it from what the engine said (vLLM's
 * {"object":"error","message":...}, TGI's and Ollama's {"error":"..."},
 * a text or HTML page).
 */

static ngx_int_t
ngx_http_llm_send_engine_error(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    char                     *text;
    cJSON                    *json, *error, *item;
    u_char                   *copy;
    size_t                    len;
    ngx_buf_t                *b, *body;
    ngx_str_t                 message, quoted;
    const char               *code, *type;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    resp->ended = 1;
    body = resp->body;

    json = NULL;
    code = "upstream_error";
    type = NULL;
    text = NULL;

    if (body && body->last > body->pos) {
        json = cJSON_ParseWithLength((char *) body->pos,
                                     body->last - body->pos);
    }

    if (cJSON_IsObject(json)) {
        error = cJSON_GetObjectItemCaseSensitive(json, "error");
        item = cJSON_GetObjectItemCaseSensitive(error, "message");

        if (cJSON_IsObject(error) && cJSON_IsString(item)) {

            /* OpenAI's shape: passed on as it is */

            item = cJSON_GetObjectItemCaseSensitive(error, "code");

            if (cJSON_IsString(item) && ngx_http_llm_error_token(
                                            item->valuestring))
            {
                code = item->valuestring;
            }

            len = ngx_strlen(code);
            ctx->error.code.data = ngx_pnalloc(r->pool, len);

            if (ctx->error.code.data == NULL) {
                cJSON_Delete(json);
                return NGX_ERROR;
            }

            ngx_memcpy(ctx->error.code.data, code, len);
            ctx->error.code.len = len;

            cJSON_Delete(json);

            b = body;
            goto send;
        }

        item = cJSON_GetObjectItemCaseSensitive(json, "message");

        if (!cJSON_IsString(item)) {
            item = cJSON_IsString(error)
                   ? error : cJSON_GetObjectItemCaseSensitive(json, "detail");
        }

        if (cJSON_IsString(item)) {
            text = item->valuestring;
        }

        item = cJSON_GetObjectItemCaseSensitive(json, "type");

        if (!cJSON_IsString(item)) {
            item = cJSON_GetObjectItemCaseSensitive(json, "error_type");
        }

        if (cJSON_IsString(item) && ngx_http_llm_error_token(
                                        item->valuestring))
        {
            type = item->valuestring;
        }

        item = cJSON_GetObjectItemCaseSensitive(json, "code");

        if (cJSON_IsString(item) && ngx_http_llm_error_token(
                                        item->valuestring))
        {
            code = item->valuestring;
        }
    }

    if (text) {
        message.len = ngx_strlen(text);
        message.data = (u_char *) text;

    } else {
        message.data = ngx_pnalloc(r->pool, 80);
        if (message.data == NULL) {
            cJSON_Delete(json);
            return NGX_ERROR;
        }

        message.len = ngx_sprintf(message.data,
                                  "the engine answered with status %ui",
                                  r->headers_out.status)
                      - message.data;
    }

    /* the error keeps pointers: copies in the pool outlive the JSON */

    copy = ngx_pstrdup(r->pool, &message);
    if (copy == NULL) {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    message.data = copy;

    code = (const char *) ngx_http_llm_cstrdup(r->pool, code);
    type = type ? (const char *) ngx_http_llm_cstrdup(r->pool, type) : NULL;

    cJSON_Delete(json);

    if (code == NULL) {
        return NGX_ERROR;
    }

    ngx_http_llm_set_error(ctx, code, type, NULL, &message);

    /* the engine's text on one line: a newline cannot forge another */

    if (ngx_http_llm_log_text(r->pool, &message, &quoted) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "llm router: engine error %ui rewritten as %s: %V",
                  r->headers_out.status, code, &quoted);

    b = ngx_http_llm_error_body(r, r->headers_out.status, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

send:

    return ngx_http_llm_send_held(r, b);
}


static ngx_int_t
ngx_http_llm_sse_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    if (ctx->response->rewrite) {
        return ngx_http_llm_sse_rewrite(r, ctx, in);
    }

    return ngx_http_llm_sse_observe(r, ctx, in);
}


/* events read as they pass; the buffers go on untouched */

static ngx_int_t
ngx_http_llm_sse_observe(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    int                       event;
    u_char                   *p, *last;
    size_t                    n, ms, me;
    ngx_buf_t                *b;
    ngx_str_t                 text;
    ngx_uint_t                data;
    ngx_chain_t              *cl, *tail, **ll, *out;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            p = cl->buf->pos;
            last = cl->buf->last;

            while (p < last) {
                n = ngx_http_llm_sse_feed(&resp->sse, p, last - p, &event);
                p += n;

                if (event) {
                    (void) ngx_http_llm_sse_event(r, ctx, &ms, &me);
                    ngx_http_llm_sse_next(&resp->sse);
                }
            }
        }

        if (!cl->buf->last_buf || ctx->stream_done) {
            continue;
        }

        /* the stream ends without [DONE]: say so before the end */

        ngx_http_llm_stream_failed(r, ctx, 0);

        if (ngx_http_llm_stream_error_text(r, ctx, &text) != NGX_OK) {
            return NGX_ERROR;
        }

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->pos = text.data;
        b->last = text.data + text.len;
        b->memory = 1;

        /*
         * the event goes before an empty last buffer, or after the last
         * bytes, taking the end of the stream over from them
         */

        data = (cl->buf->last > cl->buf->pos);

        out = NULL;
        ll = &out;

        for (tail = in; tail; tail = tail->next) {
            if (tail == cl && !data) {
                break;
            }

            *ll = ngx_alloc_chain_link(r->pool);
            if (*ll == NULL) {
                return NGX_ERROR;
            }

            (*ll)->buf = tail->buf;
            ll = &(*ll)->next;

            if (tail == cl) {
                break;
            }
        }

        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = b;
        (*ll)->next = NULL;

        if (data) {
            cl->buf->last_buf = 0;
            b->last_buf = 1;
            b->last_in_chain = 1;

        } else {
            (*ll)->next = cl;
        }

        return ngx_http_next_body_filter(r, out);
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * Events copied out one by one, changed or dropped where needed.
 *
 * The engine's buffers are read only as far as the client takes the
 * output: while NGX_HTTP_LLM_OUT_BUFS of our buffers wait downstream, the
 * rest stays unread in resp->in (its buffers not consumed), and so the
 * upstream module reads no more of the engine (with proxy_buffering off
 * it reuses its one buffer only once that is consumed; with it on, the
 * pipe's buffers stay busy).  Nginx calls the filter again as the client
 * drains.  The last buffer is read whole: what is left then is no more
 * than the upstream's buffers hold.
 */

static ngx_int_t
ngx_http_llm_sse_rewrite(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t                 rc;
    ngx_uint_t                flush, last;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    if (in) {
        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                resp->in_last = 1;
            }
        }

        if (ngx_chain_add_copy(r->pool, &resp->in, in) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    for ( ;; ) {
        flush = 0;
        last = 0;

        if (ngx_http_llm_sse_read(r, ctx, &flush, &last) != NGX_OK) {
            return NGX_ERROR;
        }

        if (resp->hook_abort) {
            return ngx_http_llm_hook_abort_stream(r, ctx);
        }

        /* bytes left unread: the client must get what is out now */

        if (resp->in) {
            flush = 1;
        }

        rc = ngx_http_llm_out_flush(r, resp, flush, last);

        if (rc == NGX_ERROR || resp->in == NULL
            || resp->nbusy >= NGX_HTTP_LLM_OUT_BUFS)
        {
            return rc;
        }

        /* the client took some: read on */
    }
}


/* reads resp->in until the output waiting downstream reaches the bound */

static ngx_int_t
ngx_http_llm_sse_read(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t *flush, ngx_uint_t *last_buf)
{
    int                       event;
    u_char                   *p, *last;
    size_t                    n, size;
    ngx_buf_t                *raw, *b;
    ngx_str_t                 text;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    while (resp->in) {
        cl = resp->in;
        b = cl->buf;

        if (b->flush) {
            *flush = 1;
        }

        while (ngx_buf_in_memory(b) && b->pos < b->last) {

            if (!resp->in_last
                && resp->nbusy + resp->nout >= NGX_HTTP_LLM_OUT_BUFS)
            {
                return NGX_OK;          /* the rest when the client drains */
            }

            p = b->pos;
            last = b->last;

            n = ngx_http_llm_sse_feed(&resp->sse, p, last - p, &event);

            /* the event's raw bytes, held until its end */

            raw = resp->raw;

            if (resp->raw_pass) {
                if (ngx_http_llm_out(r, resp, p, n) != NGX_OK) {
                    return NGX_ERROR;
                }

            } else if (raw == NULL || (size_t) (raw->end - raw->last) < n) {
                size = raw ? (size_t) (raw->last - raw->pos) : 0;

                if (size + n > resp->event_max) {

                    if (ngx_http_llm_event_unseen(r, ctx,
                                                  NGX_HTTP_LLM_UNSEEN_SIZE))
                    {
                        if (raw) {
                            raw->last = raw->pos;
                        }

                        resp->hook_abort = 1;
                        return NGX_OK;
                    }

                    /* too big to hold: out as it is */

                    if ((size && ngx_http_llm_out(r, resp, raw->pos, size)
                                 != NGX_OK)
                        || ngx_http_llm_out(r, resp, p, n) != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    if (raw) {
                        raw->last = raw->pos;
                    }

                    resp->raw_pass = 1;

                } else {
                    raw = ngx_create_temp_buf(r->pool,
                                              ngx_max(2 * size + n, 1024));
                    if (raw == NULL) {
                        return NGX_ERROR;
                    }

                    if (size) {
                        raw->last = ngx_cpymem(raw->last, resp->raw->pos,
                                               size);
                    }

                    raw->last = ngx_cpymem(raw->last, p, n);
                    resp->raw = raw;
                }

            } else {
                raw->last = ngx_cpymem(raw->last, p, n);
            }

            /* copied: these bytes of the engine's buffer are done with */

            b->pos = p + n;

            if (event) {
                if (ngx_http_llm_sse_emit(r, ctx) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (resp->scratch) {
                    ngx_reset_pool(resp->scratch);      /* copied out */
                }

                if (resp->hook_abort) {
                    return NGX_OK;
                }
            }
        }

        resp->in = cl->next;
        ngx_free_chain(r->pool, cl);

        if (!b->last_buf) {
            continue;
        }

        *last_buf = 1;

        /* an unfinished event goes out as it is */

        raw = resp->raw;

        if (raw && raw->last > raw->pos) {
            if (ngx_http_llm_out(r, resp, raw->pos, raw->last - raw->pos)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            raw->last = raw->pos;
        }

        if (!ctx->stream_done) {
            ngx_http_llm_stream_failed(r, ctx, 0);

            if (ngx_http_llm_stream_error_text(r, ctx, &text) != NGX_OK
                || ngx_http_llm_out(r, resp, text.data, text.len) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* a whole event is in resp->raw: out it goes, changed, or not at all */

static ngx_int_t
ngx_http_llm_sse_emit(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    u_char                   *start;
    size_t                    ms, me, vs, len, data_len;
    ngx_int_t                 rc;
    ngx_buf_t                *raw;
    ngx_uint_t                what;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    what = ngx_http_llm_sse_event(r, ctx, &ms, &me);

    raw = resp->raw;
    vs = resp->sse.value_start;
    data_len = resp->sse.data_len;

    ngx_http_llm_sse_next(&resp->sse);

    if (resp->raw_pass) {
        resp->raw_pass = 0;
        return NGX_OK;
    }

    if (raw == NULL) {
        return NGX_OK;
    }

    start = raw->pos;
    len = raw->last - raw->pos;
    raw->last = raw->pos;     /* the bytes stay valid until the next feed */

    switch (what) {

    case NGX_HTTP_LLM_EVENT_DROP:
        /* a '\n' ending the event before, after its "\r\n\r" */
        if (len && start[0] == '\n') {
            return ngx_http_llm_out(r, resp, start, 1);
        }

        return NGX_OK;

    case NGX_HTTP_LLM_EVENT_EDIT:
        rc = ngx_http_llm_out(r, resp, start, vs + ms);

        if (rc == NGX_OK) {
            rc = ngx_http_llm_out(r, resp, resp->model_json.data,
                                  resp->model_json.len);
        }

        if (rc == NGX_OK) {
            rc = ngx_http_llm_out(r, resp, start + vs + me,
                                  len - vs - me);
        }

        return rc;

    case NGX_HTTP_LLM_EVENT_REPLACE:
        rc = ngx_http_llm_out(r, resp, start, vs);

        if (rc == NGX_OK) {
            rc = ngx_http_llm_out(r, resp, resp->replacement.data,
                                  resp->replacement.len);
        }

        if (rc == NGX_OK) {
            rc = ngx_http_llm_out(r, resp, start + vs + data_len,
                                  len - vs - data_len);
        }

        return rc;

    case NGX_HTTP_LLM_EVENT_RAW:
        /* keep a '\n' ending the event before, as for DROP */
        if (len && start[0] == '\n'
            && ngx_http_llm_out(r, resp, start, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return ngx_http_llm_out(r, resp, resp->replacement.data,
                                resp->replacement.len);

    case NGX_HTTP_LLM_EVENT_ABORT:
        /* the hook's error ends the stream here */
        resp->hook_abort = 1;
        return NGX_OK;

    default: /* NGX_HTTP_LLM_EVENT_KEEP */
        return ngx_http_llm_out(r, resp, start, len);
    }
}


/*
 * What an event says: [DONE], usage, the first content; and what to do
 * with it.  *ms, *me: the "model" value in the event's data, for EDIT.
 */

static ngx_uint_t
ngx_http_llm_sse_event(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    size_t *ms, size_t *me)
{
    u_char                       *data;
    size_t                        i, len;
    ngx_uint_t                    what, empty_choices;
    ngx_http_llm_sse_t           *sse;
    ngx_http_llm_jscan_t          scan;
    ngx_http_llm_response_t      *resp;
    ngx_http_llm_jscan_member_t  *m, *usage, *model, *choices, *type,
                                 *delta;

    resp = ctx->response;
    sse = &resp->sse;
    data = sse->data;
    len = sse->data_len;

    *ms = 0;
    *me = 0;

    if (sse->data_lines == 0) {
        return NGX_HTTP_LLM_EVENT_KEEP;     /* a comment, a heartbeat */
    }

    if (len == 6 && ngx_strncmp(data, "[DONE]", 6) == 0) {
        ctx->stream_done = 1;

        if (resp->hooks & (1 << NGX_HTTP_LLM_HOOK_DONE)) {
            return ngx_http_llm_done_hook(r, ctx);
        }

        return NGX_HTTP_LLM_EVENT_KEEP;
    }

    ctx->events++;

    /* the Responses and Messages APIs end with an event of their own */

    if (resp->api != NGX_HTTP_LLM_API_CHAT && sse->name_len
        && ngx_http_llm_stream_end(resp->api, sse->name, sse->name_len))
    {
        ctx->stream_done = 1;
    }

    if (sse->truncated) {
        if (!resp->raw_pass
            && ngx_http_llm_event_unseen(r, ctx, NGX_HTTP_LLM_UNSEEN_SIZE))
        {
            return NGX_HTTP_LLM_EVENT_ABORT;
        }

        return NGX_HTTP_LLM_EVENT_KEEP;
    }

    ngx_http_llm_jscan_init(&scan);
    (void) ngx_http_llm_jscan_feed(&scan, data, len);

    if (ngx_http_llm_jscan_finish(&scan) != NGX_HTTP_LLM_JSCAN_OK) {

        /* not an object the router reads: a chunk hook still judges it */

        return ngx_http_llm_event_hooked(r, ctx, NGX_HTTP_LLM_EVENT_KEEP, 0,
                                         0);
    }

    usage = NULL;
    model = NULL;
    choices = NULL;
    type = NULL;
    delta = NULL;

    for (i = 0; i < scan.nmembers; i++) {
        m = &scan.members[i];

        if (ngx_http_llm_member_is(data, m, "usage")) {
            usage = m;

        } else if (ngx_http_llm_member_is(data, m, "model")) {
            model = m;

        } else if (ngx_http_llm_member_is(data, m, "choices")) {
            choices = m;

        } else if (ngx_http_llm_member_is(data, m, "type")) {
            type = m;

        } else if (ngx_http_llm_member_is(data, m, "delta")) {
            delta = m;
        }
    }

    if (resp->api != NGX_HTTP_LLM_API_CHAT && type && !ctx->stream_done
        && type->type == NGX_HTTP_LLM_JSON_STRING
        && ngx_http_llm_stream_end(resp->api, data + type->value + 1,
                                   type->value_end - type->value - 2))
    {
        ctx->stream_done = 1;
    }

    /* Responses: "delta":"text"; Messages: "delta":{"text":"..."} */

    if (ctx->ttft < 0 && delta
        && ((delta->type == NGX_HTTP_LLM_JSON_STRING
             && delta->value_end - delta->value > 2)
            || (delta->type == NGX_HTTP_LLM_JSON_OBJECT
                && ngx_http_llm_delta_content(data + delta->value,
                                            delta->value_end - delta->value))))
    {
        ctx->ttft = ngx_http_llm_elapsed(r);
    }

    empty_choices = 0;

    if (choices && choices->type == NGX_HTTP_LLM_JSON_ARRAY) {
        for (i = choices->value + 1; i < (size_t) choices->value_end; i++) {
            if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n'
                && data[i] != '\r')
            {
                break;
            }
        }

        empty_choices = (data[i] == ']');

        if (ctx->ttft < 0 && !empty_choices
            && ngx_http_llm_choices_content(data + choices->value,
                                            choices->value_end
                                            - choices->value))
        {
            ctx->ttft = ngx_http_llm_elapsed(r);
        }
    }

    if (usage && usage->type == NGX_HTTP_LLM_JSON_OBJECT) {
        (void) ngx_http_llm_read_usage(ctx, data + usage->value,
                                       usage->value_end - usage->value);

        if (ctx->strip_usage && empty_choices) {
            return NGX_HTTP_LLM_EVENT_DROP;
        }
    }

    what = NGX_HTTP_LLM_EVENT_KEEP;

    if (resp->model_json.len && model
        && model->type == NGX_HTTP_LLM_JSON_STRING
        && sse->data_lines == 1
        && sse->value_end - sse->value_start == len)
    {
        *ms = model->value;
        *me = model->value_end;
        what = NGX_HTTP_LLM_EVENT_EDIT;
    }

    return ngx_http_llm_event_hooked(r, ctx, what, *ms, *me);
}


/*
 * An event with data goes through the chunk hooks, whatever it holds (a
 * document they cannot read fails them), unless it passed out unread; one
 * whose data is on more than one line (clients join them) cannot be
 * spliced back and is refused, as an event too large is.
 */

static ngx_uint_t
ngx_http_llm_event_hooked(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t what, size_t ms, size_t me)
{
    ngx_http_llm_sse_t       *sse;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    sse = &resp->sse;

    if (!(resp->hooks & (1 << NGX_HTTP_LLM_HOOK_CHUNK)) || resp->raw_pass
        || sse->data_len == 0)
    {
        return what;
    }

    if (sse->data_lines != 1
        || sse->value_end - sse->value_start != sse->data_len)
    {
        return ngx_http_llm_event_unseen(r, ctx, NGX_HTTP_LLM_UNSEEN_LINES)
               ? NGX_HTTP_LLM_EVENT_ABORT : what;
    }

    return ngx_http_llm_chunk_hook(r, ctx, what, ms, me);
}




/*
 * The Lua chunk hooks on one event's data (with the model restored when
 * it is): keep, drop, replace, or abort the stream when a hook fails.
 */

static ngx_uint_t
ngx_http_llm_chunk_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t what, size_t ms, size_t me)
{
    u_char                   *p, *data;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_str_t                 doc;
    ngx_uint_t                drop;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    data = resp->sse.data;
    len = resp->sse.data_len;

    doc.data = data;
    doc.len = len;

    if (what == NGX_HTTP_LLM_EVENT_EDIT) {
        doc.len = len - (me - ms) + resp->model_json.len;
        doc.data = ngx_pnalloc(resp->scratch, doc.len);
        if (doc.data == NULL) {
            return NGX_HTTP_LLM_EVENT_ABORT;
        }

        p = ngx_cpymem(doc.data, data, ms);
        p = ngx_cpymem(p, resp->model_json.data, resp->model_json.len);
        ngx_memcpy(p, data + me, len - me);
    }

    ctx->event_pool = resp->scratch;
    rc = ngx_http_llm_hooks(r, ctx, NGX_HTTP_LLM_HOOK_CHUNK, &doc, &drop);
    ctx->event_pool = NULL;

    if (rc != NGX_OK) {
        return NGX_HTTP_LLM_EVENT_ABORT;
    }

    if (drop == 2) {
        resp->replacement = doc;
        return NGX_HTTP_LLM_EVENT_RAW;
    }

    if (drop) {
        return NGX_HTTP_LLM_EVENT_DROP;
    }

    if (doc.data == data) {
        return what;
    }

    resp->replacement = doc;

    return NGX_HTTP_LLM_EVENT_REPLACE;
}


/*
 * A choice that carries generated text, reasoning or a tool call: the
 * choices are walked with the skimmer, whatever spaces the engine writes
 * ("content": "x" as Python's json module writes it).
 */

static ngx_uint_t
ngx_http_llm_choices_content(u_char *p, size_t len)
{
    int                    rc;
    u_char                *last;
    ngx_http_llm_jskim_t   k;

    last = p + len - 1;     /* the ']' */
    p++;

    for ( ;; ) {
        while (p < last && (ngx_http_llm_is_space(*p) || *p == ',')) {
            p++;
        }

        if (p >= last || *p != '{'
            || !ngx_http_llm_jskim_open(&k, p, last - p))
        {
            return 0;
        }

        while ((rc = ngx_http_llm_jskim_next(&k))
               == NGX_HTTP_LLM_JSKIM_MEMBER)
        {
            if (k.key_len == 5 && ngx_strncmp(k.key, "delta", 5) == 0
                && *k.value == '{'
                && ngx_http_llm_delta_content((u_char *) k.value,
                                              k.value_end - k.value))
            {
                return 1;
            }

            /* completions: the choice's own "text" */

            if (k.key_len == 4 && ngx_strncmp(k.key, "text", 4) == 0
                && *k.value == '"' && k.value_end - k.value > 2)
            {
                return 1;
            }
        }

        if (rc != NGX_HTTP_LLM_JSKIM_END) {
            return 0;
        }

        p = (u_char *) k.pos + 1;       /* past the choice's '}' */
    }
}


/* a delta with text: a non-empty string, or a tool call */

static ngx_uint_t
ngx_http_llm_delta_content(u_char *p, size_t len)
{
    ngx_uint_t             i;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  keys[] = {
        ngx_string("content"),              /* chat */
        ngx_string("reasoning_content"),
        ngx_string("reasoning"),
        ngx_string("text"),                 /* Messages: text_delta */
        ngx_string("thinking"),
        ngx_string("partial_json"),
        ngx_null_string
    };

    if (!ngx_http_llm_jskim_open(&k, p, len)) {
        return 0;
    }

    while (ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER) {

        if (*k.value == '"') {
            if (k.value_end - k.value <= 2) {
                continue;
            }

            for (i = 0; keys[i].len; i++) {
                if (k.key_len == keys[i].len
                    && ngx_strncmp(k.key, keys[i].data, keys[i].len) == 0)
                {
                    return 1;
                }
            }

        } else if (*k.value == '[' && k.key_len == 10
                   && ngx_strncmp(k.key, "tool_calls", 10) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * An event a chunk hook cannot see: over llm_event_max_size, or its data
 * on more than one line (clients join them; the hook's event could not be
 * spliced back).  1: the stream is ended with an error (ctx->hook_status,
 * ctx->error), unless llm_hook_on_error is pass.
 */

static ngx_uint_t
ngx_http_llm_event_unseen(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t why)
{
    size_t                    size;
    ngx_str_t                 message;
    ngx_http_llm_loc_conf_t  *llcf;
    ngx_http_llm_response_t  *resp;

    static ngx_str_t  what[] = {
        ngx_string("over llm_event_max_size"),
        ngx_string("with more than one data line")
    };

    static ngx_str_t  messages[] = {
        ngx_string("an event of the engine's stream is over "
                   "llm_event_max_size, the chunk hook cannot see it"),
        ngx_string("an event of the engine's stream has more than one data "
                   "line, the chunk hook cannot see it")
    };

    static const char  *codes[] = {
        "response_too_large",
        "unsupported_event"
    };

    resp = ctx->response;

    if (!(resp->hooks & (1 << NGX_HTTP_LLM_HOOK_CHUNK))) {
        return 0;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    size = (why == NGX_HTTP_LLM_UNSEEN_SIZE) ? resp->event_max
                                             : resp->sse.data_len;

    if (llcf->hook_on_error) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm router: an event %V (%uz bytes) passed on "
                      "without the chunk hook (llm_hook_on_error pass)",
                      &what[why], size);
        return 0;
    }

    message = messages[why];
    ngx_http_llm_set_error(ctx, codes[why], "server_error", NULL, &message);
    ctx->hook_status = NGX_HTTP_BAD_GATEWAY;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm router: %V (%uz bytes), the stream ends with an "
                  "error event", &message, size);

    return 1;
}


/* the last event of a Responses or Messages stream, by its name or type */

static ngx_uint_t
ngx_http_llm_stream_end(ngx_uint_t api, u_char *name, size_t len)
{
    if (len == 5 && ngx_strncmp(name, "error", 5) == 0) {
        return 1;       /* the engine's own error event ends it */
    }

    if (api == NGX_HTTP_LLM_API_MESSAGES) {
        return len == 12 && ngx_strncmp(name, "message_stop", 12) == 0;
    }

    if (len < 15 || ngx_strncmp(name, "response.", 9) != 0) {
        return 0;
    }

    name += 9;
    len -= 9;

    return (len == 9 && ngx_strncmp(name, "completed", 9) == 0)
           || (len == 6 && ngx_strncmp(name, "failed", 6) == 0)
           || (len == 10 && ngx_strncmp(name, "incomplete", 10) == 0);
}


/* appends n bytes to the output of this call */

static ngx_int_t
ngx_http_llm_out(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    u_char *p, size_t n)
{
    size_t        room;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (n) {
        b = resp->out_last ? resp->out_last->buf : NULL;

        if (b == NULL || b->last == b->end) {

            /* a buffer the client took, or a new one */

            cl = ngx_chain_get_free_buf(r->pool, &resp->free);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            b = cl->buf;

            if (b->start == NULL) {
                b->start = ngx_palloc(r->pool, NGX_HTTP_LLM_OUT_SIZE);
                if (b->start == NULL) {
                    return NGX_ERROR;
                }

                b->end = b->start + NGX_HTTP_LLM_OUT_SIZE;
            }

            b->pos = b->start;
            b->last = b->start;
            b->temporary = 1;
            b->flush = 0;
            b->last_buf = 0;
            b->last_in_chain = 0;
            b->sync = 0;
            b->tag = (ngx_buf_tag_t) &ngx_http_llm_router_module;

            if (resp->out_last) {
                resp->out_last->next = cl;

            } else {
                resp->out = cl;
            }

            resp->out_last = cl;
            resp->nout++;
        }

        room = ngx_min((size_t) (b->end - b->last), n);
        b->last = ngx_cpymem(b->last, p, room);
        p += room;
        n -= room;
    }

    return NGX_OK;
}


/* sends this call's output on, and takes back the buffers already sent */

static ngx_int_t
ngx_http_llm_out_flush(ngx_http_request_t *r, ngx_http_llm_response_t *resp,
    ngx_uint_t flush, ngx_uint_t last)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    /* a flush with bytes waiting downstream: the call itself pushes them */

    if (resp->out == NULL && (last || (flush && resp->busy == NULL))) {
        cl = ngx_chain_get_free_buf(r->pool, &resp->free);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        b = cl->buf;
        b->pos = b->start;
        b->last = b->start;
        b->temporary = 0;     /* special: no bytes */
        b->memory = 0;
        b->tag = (ngx_buf_tag_t) &ngx_http_llm_router_module;
        resp->out = cl;
        resp->out_last = cl;
    }

    if (resp->out == NULL && resp->busy == NULL) {
        return NGX_OK;
    }

    if (resp->out_last) {
        b = resp->out_last->buf;
        b->flush = flush;
        b->last_buf = last;
        b->last_in_chain = 1;
        b->sync = (b->pos == b->last && !flush && !last);
    }

    if (last) {
        resp->ended = 1;
    }

    rc = ngx_http_next_body_filter(r, resp->out);

    ngx_chain_update_chains(r->pool, &resp->free, &resp->busy, &resp->out,
                            (ngx_buf_tag_t) &ngx_http_llm_router_module);

    resp->out_last = NULL;
    resp->nout = 0;

    /* what waits downstream: the bound on reading the engine */

    resp->nbusy = 0;

    for (cl = resp->busy; cl; cl = cl->next) {
        if (ngx_buf_size(cl->buf)) {
            resp->nbusy++;
        }
    }

    return rc;
}


/* the error event of a broken stream: a timeout, or a 502 */

static ngx_int_t
ngx_http_llm_stream_error_text(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *text)
{
    return ngx_http_llm_error_event(r, ctx,
                                    (ctx->stream_failed == 2)
                                    ? NGX_HTTP_GATEWAY_TIME_OUT
                                    : NGX_HTTP_BAD_GATEWAY, text);
}


/*
 * The error event that ends a stream, in the shape of its API:
 *   Chat Completions: data: {"error":{...}}, then data: [DONE];
 *   Responses: event: error, data: {"type":"error","code":...,
 *     "message":...,"param":...,"sequence_number":N};
 *   Messages: event: error, data: {"type":"error","error":{"type":...,
 *     "message":...}}.
 * The message, code and param are those of OpenAI's shape, as escaped
 * there.
 */

static ngx_int_t
ngx_http_llm_error_event(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *text)
{
    u_char                *p;
    size_t                 len;
    ngx_buf_t             *b;
    ngx_str_t              v[3], type;
    ngx_uint_t             i;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  names[] = {
        ngx_string("message"),
        ngx_string("code"),
        ngx_string("param")
    };

    b = ngx_http_llm_error_body(r, status, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (ctx->response->api == NGX_HTTP_LLM_API_CHAT) {

        /* the body ends with "\n" */

        text->len = sizeof("data: \ndata: [DONE]\n\n") + (b->last - b->pos);
        text->data = ngx_pnalloc(r->pool, text->len);

        if (text->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(text->data, "data: ", 6);
        p = ngx_cpymem(p, b->pos, b->last - b->pos - 1);
        p = ngx_cpymem(p, "\n\ndata: [DONE]\n\n", 16);

        text->len = p - text->data;

        return NGX_OK;
    }

    /* the values of {"error":{...}}, JSON text as they are */

    ngx_str_set(&v[0], "\"the request failed\"");
    ngx_str_set(&v[1], "\"server_error\"");
    ngx_str_set(&v[2], "null");

    if (ngx_http_llm_jskim_open(&k, b->pos, b->last - b->pos)
        && ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER
        && ngx_http_llm_jskim_open(&k, k.value, k.value_end - k.value))
    {
        while (ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER) {
            for (i = 0; i < 3; i++) {
                if (k.key_len == names[i].len
                    && ngx_strncmp(k.key, names[i].data, names[i].len) == 0)
                {
                    v[i].data = (u_char *) k.value;
                    v[i].len = k.value_end - k.value;
                }
            }
        }
    }

    if (ctx->response->api == NGX_HTTP_LLM_API_RESPONSES) {
        len = sizeof("event: error\ndata: {\"type\":\"error\",\"code\":,"
                     "\"message\":,\"param\":,\"sequence_number\":}\n\n")
              + v[0].len + v[1].len + v[2].len + NGX_INT_T_LEN;

        text->data = ngx_pnalloc(r->pool, len);
        if (text->data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(text->data,
                        "event: error\ndata: {\"type\":\"error\",\"code\":%V,"
                        "\"message\":%V,\"param\":%V,"
                        "\"sequence_number\":%i}\n\n",
                        &v[1], &v[0], &v[2], ctx->events);

        text->len = p - text->data;

        return NGX_OK;
    }

    /* Anthropic's error types */

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        ngx_str_set(&type, "invalid_request_error");
        break;
    case NGX_HTTP_UNAUTHORIZED:
        ngx_str_set(&type, "authentication_error");
        break;
    case NGX_HTTP_FORBIDDEN:
        ngx_str_set(&type, "permission_error");
        break;
    case NGX_HTTP_NOT_FOUND:
        ngx_str_set(&type, "not_found_error");
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        ngx_str_set(&type, "request_too_large");
        break;
    case NGX_HTTP_TOO_MANY_REQUESTS:
        ngx_str_set(&type, "rate_limit_error");
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_str_set(&type, "overloaded_error");
        break;
    default:
        if (status < NGX_HTTP_INTERNAL_SERVER_ERROR) {
            ngx_str_set(&type, "invalid_request_error");

        } else {
            ngx_str_set(&type, "api_error");
        }
    }

    len = sizeof("event: error\ndata: {\"type\":\"error\",\"error\":"
                 "{\"type\":\"\",\"message\":}}\n\n")
          + type.len + v[0].len;

    text->data = ngx_pnalloc(r->pool, len);
    if (text->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(text->data,
                    "event: error\ndata: {\"type\":\"error\",\"error\":"
                    "{\"type\":\"%V\",\"message\":%V}}\n\n",
                    &type, &v[0]);

    text->len = p - text->data;

    return NGX_OK;
}


/* rc: 0 the engine ended the stream early, else 502 or 504 from nginx */

static void
ngx_http_llm_stream_failed(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t rc)
{
    ngx_str_t  message;

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        ctx->stream_failed = 2;
        ngx_str_set(&message, "the engine stopped sending in the middle "
                              "of the stream");
        ngx_http_llm_set_error(ctx, "upstream_timeout", "server_error", NULL,
                               &message);

    } else {
        ctx->stream_failed = 1;
        ngx_str_set(&message, "the engine closed the stream before its end");
        ngx_http_llm_set_error(ctx, "stream_interrupted", "server_error",
                               NULL, &message);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "llm router: %V after %i events, the client gets an "
                  "error event%s", &message, ctx->events,
                  ctx->response->api == NGX_HTTP_LLM_API_CHAT
                  ? " and [DONE]" : "");
}


/*
 * The proxy ends a request: when the engine broke off a stream whose
 * headers were sent (closed, timed out), nginx would just close the
 * connection.  The client gets an error event and [DONE] first; a held
 * JSON answer cut short, whose headers are not out, is a 502 instead.
 */

static void
ngx_http_llm_upstream_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                 text;
    ngx_buf_t                *b;
    ngx_uint_t                flush, last;
    ngx_chain_t               out;
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

    if (resp->mode != NGX_HTTP_LLM_MODE_SSE) {

        /* a held answer cut short: its headers are not out yet */

        (void) ngx_http_llm_refuse(r, ctx, "upstream_error",
                                   (rc == NGX_HTTP_GATEWAY_TIME_OUT)
                                   ? "the engine stopped sending in the "
                                     "middle of its answer"
                                   : "the engine closed the connection "
                                     "before the end of its answer");
        return;
    }

    ngx_http_llm_stream_failed(r, ctx, rc);

    if (ngx_http_llm_stream_error_text(r, ctx, &text) != NGX_OK) {
        return;
    }

    /* the engine's bytes not read yet go first, all of them */

    if (resp->rewrite && resp->in) {
        resp->in_last = 1;
        flush = 0;
        last = 0;

        if (ngx_http_llm_sse_read(r, ctx, &flush, &last) != NGX_OK) {
            return;
        }

        if (resp->hook_abort) {
            (void) ngx_http_llm_hook_abort_stream(r, ctx);
            return;
        }

        if (last) {
            (void) ngx_http_llm_out_flush(r, resp, 1, 1);
            return;
        }
    }

    /* whatever was held of an unfinished event goes first */

    if (resp->rewrite && resp->raw && resp->raw->last > resp->raw->pos) {
        if (ngx_http_llm_out(r, resp, resp->raw->pos,
                             resp->raw->last - resp->raw->pos)
            != NGX_OK)
        {
            return;
        }

        resp->raw->last = resp->raw->pos;
    }

    if (resp->rewrite) {
        if (ngx_http_llm_out(r, resp, text.data, text.len) != NGX_OK) {
            return;
        }

        (void) ngx_http_llm_out_flush(r, resp, 1, 1);
        return;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return;
    }

    b->pos = text.data;
    b->last = text.data + text.len;
    b->memory = 1;
    b->flush = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    resp->injecting = 1;
    (void) ngx_http_output_filter(r, &out);
    resp->injecting = 0;
    resp->ended = 1;
}


static void
ngx_http_llm_scratch_cleanup(void *data)
{
    ngx_pool_t  *pool = data;

    ngx_destroy_pool(pool);
}


static char *
ngx_http_llm_cstrdup(ngx_pool_t *pool, const char *s)
{
    char    *d;
    size_t   len;

    len = ngx_strlen(s) + 1;

    d = ngx_pnalloc(pool, len);
    if (d == NULL) {
        return NULL;
    }

    ngx_memcpy(d, s, len);

    return d;
}


/* a chunk hook rejected or failed: an error event, [DONE], the end */

static ngx_int_t
ngx_http_llm_hook_abort_stream(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t                 text;
    ngx_chain_t              *cl;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    /* the rest of the engine's bytes go nowhere */

    while (resp->in) {
        cl = resp->in;
        cl->buf->pos = cl->buf->last;
        resp->in = cl->next;
        ngx_free_chain(r->pool, cl);
    }

    if (ngx_http_llm_error_event(r, ctx, ctx->hook_status, &text) != NGX_OK
        || ngx_http_llm_out(r, resp, text.data, text.len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->stream_done = 1;

    ngx_http_llm_upstream_stop(r);

    return ngx_http_llm_out_flush(r, resp, 1, 1);
}


/*
 * The client's answer has ended before the engine's: the upstream module
 * finishes the request (and closes the engine's connection) once it has
 * handed on what it read, instead of reading the engine to its end while
 * the engine generates for nobody and the client's connection waits.
 */

static void
ngx_http_llm_upstream_stop(ngx_http_request_t *r)
{
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL) {
        return;
    }

    if (u->buffering) {
        if (u->pipe) {
            u->pipe->upstream_done = 1;
        }

    } else {
        u->length = 0;
    }
}


/* done(ev, ctx) hooks see the end of the stream, ev being "[DONE]" */

static ngx_uint_t
ngx_http_llm_done_hook(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_int_t                 rc;
    ngx_str_t                 doc;
    ngx_uint_t                drop;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;

    ngx_str_set(&doc, "\"[DONE]\"");

    ctx->event_pool = resp->scratch;
    rc = ngx_http_llm_hooks(r, ctx, NGX_HTTP_LLM_HOOK_DONE, &doc, &drop);
    ctx->event_pool = NULL;

    if (rc != NGX_OK) {
        return NGX_HTTP_LLM_EVENT_ABORT;
    }

    if (drop == 2) {
        resp->replacement = doc;
        return NGX_HTTP_LLM_EVENT_RAW;
    }

    return drop ? NGX_HTTP_LLM_EVENT_DROP : NGX_HTTP_LLM_EVENT_KEEP;
}
