
/*
 * ngx_llm_router: a prompt's tokens estimated, the variant that holds them.
 * Not here: the /tokenize client (tokenize.c), rejections (body.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_text.h"
#include "ngx_http_llm_body_buf.h"
#include "ngx_http_llm_variant.h"
#include "ngx_http_llm_engine.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_tokenize.h"
#include "ngx_http_llm_upstream.h"


static ngx_int_t ngx_http_llm_count_prompt(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_route_t *first,
    ngx_uint_t *prompt, ngx_int_t *given,
    ngx_http_llm_tokenize_done_pt done);
static ngx_http_llm_route_t *ngx_http_llm_fit_variant(ngx_http_request_t *r,
    ngx_http_llm_route_t *first, ngx_int_t given, ngx_http_llm_fit_t *fit,
    ngx_uint_t *context);
static ngx_uint_t ngx_http_llm_completion(ngx_http_llm_model_t *model,
    ngx_int_t given);
static ngx_int_t ngx_http_llm_tokenize_near(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_route_t *first, ngx_uint_t prompt,
    ngx_int_t given, ngx_str_t *raw, ngx_str_t *key,
    ngx_http_llm_tokenize_done_pt done);
static ngx_http_llm_route_t *ngx_http_llm_near_variant(ngx_http_request_t *r,
    ngx_http_llm_route_t *first, ngx_uint_t prompt, ngx_int_t given);
static ngx_int_t ngx_http_llm_estimate(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_model_t *model, ngx_uint_t *prompt, ngx_int_t *given,
    ngx_str_t *raw, ngx_str_t *key);
static ngx_int_t ngx_http_llm_given_tokens(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
static size_t ngx_http_llm_text_bytes(ngx_str_t *value, ngx_uint_t *count);


/* where the prompt is, by endpoint: chat, completions, embeddings */
ngx_str_t  ngx_http_llm_prompt_keys[] = {
    ngx_string("messages"),
    ngx_string("prompt"),
    ngx_string("input"),
    ngx_null_string
};


/*
 * Variants of a model: the smallest max_context that holds the estimated
 * prompt plus the completion asked for, among those with a usable peer.
 * NGX_AGAIN: routing waits for an engine's count, and done() goes on with
 * it (the caller's continuation: no call back up); NGX_DECLINED: none holds
 * the request (fit->largest 0: no context is known yet), a rejection for
 * the caller with the numbers of fit.
 */

ngx_int_t
ngx_http_llm_choose_variant(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_route_t **route, ngx_http_llm_fit_t *fit,
    ngx_http_llm_tokenize_done_pt done)
{
    ngx_int_t              given, status;
    ngx_uint_t             context;
    ngx_http_llm_route_t  *best;

    status = ngx_http_llm_count_prompt(r, ctx, body, scan, *route,
                                       &fit->prompt, &given, done);
    if (status != NGX_OK) {
        return status;
    }

    best = ngx_http_llm_fit_variant(r, *route, given, fit, &context);

    ctx->estimated_tokens = fit->need;

    if (best == NULL) {
        return NGX_DECLINED;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm router: \"%V\" needs about %ui tokens, "
                   "variant in upstream \"%V\" of %ui",
                   &ctx->model, fit->need, &best->model->upstream->host,
                   context);

    *route = best;

    return NGX_OK;
}


/* the prompt's tokens: estimated, or counted by an engine when near */

static ngx_int_t
ngx_http_llm_count_prompt(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_route_t *first, ngx_uint_t *prompt, ngx_int_t *given,
    ngx_http_llm_tokenize_done_pt done)
{
    ngx_int_t  status;
    ngx_str_t  raw, key;

    ngx_str_null(&raw);
    ngx_str_null(&key);

    /* when the engine counted, the texts are not read (nor copied) again */

    if (ngx_http_llm_estimate(r, body, scan, first->model, prompt, given,
                              (ctx->tokenized && ctx->exact_tokens >= 0)
                              ? NULL : &raw, &key)
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
            *prompt = ctx->exact_tokens;
        }

        return NGX_OK;
    }

    status = ngx_http_llm_tokenize_near(r, ctx, first, *prompt, *given,
                                        &raw, &key, done);

    return (status == NGX_DECLINED) ? NGX_OK : status;
}


/*
 * The smallest variant that holds fit->prompt and the completion; equal
 * ones: the first declared.  One with no usable peer (nor a fallback) is
 * the answer only when no other holds it: a 503 follows.
 */

static ngx_http_llm_route_t *
ngx_http_llm_fit_variant(ngx_http_request_t *r, ngx_http_llm_route_t *first,
    ngx_int_t given, ngx_http_llm_fit_t *fit, ngx_uint_t *context)
{
    ngx_uint_t                 i, n, size, best_ctx, down_ctx;
    ngx_msec_t                 retry;
    ngx_http_llm_route_t     **v, *best, *down;
    ngx_http_llm_model_t      *model;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    v = first->model->variants->elts;
    best = NULL;
    down = NULL;
    best_ctx = 0;
    down_ctx = 0;
    fit->need = 0;
    fit->largest = 0;
    fit->completion = 0;

    for (i = 0; i < first->model->variants->nelts; i++) {
        model = v[i]->model;

        /* "auto": what the engines said; not known yet: passed over */

        size = ngx_http_llm_model_context(lmcf, model);

        if (size == 0) {
            continue;
        }

        fit->completion = ngx_http_llm_completion(model, given);
        n = fit->prompt + fit->completion;

        fit->largest = ngx_max(fit->largest, size);

        if (size < n) {
            fit->need = ngx_max(fit->need, n);
            continue;
        }

        if (ngx_http_llm_upstream_usable(lmcf, model->upstream, &retry)
            || model->fallback_route)
        {
            if (best == NULL || size < best_ctx) {
                best = v[i];
                best_ctx = size;
                fit->need = n;
            }

        } else if (down == NULL || size < down_ctx) {
            down = v[i];
            down_ctx = size;
        }
    }

    if (best == NULL) {
        *context = down_ctx;
        return down;        /* only down variants hold it: 503 follows */
    }

    *context = best_ctx;

    return best;
}


/* a model's context: its max_context, or "auto": what its engines said */

ngx_uint_t
ngx_http_llm_model_context(ngx_http_llm_main_conf_t *lmcf,
    ngx_http_llm_model_t *model)
{
    return (model->max_context == NGX_HTTP_LLM_CONTEXT_AUTO)
           ? ngx_http_llm_learned_context(lmcf, model->upstream)
           : model->max_context;
}


/* the completion asked for, else the model's default */

static ngx_uint_t
ngx_http_llm_completion(ngx_http_llm_model_t *model, ngx_int_t given)
{
    return (given >= 0) ? (ngx_uint_t) given
           : (model->default_max_tokens != NGX_CONF_UNSET_UINT)
             ? model->default_max_tokens : 0;
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
    ngx_str_t *raw, ngx_str_t *key, ngx_http_llm_tokenize_done_pt done)
{
    ngx_int_t                 rc;
    ngx_str_t                 doc[NGX_HTTP_LLM_TOKENIZE_PARTS];
    ngx_uint_t                parts;
    ngx_http_llm_route_t     *near;
    ngx_http_llm_srv_conf_t  *lscf;

    near = ngx_http_llm_near_variant(r, first, prompt, given);

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
                                     done);

    if (rc == NGX_OK) {
        return NGX_AGAIN;
    }

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
}


/* the first "tokenize on" variant the estimate is near the limit of */

static ngx_http_llm_route_t *
ngx_http_llm_near_variant(ngx_http_request_t *r, ngx_http_llm_route_t *first,
    ngx_uint_t prompt, ngx_int_t given)
{
    ngx_uint_t                 i, context, need, margin;
    ngx_http_llm_route_t     **v;
    ngx_http_llm_model_t      *model;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    v = first->model->variants->elts;

    for (i = 0; i < first->model->variants->nelts; i++) {
        model = v[i]->model;

        if (model->tokenize != 1) {
            continue;
        }

        context = ngx_http_llm_model_context(lmcf, model);
        need = prompt + ngx_http_llm_completion(model, given);
        margin = context * model->tokenize_margin / 100;

        if (context && need + margin >= context && need <= context + margin) {
            return v[i];
        }
    }

    return NULL;
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
    size_t                        bytes;
    ngx_int_t                     i;
    ngx_str_t                     raw, *key, *texts;
    ngx_uint_t                    count, messages, per;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  tools = ngx_string("tools");

    bytes = 0;
    messages = 0;

    texts = ngx_http_llm_prompt_keys;

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

    *given = ngx_http_llm_given_tokens(r, body, scan);

    return NGX_OK;
}


/* max_completion_tokens, else max_tokens, if a number; -1: neither */

static ngx_int_t
ngx_http_llm_given_tokens(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan)
{
    double                        number;
    ngx_int_t                     i;
    ngx_str_t                     raw, *key;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  limits[] = {
        ngx_string("max_completion_tokens"), ngx_string("max_tokens"),
        ngx_null_string
    };

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
            return (ngx_int_t) number;
        }
    }

    return -1;
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
