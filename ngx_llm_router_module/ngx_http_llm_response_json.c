
/*
 * ngx_llm_router: JSON answers: usage read, held answers, model restored.
 * Not here: choosing the mode (response.c), event streams (response_sse.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_response_json.h"
#include "ngx_http_llm_response_error.h"
#include "ngx_http_llm_response_fail.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_hook.h"
#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_JSON_TAIL      8192           /* kept past the limit */


static ngx_int_t ngx_http_llm_keep(ngx_http_request_t *r,
    ngx_http_llm_response_t *resp, u_char *p, size_t n);
static void ngx_http_llm_tail_usage(ngx_http_llm_ctx_t *ctx, u_char *start,
    u_char *last);
static ngx_int_t ngx_http_llm_too_large(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t *cl);
static ngx_int_t ngx_http_llm_release_held(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_answer_model(ngx_http_llm_ctx_t *ctx,
    ngx_buf_t *body, ngx_http_llm_jskim_t *k);
static ngx_int_t ngx_http_llm_send_edited(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_send_held(ngx_http_request_t *r,
    ngx_buf_t *b);
static ngx_buf_t *ngx_http_llm_response_hook(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_llm_send_engine_error(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);


void
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

ngx_int_t
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

    rc = ngx_http_llm_next_header_filter(r);

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

    return ngx_http_llm_next_body_filter(r, chain);
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

    rc = ngx_http_llm_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_llm_next_body_filter(r, &out);
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

        ngx_http_llm_set_json_type(r);

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


/* an engine's error, in OpenAI's shape (ngx_http_llm_response_error.c) */

static ngx_int_t
ngx_http_llm_send_engine_error(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_buf_t                *b;
    ngx_http_llm_response_t  *resp;

    resp = ctx->response;
    resp->ended = 1;

    b = ngx_http_llm_engine_error(r, ctx, resp->body);
    if (b == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_llm_send_held(r, b);
}


/*
 * An answer the hooks must see and cannot: the client gets a 502 in
 * OpenAI's shape instead, sent from here, its headers not yet gone; what
 * the engine sends after it is swallowed.
 */

ngx_int_t
ngx_http_llm_refuse(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    const char *code, const char *text)
{
    ngx_int_t                 rc;
    ngx_buf_t                *b;
    ngx_str_t                 message;
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

    if (r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }

    ngx_http_llm_set_json_type(r);
    r->headers_out.charset.len = 0;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_llm_send_held(r, b);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DONE;
}
