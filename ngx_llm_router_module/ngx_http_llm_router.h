
/*
 * ngx_llm_router: shared declarations.
 */


#ifndef _NGX_HTTP_LLM_ROUTER_H_INCLUDED_
#define _NGX_HTTP_LLM_ROUTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_jscan.h"


#define NGX_HTTP_LLM_RULE_SET        1
#define NGX_HTTP_LLM_RULE_CLAMP      2
#define NGX_HTTP_LLM_RULE_DROP       3


typedef struct {
    ngx_uint_t                     op;
    ngx_str_t                      field;
    ngx_str_t                      value;      /* JSON text (set, clamp) */
    double                         limit;      /* clamp */
} ngx_http_llm_rule_t;


typedef struct {
    ngx_str_t                      name;
    ngx_uint_t                     glob;       /* name has '*' or '?' */
    ngx_str_t                      upstream_name;
    ngx_http_upstream_srv_conf_t  *upstream;
    ngx_str_t                      target;     /* plain, empty if unset */
    ngx_str_t                      target_json;
    ngx_array_t                    rules;      /* ngx_http_llm_rule_t */
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
typedef struct {
    ngx_http_llm_model_t          *model;
    ngx_str_t                      send;       /* plain, empty: unchanged */
    ngx_str_t                      send_json;  /* quoted JSON string */
} ngx_http_llm_route_t;


typedef struct {
    ngx_array_t                    models;     /* ngx_http_llm_model_t */
    ngx_array_t                    aliases;    /* ngx_http_llm_alias_t */
    ngx_hash_t                     names;      /* exact and alias routes */
    ngx_array_t                    globs;      /* ngx_http_llm_route_t */
    ngx_http_llm_route_t          *default_route;
    ngx_str_t                      models_json;
    ngx_uint_t                     enabled;    /* some location routes */
} ngx_http_llm_main_conf_t;


typedef struct {
    ngx_flag_t                     enable;
} ngx_http_llm_loc_conf_t;


/* a replacement of the body's bytes [start, end) by data */
typedef struct {
    off_t                          start;
    off_t                          end;
    ngx_str_t                      data;
} ngx_http_llm_edit_t;



typedef struct {
    ngx_str_t                      code;
    ngx_str_t                      type;
    ngx_str_t                      message;
    ngx_str_t                      param;
} ngx_http_llm_error_t;


typedef struct {
    ngx_int_t                      status;     /* phase handler result */
    ngx_str_t                      model;      /* as asked */
    ngx_str_t                      target;     /* as sent */
    ngx_str_t                      upstream;
    ngx_int_t                      stream;     /* -1: absent */
    ngx_http_llm_route_t          *route;
    ngx_http_llm_error_t           error;
    ngx_buf_t                     *error_body; /* replaces an nginx page */
    unsigned                       routed:1;
} ngx_http_llm_ctx_t;


/* module */
extern ngx_module_t  ngx_http_llm_router_module;

ngx_http_llm_ctx_t *ngx_http_llm_find_ctx(ngx_http_request_t *r);
ngx_http_llm_ctx_t *ngx_http_llm_get_ctx(ngx_http_request_t *r);

/* configuration (ngx_http_llm_conf.c) */
char *ngx_http_llm_model_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_alias(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_llm_init_routes(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);

/* routing (ngx_http_llm_route.c) */
ngx_http_llm_route_t *ngx_http_llm_find_route(ngx_http_llm_main_conf_t *lmcf,
    ngx_str_t *name);
ngx_uint_t ngx_http_llm_glob_match(ngx_str_t *pattern, ngx_str_t *name);

/* JSON (ngx_http_llm_json.c) */
ngx_uint_t ngx_http_llm_json_key_equals(u_char *p, size_t len,
    ngx_str_t *name);
ngx_int_t ngx_http_llm_json_string_value(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_json_quote(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_http_llm_json_number(u_char *p, size_t len, double *out);

/* request body (ngx_http_llm_body.c) */
ngx_int_t ngx_http_llm_router_handler(ngx_http_request_t *r);

/* errors (ngx_http_llm_error.c) */
void ngx_http_llm_set_error(ngx_http_llm_ctx_t *ctx, const char *code,
    const char *type, const char *param, ngx_str_t *message);
ngx_int_t ngx_http_llm_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_llm_ctx_t *ctx);
ngx_int_t ngx_http_llm_error_filter_init(ngx_conf_t *cf);

/* endpoints (ngx_http_llm_models.c) */
char *ngx_http_llm_models(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_llm_build_models_json(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);

/* variables (ngx_http_llm_variables.c) */
ngx_int_t ngx_http_llm_add_variables(ngx_conf_t *cf);

/* Lua runtime (ngx_http_llm_lua.c) */
ngx_int_t ngx_http_llm_lua_check_runtime(ngx_log_t *log);


#endif /* _NGX_HTTP_LLM_ROUTER_H_INCLUDED_ */
