
/*
 * ngx_llm_router: shared declarations.
 */


#ifndef _NGX_HTTP_LLM_ROUTER_H_INCLUDED_
#define _NGX_HTTP_LLM_ROUTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_edit.h"


#define NGX_HTTP_LLM_ENGINE_NONE     0
#define NGX_HTTP_LLM_ENGINE_VLLM     1
#define NGX_HTTP_LLM_ENGINE_LLAMACPP 2
#define NGX_HTTP_LLM_ENGINE_SGLANG   3
#define NGX_HTTP_LLM_ENGINE_TGI      4
#define NGX_HTTP_LLM_ENGINE_OLLAMA   5
#define NGX_HTTP_LLM_ENGINE_OPENAI   6

/* engine profile rules (llm_engine) */
#define NGX_HTTP_LLM_PROFILE_MAX_TOKENS      0x01
#define NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS  0x02
#define NGX_HTTP_LLM_PROFILE_N               0x04
#define NGX_HTTP_LLM_PROFILE_CACHE_PROMPT    0x08

/* max_context auto: learned from the engine */
#define NGX_HTTP_LLM_CONTEXT_AUTO    ((ngx_uint_t) -1)

#define NGX_HTTP_LLM_BALANCE_RR         0
#define NGX_HTTP_LLM_BALANCE_LEAST_CONN 1
#define NGX_HTTP_LLM_BALANCE_LEAST_LOAD 2
#define NGX_HTTP_LLM_BALANCE_RANDOM_TWO 3
#define NGX_HTTP_LLM_BALANCE_SESSION    4
#define NGX_HTTP_LLM_BALANCE_PREFIX     5

#define NGX_HTTP_LLM_NAME_LEN        64
#define NGX_HTTP_LLM_MODEL_LEN       128
#define NGX_HTTP_LLM_ERROR_LEN       64
#define NGX_HTTP_LLM_ZONE_VERSION    7

/* histogram buckets, in milliseconds (+Inf is the count) */
#define NGX_HTTP_LLM_DURATION_BUCKETS  12
#define NGX_HTTP_LLM_TTFT_BUCKETS      11
#define NGX_HTTP_LLM_METRICS_MAX     (1024 * 1024)


#define NGX_HTTP_LLM_RULE_SET        1
#define NGX_HTTP_LLM_RULE_CLAMP      2
#define NGX_HTTP_LLM_RULE_DROP       3


typedef struct {
    ngx_uint_t                     op;
    ngx_str_t                      field;
    ngx_str_t                      value;      /* JSON text (set, clamp) */
    ngx_str_t                      member;     /* set: "field":value */
    ngx_str_t                      alias;      /* the field's other name */
    ngx_str_t                      engine_member;  /* "max_tokens":value */
    double                         limit;      /* clamp */
} ngx_http_llm_rule_t;


typedef struct ngx_http_llm_model_stats_s  ngx_http_llm_model_stats_t;


#define NGX_HTTP_LLM_HOOK_REQUEST    0
#define NGX_HTTP_LLM_HOOK_RESPONSE   1
#define NGX_HTTP_LLM_HOOK_CHUNK      2
#define NGX_HTTP_LLM_HOOK_DONE       3


/* a Lua hook file, read and compiled at configuration time */
typedef struct {
    ngx_str_t                      file;
    ngx_str_t                      text;
    ngx_uint_t                     index;      /* in the state's registry */
    unsigned                       has_request:1;
    unsigned                       has_response:1;
    unsigned                       has_chunk:1;
    unsigned                       has_done:1;
} ngx_http_llm_hook_t;


typedef struct {
    ngx_str_t                      name;
    ngx_uint_t                     glob;       /* name has '*' or '?' */
    ngx_int_t                      stream_usage;   /* unset: location's */
    ngx_http_llm_model_stats_t    *stats;      /* in the zone, if any */
    ngx_http_llm_hook_t           *hook;
    ngx_uint_t                     max_context;    /* 0: not set */
    ngx_uint_t                     bytes_per_token;
    ngx_uint_t                     default_max_tokens;
    ngx_flag_t                     tokenize;
    ngx_uint_t                     tokenize_margin;    /* percent */
    ngx_msec_t                     tokenize_timeout;
    struct ngx_http_llm_route_s   *route;
    ngx_array_t                   *variants;  /* first block: routes */
    ngx_str_t                      upstream_name;
    ngx_http_upstream_srv_conf_t  *upstream;
    ngx_str_t                      target;     /* plain, empty if unset */
    ngx_str_t                      target_json;
    ngx_array_t                    rules;      /* ngx_http_llm_rule_t */
    ngx_str_t                      fallback;
    struct ngx_http_llm_route_s   *fallback_route;
    ngx_str_t                      file;
    ngx_uint_t                     line;
} ngx_http_llm_model_t;


typedef struct {
    ngx_str_t                      name;
    ngx_str_t                      model;
    ngx_str_t                      file;
    ngx_uint_t                     line;
} ngx_http_llm_alias_t;


/* what a name resolves to: a model and the name to send upstream */
typedef struct ngx_http_llm_route_s {
    ngx_http_llm_model_t          *model;
    ngx_str_t                      send;       /* plain, empty: unchanged */
    ngx_str_t                      send_json;  /* quoted JSON string */
} ngx_http_llm_route_t;


typedef struct ngx_http_llm_peer_state_s  ngx_http_llm_peer_state_t;


/* the llm_* settings of an upstream{} block */
typedef struct {
    ngx_uint_t                     engine;
    ngx_uint_t                     profile;    /* NGX_HTTP_LLM_PROFILE_* */
    ngx_uint_t                     balance;
    unsigned                       balance_set:1;
    unsigned                       dispatch:1;      /* llm_dispatch */
    ngx_http_complex_value_t      *session_key;     /* session */
    size_t                         prefix_length;   /* prefix */
    double                         factor;          /* load bound */
    ngx_array_t                   *ring;    /* of balance.c's points */
    ngx_msec_t                     check_interval;   /* 0: no checks */
    ngx_msec_t                     check_timeout;
    ngx_uint_t                     fall;
    ngx_uint_t                     rise;
    ngx_str_t                      check_uri;
    ngx_str_t                      check_request;    /* the whole request */
    ngx_uint_t                     check_status;     /* 0: any 2xx */
    ngx_msec_t                     scrape_interval;  /* 0: no scraping */
    ngx_msec_t                     limits_interval;  /* 0: not learned */
    ngx_str_t                      limits_request;
    ngx_str_t                      scrape_uri;
    ngx_str_t                      scrape_request;
    const char                    *metrics[4];  /* running, waiting, kv */
    ngx_http_upstream_srv_conf_t  *upstream;
    /* under the peer wrapper: round robin, nginx's or llm_balance's */
    ngx_http_upstream_init_pt      original_init_upstream;
    ngx_http_upstream_init_peer_pt original_init_peer;
    ngx_http_llm_peer_state_t    **slots;     /* a zone slot per peer */
    ngx_uint_t                     npeers;
    u_char                        *config_down;     /* "down" as configured */
    ngx_str_t                      file;
    ngx_uint_t                     line;
} ngx_http_llm_srv_conf_t;


/* who runs a peer's next check or scrape, and when */
typedef struct {
    ngx_msec_t                     next;        /* ngx_current_msec */
    ngx_msec_t                     started;
    ngx_pid_t                      owner;       /* 0: none running */
} ngx_http_llm_claim_t;


/* a peer's state in the shared zone, seen by every worker */
struct ngx_http_llm_peer_state_s {
    ngx_queue_t                    queue;       /* of all slots */
    u_char                         upstream[NGX_HTTP_LLM_NAME_LEN];
    u_char                         name[NGX_HTTP_LLM_NAME_LEN];

    ngx_atomic_t                   in_flight;
    ngx_atomic_t                   scrape_in_flight;  /* at the scrape */
    ngx_atomic_t                   failed;      /* tries that failed */

    /* health */
    ngx_uint_t                     down;
    ngx_uint_t                     fails;       /* consecutive */
    ngx_uint_t                     successes;   /* consecutive */
    ngx_uint_t                     checks;
    ngx_msec_t                     latency;
    time_t                         last_check;  /* 0: never */
    ngx_uint_t                     last_check_ms;
    ngx_http_llm_claim_t           check;
    u_char                         error[NGX_HTTP_LLM_ERROR_LEN];

    /* engine metrics */
    double                         running;
    double                         waiting;
    double                         kv_cache;    /* 0..1 */
    unsigned                       has_running:1;
    unsigned                       has_waiting:1;
    unsigned                       has_kv_cache:1;
    unsigned                       bad_logged:1;
    ngx_uint_t                     scrapes;
    ngx_uint_t                     bad_lines;
    ngx_msec_t                     scraped;     /* ngx_current_msec */
    time_t                         last_scrape; /* 0: never */
    ngx_uint_t                     last_scrape_ms;
    ngx_http_llm_claim_t           scrape;
    u_char                         scrape_error[NGX_HTTP_LLM_ERROR_LEN];

    /* the context size the engine reports (max_context auto) */
    ngx_uint_t                     max_context;     /* 0: not known */
    ngx_http_llm_claim_t           limits;
};


/* the counters of a model and its upstream, in the shared zone */
struct ngx_http_llm_model_stats_s {
    ngx_queue_t                    queue;
    u_char                         model[NGX_HTTP_LLM_MODEL_LEN];
    u_char                         upstream[NGX_HTTP_LLM_NAME_LEN];

    ngx_atomic_t                   requests[5];  /* 1xx .. 5xx */
    ngx_atomic_t                   in_flight;
    ngx_atomic_t                   prompt_tokens;
    ngx_atomic_t                   completion_tokens;
    ngx_atomic_t                   stream_aborts;
    ngx_atomic_t                   stream_failures;

    /* per bucket, not cumulative; the last one is past every bound */
    ngx_atomic_t                   duration[NGX_HTTP_LLM_DURATION_BUCKETS
                                            + 1];
    ngx_atomic_t                   duration_sum;   /* ms */
    ngx_atomic_t                   ttft[NGX_HTTP_LLM_TTFT_BUCKETS + 1];
    ngx_atomic_t                   ttft_sum;       /* ms */
};


typedef struct {
    ngx_uint_t                     version;
    ngx_uint_t                     nslots;
    ngx_queue_t                    slots;       /* peer states, by name */
    ngx_queue_t                    models;      /* model stats, by name */
} ngx_http_llm_shctx_t;


typedef struct {
    ngx_array_t                    models;     /* ngx_http_llm_model_t */
    ngx_array_t                    aliases;    /* ngx_http_llm_alias_t */
    ngx_hash_t                     names;      /* exact and alias routes */
    ngx_array_t                    globs;      /* ngx_http_llm_route_t */
    ngx_http_llm_route_t          *default_route;
    ngx_str_t                      models_json;
    ngx_array_t                    hooks;      /* ngx_http_llm_hook_t * */
    ngx_uint_t                     metrics_line;   /* llm_router_metrics */
    ngx_str_t                      metrics_file;
    ngx_array_t                    upstreams;  /* ngx_http_llm_srv_conf_t * */
    ngx_shm_zone_t                *shm_zone;
    ngx_slab_pool_t               *shpool;
    ngx_http_llm_shctx_t          *sh;
    ngx_pool_t                    *pool;       /* the configuration's */
} ngx_http_llm_main_conf_t;


typedef struct {
    ngx_flag_t                     enable;
    ngx_flag_t                     stream_usage;
    ngx_flag_t                     restore_model;
    ngx_http_llm_hook_t           *hook;
    ngx_uint_t                     hook_instructions;
    ngx_msec_t                     hook_time;
    size_t                         hook_memory;
    size_t                         hook_state;     /* the whole state */
    ngx_flag_t                     hook_on_error;  /* 1: pass */
    size_t                         response_buffer_size;   /* JSON held */
    size_t                         event_max_size;     /* SSE event held */
} ngx_http_llm_loc_conf_t;



typedef struct {
    ngx_str_t                      code;
    ngx_str_t                      type;
    ngx_str_t                      message;
    ngx_str_t                      param;
} ngx_http_llm_error_t;


typedef struct ngx_http_llm_response_s  ngx_http_llm_response_t;


typedef struct {
    ngx_int_t                      status;     /* phase handler result */
    ngx_str_t                      model;      /* as asked */
    ngx_str_t                      model_json; /* as written: "..." */
    ngx_str_t                      target;     /* as sent */
    ngx_str_t                      upstream;
    ngx_int_t                      stream;     /* -1: absent */
    ngx_http_llm_route_t          *route;
    ngx_str_t                      session;    /* the body's "user" */
    ngx_str_t                      peer;       /* the address chosen */
    uint32_t                       prefix_hash;
    unsigned                       has_prefix:1;
    ngx_http_llm_error_t           error;
    ngx_buf_t                     *error_body; /* replaces an nginx page */

    /* the response (ngx_http_llm_response.c) */
    ngx_http_llm_response_t       *response;   /* filter state, if needed */
    ngx_int_t                      prompt_tokens;      /* -1: unknown */
    ngx_int_t                      completion_tokens;
    ngx_int_t                      total_tokens;
    ngx_int_t                      ttft;       /* ms; -1: unknown */
    ngx_int_t                      events;     /* SSE data events */
    ngx_int_t                      estimated_tokens;   /* -1: none */
    ngx_int_t                      exact_tokens;   /* /tokenize, -1: none */

    ngx_http_llm_jscan_t          *body_scan;  /* for the first hook call */
    ngx_uint_t                     hook_status;    /* rejected: status */
    ngx_str_t                      hook_route;     /* llm.route() */
    int                            lua_state_ref;  /* ctx.state, 0: none */
    ngx_pool_t                    *event_pool; /* a chunk hook's new text */

    unsigned                       routed:1;
    unsigned                       tokenized:1;    /* /tokenize was asked */
    unsigned                       hook_changed:1;
    unsigned                       counted:1;  /* in the model's in_flight */
    unsigned                       logged:1;   /* in the model's counters */
    unsigned                       strip_usage:1;  /* usage not asked for */
    unsigned                       sse:1;
    unsigned                       stream_done:1;  /* [DONE] or the end */
    unsigned                       stream_failed:2;  /* 2: timeout */
    unsigned                       stream_aborted:1;
} ngx_http_llm_ctx_t;


/* the module object (ngx_http_llm_module.c), for every file's conf */
extern ngx_module_t  ngx_http_llm_router_module;






#endif /* _NGX_HTTP_LLM_ROUTER_H_INCLUDED_ */
