
/*
 * ngx_llm_router: how an answer fails (error events); the next filters.
 * Not here: when it fails (response_sse.c, response.c's finalize hook).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_response_common.h"
#include "ngx_http_llm_response_fail.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_jscan.h"


static ngx_int_t ngx_http_llm_error_event_chat(ngx_http_request_t *r,
    ngx_buf_t *b, ngx_str_t *text);
static void ngx_http_llm_error_values(ngx_buf_t *b, ngx_str_t *v);
static void ngx_http_llm_anthropic_type(ngx_uint_t status, ngx_str_t *type);


/* the filters after ours, which every response file hands answers to */

ngx_http_output_header_filter_pt  ngx_http_llm_next_header_filter;
ngx_http_output_body_filter_pt    ngx_http_llm_next_body_filter;


/* rc: 0 the engine ended the stream early, else 502 or 504 from nginx */

void
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


/* the error event of a broken stream: a timeout, or a 502 */

ngx_int_t
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

ngx_int_t
ngx_http_llm_error_event(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *text)
{
    u_char     *p;
    size_t      len;
    ngx_buf_t  *b;
    ngx_str_t   v[3], type;

    b = ngx_http_llm_error_body(r, status, ctx);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (ctx->response->api == NGX_HTTP_LLM_API_CHAT) {
        return ngx_http_llm_error_event_chat(r, b, text);
    }

    ngx_http_llm_error_values(b, v);

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

    ngx_http_llm_anthropic_type(status, &type);

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


/* Chat Completions: the body (it ends with "\n") as data, then [DONE] */

static ngx_int_t
ngx_http_llm_error_event_chat(ngx_http_request_t *r, ngx_buf_t *b,
    ngx_str_t *text)
{
    u_char  *p;

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


/* the message, code and param of {"error":{...}}, JSON text as they are */

static void
ngx_http_llm_error_values(ngx_buf_t *b, ngx_str_t *v)
{
    ngx_uint_t             i;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  names[] = {
        ngx_string("message"),
        ngx_string("code"),
        ngx_string("param")
    };

    ngx_str_set(&v[0], "\"the request failed\"");
    ngx_str_set(&v[1], "\"server_error\"");
    ngx_str_set(&v[2], "null");

    if (!ngx_http_llm_jskim_open(&k, b->pos, b->last - b->pos)
        || ngx_http_llm_jskim_next(&k) != NGX_HTTP_LLM_JSKIM_MEMBER
        || !ngx_http_llm_jskim_open(&k, k.value, k.value_end - k.value))
    {
        return;
    }

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


/* Anthropic's error type for a status */

static void
ngx_http_llm_anthropic_type(ngx_uint_t status, ngx_str_t *type)
{
    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        ngx_str_set(type, "invalid_request_error");
        break;
    case NGX_HTTP_UNAUTHORIZED:
        ngx_str_set(type, "authentication_error");
        break;
    case NGX_HTTP_FORBIDDEN:
        ngx_str_set(type, "permission_error");
        break;
    case NGX_HTTP_NOT_FOUND:
        ngx_str_set(type, "not_found_error");
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        ngx_str_set(type, "request_too_large");
        break;
    case NGX_HTTP_TOO_MANY_REQUESTS:
        ngx_str_set(type, "rate_limit_error");
        break;
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        ngx_str_set(type, "overloaded_error");
        break;
    default:
        if (status < NGX_HTTP_INTERNAL_SERVER_ERROR) {
            ngx_str_set(type, "invalid_request_error");

        } else {
            ngx_str_set(type, "api_error");
        }
    }
}


/*
 * The client's answer has ended before the engine's: the upstream module
 * finishes the request (and closes the engine's connection) once it has
 * handed on what it read, instead of reading the engine to its end while
 * the engine generates for nobody and the client's connection waits.
 */

void
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
