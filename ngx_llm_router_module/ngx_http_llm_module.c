
/*
 * ngx_llm_router: the module object, its directives in the core's order,
 * create/merge conf, postconfiguration, the process hooks.
 * Not here: any directive's handler, any helper other files call.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_conf.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_models.h"
#include "ngx_http_llm_status.h"
#include "ngx_http_llm_metrics.h"
#include "ngx_http_llm_prometheus.h"
#include "ngx_http_llm_balance.h"
#include "ngx_http_llm_body.h"
#include "ngx_http_llm_check.h"
#include "ngx_http_llm_dispatch.h"
#include "ngx_http_llm_hook_conf.h"
#include "ngx_http_llm_lua_api.h"
#include "ngx_http_llm_response.h"
#include "ngx_http_llm_upstream.h"
#include "ngx_http_llm_variables.h"
#include "ngx_http_llm_zone.h"


static ngx_int_t ngx_http_llm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_llm_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_llm_init_process(ngx_cycle_t *cycle);
static void ngx_http_llm_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_llm_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_llm_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_llm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_llm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);


static ngx_conf_enum_t  ngx_http_llm_hook_on_error[] = {
    { ngx_string("fail"), 0 },
    { ngx_string("pass"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_llm_buffer_size_post = {
    ngx_http_llm_check_buffer_size
};


static ngx_command_t  ngx_http_llm_commands[] = {

    /* http{}: the models, their names, the shared zone */

    { ngx_string("llm_router_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_llm_router_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_llm_model_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_alias"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_llm_alias,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* http{}, server{}, location{}: routing, responses and hooks */

    { ngx_string("llm_router"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, enable),
      NULL },

    { ngx_string("llm_stream_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, stream_usage),
      NULL },

    { ngx_string("llm_restore_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, restore_model),
      NULL },

    { ngx_string("llm_response_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, response_buffer_size),
      &ngx_http_llm_buffer_size_post },

    { ngx_string("llm_event_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, event_max_size),
      &ngx_http_llm_buffer_size_post },

    { ngx_string("llm_hook"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llm_hook_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_hook_limits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_llm_hook_limits,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_hook_on_error"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, hook_on_error),
      &ngx_http_llm_hook_on_error },

    /* location{}: the router's own content handlers */

    { ngx_string("llm_models"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llm_models,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_router_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llm_router_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_router_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llm_router_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* upstream{}: the engines, their checks and scrapes, the balancer */

    { ngx_string("llm_engine"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE12,
      ngx_http_llm_engine_directive,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_llm_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_scrape"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_llm_scrape,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_TAKE123,
      ngx_http_llm_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      &ngx_http_llm_upstream_post },

    { ngx_string("llm_dispatch"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS,
      ngx_http_llm_dispatch,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_llm_router_module_ctx = {
    ngx_http_llm_preconfiguration,         /* preconfiguration */
    ngx_http_llm_postconfiguration,        /* postconfiguration */

    ngx_http_llm_create_main_conf,         /* create main configuration */
    ngx_http_llm_init_main_conf,           /* init main configuration */

    ngx_http_llm_create_srv_conf,          /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_llm_create_loc_conf,          /* create location configuration */
    ngx_http_llm_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_llm_router_module = {
    NGX_MODULE_V1,
    &ngx_http_llm_router_module_ctx,       /* module context */
    ngx_http_llm_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_llm_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_llm_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_llm_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_llm_add_variables(cf);
}


static ngx_int_t
ngx_http_llm_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_http_llm_lua_check_runtime(cf->log) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_check_upstream_hooks(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_llm_router_handler;

    if (ngx_http_llm_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_error_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_response_filter_init(cf);
}


static ngx_int_t
ngx_http_llm_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_llm_hook_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_check_init_process(cycle);
}


static void
ngx_http_llm_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_llm_hook_exit_process(cycle);
}


static void *
ngx_http_llm_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->models, cf->pool, 8,
                       sizeof(ngx_http_llm_model_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->aliases, cf->pool, 4,
                       sizeof(ngx_http_llm_alias_t))
        != NGX_OK)
    {
        return NULL;
    }

    lmcf->pool = cf->pool;

    if (ngx_array_init(&lmcf->hooks, cf->pool, 4,
                       sizeof(ngx_http_llm_hook_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_llm_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static char *
ngx_http_llm_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_llm_main_conf_t *lmcf = conf;

    if (ngx_http_llm_init_routes(cf, lmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_build_models_json(cf, lmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_init_upstreams(cf, lmcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_llm_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_loc_conf_t));
    if (llcf == NULL) {
        return NULL;
    }

    llcf->enable = NGX_CONF_UNSET;
    llcf->stream_usage = NGX_CONF_UNSET;
    llcf->restore_model = NGX_CONF_UNSET;
    llcf->hook = NGX_CONF_UNSET_PTR;
    llcf->hook_instructions = NGX_CONF_UNSET_UINT;
    llcf->hook_time = NGX_CONF_UNSET_MSEC;
    llcf->hook_memory = NGX_CONF_UNSET_SIZE;
    llcf->hook_state = NGX_CONF_UNSET_SIZE;
    llcf->hook_on_error = NGX_CONF_UNSET;
    llcf->response_buffer_size = NGX_CONF_UNSET_SIZE;
    llcf->event_max_size = NGX_CONF_UNSET_SIZE;

    return llcf;
}


static char *
ngx_http_llm_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_llm_loc_conf_t *prev = parent;
    ngx_http_llm_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->stream_usage, prev->stream_usage, 0);
    ngx_conf_merge_value(conf->restore_model, prev->restore_model, 1);
    ngx_conf_merge_ptr_value(conf->hook, prev->hook, NULL);
    ngx_conf_merge_uint_value(conf->hook_instructions,
                              prev->hook_instructions, 1000000);
    ngx_conf_merge_msec_value(conf->hook_time, prev->hook_time, 50);
    ngx_conf_merge_size_value(conf->hook_memory, prev->hook_memory,
                              32 * 1024 * 1024);
    ngx_conf_merge_size_value(conf->hook_state, prev->hook_state,
                              256 * 1024 * 1024);
    ngx_conf_merge_value(conf->hook_on_error, prev->hook_on_error, 0);
    ngx_conf_merge_size_value(conf->response_buffer_size,
                              prev->response_buffer_size, 1024 * 1024);
    ngx_conf_merge_size_value(conf->event_max_size, prev->event_max_size,
                              32 * 1024);

    return NGX_CONF_OK;
}
