
/*
 * ngx_llm_router: the engine table and each engine's behaviour (llm_engine).
 * Not here: HTTP (ngx_http_llm_probe.c), timers and claims (check.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_engine.h"
#include "ngx_http_llm_probe.h"
#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_text.h"
#include "ngx_http_llm_json.h"


#include <cjson/cJSON.h>


/* finds the context size in the answer to limits_uri, and slots or NULL */
typedef cJSON *(*ngx_http_llm_engine_limits_pt)(cJSON *json,
    cJSON **slots);

/* the body of POST tokenize_uri, in pieces */
typedef ngx_int_t (*ngx_http_llm_engine_tokenize_pt)(ngx_pool_t *pool,
    ngx_str_t *model_json, ngx_str_t *model, ngx_str_t *key,
    ngx_str_t *raw, ngx_str_t *doc, ngx_uint_t *parts);


typedef struct {
    ngx_str_t                         name;
    ngx_uint_t                        engine;
    const char                       *check_uri;
    const char                       *metrics[4];  /* running, waiting,
                                                      kv, older kv */
    ngx_uint_t                        profile;     /* NGX_HTTP_LLM_PROFILE_* */
    ngx_str_t                         max_tokens_extra;  /* a third name */
    const char                       *limits_uri;  /* its context size */
    ngx_http_llm_engine_limits_pt     limits;
    ngx_str_t                         tokenize_uri;
    ngx_http_llm_engine_tokenize_pt   tokenize;    /* NULL: no /tokenize */
} ngx_http_llm_engine_t;


typedef struct {
    ngx_str_t    name;
    ngx_uint_t   mask;
} ngx_http_llm_profile_rule_t;


static ngx_http_llm_engine_t *ngx_http_llm_engine_get(ngx_uint_t engine);
static cJSON *ngx_http_llm_limits_models(cJSON *json, cJSON **slots);
static cJSON *ngx_http_llm_limits_props(cJSON *json, cJSON **slots);
static cJSON *ngx_http_llm_limits_info(cJSON *json, cJSON **slots);
static cJSON *ngx_http_llm_limits_server_info(cJSON *json, cJSON **slots);
static ngx_int_t ngx_http_llm_tokenize_vllm(ngx_pool_t *pool,
    ngx_str_t *model_json, ngx_str_t *model, ngx_str_t *key,
    ngx_str_t *raw, ngx_str_t *doc, ngx_uint_t *parts);
static ngx_int_t ngx_http_llm_tokenize_llamacpp(ngx_pool_t *pool,
    ngx_str_t *model_json, ngx_str_t *model, ngx_str_t *key,
    ngx_str_t *raw, ngx_str_t *doc, ngx_uint_t *parts);
static ngx_int_t ngx_http_llm_engine_request(ngx_conf_t *cf, ngx_str_t *uri,
    ngx_str_t *request);


static ngx_http_llm_engine_t  ngx_http_llm_engines[] = {

    { ngx_string("vllm"), NGX_HTTP_LLM_ENGINE_VLLM, "/health",
      { "vllm:num_requests_running", "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc" }, 0,
      ngx_null_string, "/v1/models", ngx_http_llm_limits_models,
      ngx_string("/tokenize"), ngx_http_llm_tokenize_vllm },

    { ngx_string("llamacpp"), NGX_HTTP_LLM_ENGINE_LLAMACPP, "/health",
      { "llamacpp:requests_processing", "llamacpp:requests_deferred",
        NULL, NULL },
      NGX_HTTP_LLM_PROFILE_MAX_TOKENS|NGX_HTTP_LLM_PROFILE_CACHE_PROMPT,
      ngx_string("n_predict"), "/props", ngx_http_llm_limits_props,
      ngx_string("/tokenize"), ngx_http_llm_tokenize_llamacpp },

    { ngx_string("sglang"), NGX_HTTP_LLM_ENGINE_SGLANG, "/health",
      { "sglang:num_running_reqs", "sglang:num_queue_reqs",
        "sglang:token_usage", NULL }, 0,
      ngx_null_string, "/server_info", ngx_http_llm_limits_server_info,
      ngx_null_string, NULL },

    { ngx_string("tgi"), NGX_HTTP_LLM_ENGINE_TGI, "/health",
      { "tgi_batch_current_size", "tgi_queue_size", NULL, NULL },
      NGX_HTTP_LLM_PROFILE_MAX_TOKENS|NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS
      |NGX_HTTP_LLM_PROFILE_N,
      ngx_null_string, "/info", ngx_http_llm_limits_info,
      ngx_null_string, NULL },

    { ngx_string("ollama"), NGX_HTTP_LLM_ENGINE_OLLAMA, "/api/version",
      { NULL, NULL, NULL, NULL }, NGX_HTTP_LLM_PROFILE_MAX_TOKENS,
      ngx_null_string, NULL, NULL,
      ngx_null_string, NULL },

    { ngx_string("openai"), NGX_HTTP_LLM_ENGINE_OPENAI, "/v1/models",
      { NULL, NULL, NULL, NULL }, 0,
      ngx_null_string, "/v1/models", ngx_http_llm_limits_models,
      ngx_null_string, NULL },

    { ngx_null_string, 0, NULL, { NULL, NULL, NULL, NULL }, 0,
      ngx_null_string, NULL, NULL, ngx_null_string, NULL }
};


static ngx_http_llm_profile_rule_t  ngx_http_llm_profile_rules[] = {
    { ngx_string("max_tokens"), NGX_HTTP_LLM_PROFILE_MAX_TOKENS },
    { ngx_string("stream_options"), NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS },
    { ngx_string("n"), NGX_HTTP_LLM_PROFILE_N },
    { ngx_string("cache_prompt"), NGX_HTTP_LLM_PROFILE_CACHE_PROMPT },
    { ngx_string("all"), (ngx_uint_t) -1 },
    { ngx_null_string, 0 }
};


/* the entry of an engine, NULL for none */

static ngx_http_llm_engine_t *
ngx_http_llm_engine_get(ngx_uint_t engine)
{
    ngx_http_llm_engine_t  *e;

    for (e = ngx_http_llm_engines; e->name.len; e++) {
        if (e->engine == engine) {
            return e;
        }
    }

    return NULL;
}


const char *
ngx_http_llm_engine_name(ngx_uint_t engine)
{
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    return e ? (const char *) e->name.data : "none";
}


/*
 * The arguments of "llm_engine vllm|llamacpp|sglang|tgi|ollama|openai
 * [skip=RULE[,RULE...]|skip=all];": the engine and its profile.
 */

char *
ngx_http_llm_engine_conf(ngx_conf_t *cf, ngx_http_llm_srv_conf_t *lscf)
{
    u_char                       *start, *end, *last;
    ngx_str_t                    *value;
    ngx_http_llm_engine_t        *e;
    ngx_http_llm_profile_rule_t  *rule;

    value = cf->args->elts;

    for (e = ngx_http_llm_engines; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strncmp(e->name.data, value[1].data, value[1].len) == 0)
        {
            lscf->engine = e->engine;
            break;
        }
    }

    if (lscf->engine == NGX_HTTP_LLM_ENGINE_NONE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown engine \"%V\", use vllm, llamacpp, "
                           "sglang, tgi, ollama or openai", &value[1]);
        return NGX_CONF_ERROR;
    }

    lscf->profile = e->profile;

    /* skip=RULE[,RULE...] or skip=all: rules of the profile left out */

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "skip=", 5) != 0) {
            goto invalid;
        }

        start = value[2].data + 5;
        last = value[2].data + value[2].len;

        while (start < last) {
            end = ngx_strlchr(start, last, ',');
            if (end == NULL) {
                end = last;
            }

            for (rule = ngx_http_llm_profile_rules; rule->name.len; rule++) {
                if ((size_t) (end - start) == rule->name.len
                    && ngx_strncmp(start, rule->name.data, rule->name.len)
                       == 0)
                {
                    break;
                }
            }

            if (rule->name.len == 0) {
                goto invalid;
            }

            lscf->profile &= ~rule->mask;
            start = end + 1;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", use skip= with "
                       "max_tokens, stream_options, n, cache_prompt or all",
                       &value[2]);
    return NGX_CONF_ERROR;
}


/*
 * After the http{} block, for an upstream{}: what its engine brings to
 * llm_scrape (the metric names), "max_context auto" (where to ask) and
 * llm_check (its default URI), and the requests of these probes.
 */

ngx_int_t
ngx_http_llm_engine_init_upstream(ngx_conf_t *cf,
    ngx_http_llm_srv_conf_t *lscf)
{
    ngx_str_t               uri;
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(lscf->engine);

    if (lscf->scrape_interval) {
        if (e == NULL || e->metrics[0] == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "llm_scrape in upstream \"%V\" needs an "
                          "llm_engine with metrics (vllm, llamacpp, "
                          "sglang, tgi), in %V:%ui",
                          &lscf->upstream->host, &lscf->file,
                          lscf->line);
            return NGX_ERROR;
        }

        ngx_memcpy(lscf->metrics, e->metrics, sizeof(e->metrics));

        if (ngx_http_llm_engine_request(cf, &lscf->scrape_uri,
                                        &lscf->scrape_request)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (lscf->limits_interval) {
        if (e == NULL || e->limits_uri == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"max_context auto\" needs an llm_engine "
                          "that reports its context size (vllm, "
                          "llamacpp, sglang, tgi, openai) in upstream "
                          "\"%V\"", &lscf->upstream->host);
            return NGX_ERROR;
        }

        uri.data = (u_char *) e->limits_uri;
        uri.len = ngx_strlen(e->limits_uri);

        if (ngx_http_llm_engine_request(cf, &uri, &lscf->limits_request)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (lscf->check_interval == 0) {
        return NGX_OK;
    }

    if (lscf->check_uri.len == 0) {
        ngx_str_set(&lscf->check_uri, "/health");

        if (e) {
            lscf->check_uri.data = (u_char *) e->check_uri;
            lscf->check_uri.len = ngx_strlen(e->check_uri);
        }
    }

    return ngx_http_llm_engine_request(cf, &lscf->check_uri,
                                       &lscf->check_request);
}


/* the whole request of a check, a scrape or the limits */

static ngx_int_t
ngx_http_llm_engine_request(ngx_conf_t *cf, ngx_str_t *uri,
    ngx_str_t *request)
{
    return ngx_http_llm_probe_request(cf->pool, request, "GET", uri, NULL, 0);
}


/*
 * The context size in the answer to the engine's limits_uri, 0: none.
 * Per slot when the engine says how many slots share it.
 */

ngx_uint_t
ngx_http_llm_engine_limits(ngx_uint_t engine, u_char *p, size_t len)
{
    cJSON                  *json, *v, *slots;
    ngx_uint_t              n;
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    if (e == NULL || e->limits == NULL) {
        return 0;
    }

    json = cJSON_ParseWithLength((char *) p, len);
    if (json == NULL) {
        return 0;
    }

    slots = NULL;
    v = e->limits(json, &slots);

    n = 0;

    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble < 1e9) {
        n = (ngx_uint_t) v->valuedouble;

        if (slots && cJSON_IsNumber(slots) && slots->valuedouble >= 1
            && slots->valuedouble < 1e6)
        {
            n /= (ngx_uint_t) slots->valuedouble;
        }
    }

    cJSON_Delete(json);

    return n;
}


/* vLLM and OpenAI-style /v1/models: data[0].max_model_len */

static cJSON *
ngx_http_llm_limits_models(cJSON *json, cJSON **slots)
{
    return cJSON_GetObjectItemCaseSensitive(
               cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json,
                                                                    "data"),
                                  0),
               "max_model_len");
}


/*
 * llama.cpp /props: n_ctx / total_slots (per slot), else
 * default_generation_settings.n_ctx
 */

static cJSON *
ngx_http_llm_limits_props(cJSON *json, cJSON **slots)
{
    cJSON  *v;

    v = cJSON_GetObjectItemCaseSensitive(json, "n_ctx");

    if (cJSON_IsNumber(v)) {
        *slots = cJSON_GetObjectItemCaseSensitive(json, "total_slots");
        return v;
    }

    return cJSON_GetObjectItemCaseSensitive(
               cJSON_GetObjectItemCaseSensitive(json,
                                                "default_generation_settings"),
               "n_ctx");
}


/* TGI /info: max_total_tokens */

static cJSON *
ngx_http_llm_limits_info(cJSON *json, cJSON **slots)
{
    return cJSON_GetObjectItemCaseSensitive(json, "max_total_tokens");
}


/* SGLang /server_info: context_length */

static cJSON *
ngx_http_llm_limits_server_info(cJSON *json, cJSON **slots)
{
    return cJSON_GetObjectItemCaseSensitive(json, "context_length");
}


ngx_uint_t
ngx_http_llm_engine_tokenizes(ngx_uint_t engine)
{
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    return (e && e->tokenize);
}


ngx_str_t *
ngx_http_llm_engine_tokenize_uri(ngx_uint_t engine)
{
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    return (e && e->tokenize) ? &e->tokenize_uri : NULL;
}


/*
 * The body of a /tokenize request for a prompt (raw: the value of
 * "messages" or "prompt" as sent, key: which) to the target model
 * (model_json: its name as a JSON string, or NULL and the name in model),
 * in at most NGX_HTTP_LLM_TOKENIZE_PARTS pieces.
 * NGX_DECLINED: the prompt cannot be sent to this engine.
 */

ngx_int_t
ngx_http_llm_engine_tokenize_body(ngx_pool_t *pool, ngx_uint_t engine,
    ngx_str_t *model_json, ngx_str_t *model, ngx_str_t *key, ngx_str_t *raw,
    ngx_str_t *doc, ngx_uint_t *parts)
{
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    if (e == NULL || e->tokenize == NULL) {
        return NGX_DECLINED;
    }

    return e->tokenize(pool, model_json, model, key, raw, doc, parts);
}


/* vLLM: {"model":TARGET,"messages"|"prompt":...}, the prompt uncopied */

static ngx_int_t
ngx_http_llm_tokenize_vllm(ngx_pool_t *pool, ngx_str_t *model_json,
    ngx_str_t *model, ngx_str_t *key, ngx_str_t *raw, ngx_str_t *doc,
    ngx_uint_t *parts)
{
    if (model_json) {
        doc[1] = *model_json;

    } else if (ngx_http_llm_json_quote(pool, model, &doc[1]) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&doc[0], "{\"model\":");

    doc[2].data = ngx_pnalloc(pool, key->len + sizeof(",\"\":"));
    if (doc[2].data == NULL) {
        return NGX_ERROR;
    }

    doc[2].len = ngx_sprintf(doc[2].data, ",\"%V\":", key) - doc[2].data;
    doc[3] = *raw;
    ngx_str_set(&doc[4], "}");
    *parts = 5;

    return NGX_OK;
}


/*
 * llama.cpp: {"content":"the texts, one per line"}, each copied as it is
 * escaped in the body (ngx_http_llm_text_quote() keeps valid escapes, and
 * makes anything else valid JSON)
 */

static ngx_int_t
ngx_http_llm_tokenize_llamacpp(ngx_pool_t *pool, ngx_str_t *model_json,
    ngx_str_t *model, ngx_str_t *key, ngx_str_t *raw, ngx_str_t *doc,
    ngx_uint_t *parts)
{
    int                    more;
    u_char                *p;
    size_t                 len, n;
    ngx_uint_t             lead;
    const u_char          *text;
    ngx_http_llm_texts_t   texts;

    len = sizeof("{\"content\":\"\"}");

    ngx_http_llm_texts_init(&texts, raw->data, raw->len, 1);

    while ((more = ngx_http_llm_texts_next(&texts, &text, &n)) == 1) {
        len += ngx_http_llm_text_quote(NULL, text, n, 1) + 2;
    }

    if (more < 0) {
        return NGX_DECLINED;
    }

    doc[0].data = ngx_pnalloc(pool, len);
    if (doc[0].data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(doc[0].data, "{\"content\":\"",
                   sizeof("{\"content\":\"") - 1);

    ngx_http_llm_texts_init(&texts, raw->data, raw->len, 1);
    lead = 1;

    while (ngx_http_llm_texts_next(&texts, &text, &n) == 1) {
        if (!lead) {
            *p++ = '\\';
            *p++ = 'n';
        }

        lead = 0;

        p += ngx_http_llm_text_quote(p, text, n, 1);
    }

    p = ngx_cpymem(p, "\"}", 2);
    doc[0].len = p - doc[0].data;
    *parts = 1;

    return NGX_OK;
}


/*
 * The count in the body of a /tokenize answer, or -1: an OpenAI-like
 * {"count": N} or {"tokens": [...]} (vLLM and llama.cpp alike), read with
 * the skimmer: a long list of tokens costs no tree.
 */

ngx_int_t
ngx_http_llm_engine_tokenize_count(ngx_uint_t engine, u_char *p, size_t len)
{
    long                   n_tokens;
    ngx_int_t              n, tokens;
    ngx_http_llm_jskim_t   k;

    static ngx_str_t  count_key = ngx_string("count");
    static ngx_str_t  tokens_key = ngx_string("tokens");

    if (!ngx_http_llm_jskim_open(&k, p, len)) {
        return -1;
    }

    n = -1;
    tokens = -1;

    while (ngx_http_llm_jskim_next(&k) == NGX_HTTP_LLM_JSKIM_MEMBER) {

        if (n < 0
            && ngx_http_llm_json_key_equals((u_char *) k.key, k.key_len,
                                            &count_key))
        {
            n = ngx_http_llm_json_count((u_char *) k.value,
                                        k.value_end - k.value);
            if (n >= 1000000000) {
                n = -1;
            }

        } else if (tokens < 0
                   && ngx_http_llm_json_key_equals((u_char *) k.key,
                                                   k.key_len, &tokens_key))
        {
            n_tokens = ngx_http_llm_text_array_len(k.value,
                                                   k.value_end - k.value);
            tokens = (n_tokens >= 0) ? (ngx_int_t) n_tokens : -1;
        }
    }

    return (n >= 0) ? n : tokens;
}


/* a name the engine also reads as max_tokens, NULL: none */

ngx_str_t *
ngx_http_llm_engine_max_tokens_extra(ngx_uint_t engine)
{
    ngx_http_llm_engine_t  *e;

    e = ngx_http_llm_engine_get(engine);

    return (e && e->max_tokens_extra.len) ? &e->max_tokens_extra : NULL;
}
