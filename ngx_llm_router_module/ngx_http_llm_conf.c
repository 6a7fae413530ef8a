
/*
 * ngx_llm_router: llm_model (its sub-directives' table) and llm_alias, and
 * the route tables built from them.  Not here: routing a request (route.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_conf.h"
#include "ngx_http_llm_json.h"
#include "ngx_http_llm_hook_conf.h"
#include "ngx_http_llm_route.h"


static ngx_int_t ngx_http_llm_model_init(ngx_conf_t *cf,
    ngx_http_llm_model_t *model, ngx_str_t *name);
static char *ngx_http_llm_model_variant(ngx_conf_t *cf,
    ngx_http_llm_model_t *first, ngx_http_llm_model_t *model);
static char *ngx_http_llm_model_directive(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static ngx_uint_t ngx_http_llm_model_args(ngx_uint_t type, ngx_uint_t n);
static char *ngx_http_llm_model_str(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_target(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_stream_usage(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_llm_model_number(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_tokenize(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_hook_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_clamp(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_llm_model_drop(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_http_llm_rule_t *ngx_http_llm_model_rules(ngx_conf_t *cf,
    ngx_http_llm_model_t *model, ngx_uint_t op, ngx_uint_t last);
static void ngx_http_llm_rule_alias(ngx_str_t *field, ngx_str_t *alias);
static char *ngx_http_llm_rule_taken(ngx_conf_t *cf,
    ngx_http_llm_model_t *model, ngx_uint_t op, ngx_str_t *field,
    ngx_str_t *alias);
static ngx_int_t ngx_http_llm_rule_member(ngx_conf_t *cf, ngx_str_t *member,
    ngx_str_t *field, ngx_str_t *value);
static ngx_int_t ngx_http_llm_init_model(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf, ngx_uint_t i, ngx_hash_keys_arrays_t *ha);
static ngx_int_t ngx_http_llm_init_names(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf, ngx_hash_keys_arrays_t *ha);
static ngx_int_t ngx_http_llm_resolve_upstream(ngx_conf_t *cf,
    ngx_http_llm_model_t *model);
static ngx_int_t ngx_http_llm_add_variant(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf, ngx_uint_t i, ngx_http_llm_route_t *route);
static ngx_http_llm_route_t *ngx_http_llm_make_route(ngx_conf_t *cf,
    ngx_http_llm_model_t *model, ngx_str_t *send);
static ngx_http_llm_model_t *ngx_http_llm_match_model(
    ngx_http_llm_main_conf_t *lmcf, ngx_str_t *name);
static ngx_int_t ngx_http_llm_init_aliases(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf, ngx_hash_keys_arrays_t *ha);
static ngx_int_t ngx_http_llm_init_globs(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);
static ngx_int_t ngx_http_llm_init_fallbacks(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);


static ngx_str_t  ngx_http_llm_default_name = ngx_string("default");
static ngx_str_t  ngx_http_llm_no_name = ngx_null_string;
static ngx_str_t  ngx_http_llm_max_tokens = ngx_string("max_tokens");


/*
 * The directives of an llm_model block, looked up by
 * ngx_http_llm_model_directive(), the block's cf->handler, as
 * ngx_conf_handler() looks up a module's: each gets its argument count
 * checked, then the model.
 */

static ngx_command_t  ngx_http_llm_model_commands[] = {

    { ngx_string("upstream"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_str,
      0,
      offsetof(ngx_http_llm_model_t, upstream_name),
      NULL },

    { ngx_string("target"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_target,
      0,
      0,
      NULL },

    { ngx_string("fallback"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_str,
      0,
      offsetof(ngx_http_llm_model_t, fallback),
      NULL },

    { ngx_string("stream_usage"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_stream_usage,
      0,
      0,
      NULL },

    { ngx_string("max_context"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_number,
      0,
      offsetof(ngx_http_llm_model_t, max_context),
      NULL },

    { ngx_string("bytes_per_token"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_number,
      0,
      offsetof(ngx_http_llm_model_t, bytes_per_token),
      NULL },

    { ngx_string("default_max_tokens"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_number,
      0,
      offsetof(ngx_http_llm_model_t, default_max_tokens),
      NULL },

    { ngx_string("tokenize"),
      NGX_CONF_ANY,         /* its own message for any count */
      ngx_http_llm_model_tokenize,
      0,
      0,
      NULL },

    { ngx_string("hook"),
      NGX_CONF_TAKE1,
      ngx_http_llm_model_hook_slot,
      0,
      0,
      NULL },

    { ngx_string("set"),
      NGX_CONF_TAKE2,
      ngx_http_llm_model_set,
      0,
      0,
      NULL },

    { ngx_string("clamp"),
      NGX_CONF_TAKE2,
      ngx_http_llm_model_clamp,
      0,
      0,
      NULL },

    { ngx_string("drop"),
      NGX_CONF_1MORE,
      ngx_http_llm_model_drop,
      0,
      0,
      NULL },

      ngx_null_command
};


/* the first of the models [0, before) named name, or NGX_CONF_UNSET_UINT */

ngx_uint_t
ngx_http_llm_first_model(ngx_http_llm_main_conf_t *lmcf, ngx_str_t *name,
    ngx_uint_t before)
{
    ngx_uint_t             i;
    ngx_http_llm_model_t  *models;

    models = lmcf->models.elts;

    for (i = 0; i < before && i < lmcf->models.nelts; i++) {
        if (models[i].name.len == name->len
            && ngx_strncmp(models[i].name.data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    return NGX_CONF_UNSET_UINT;
}


char *
ngx_http_llm_model_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t *lmcf = conf;

    char                  *rv;
    ngx_str_t             *value;
    ngx_uint_t             n, first;
    ngx_conf_t             save;
    ngx_http_llm_model_t  *model, *models;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty model name";
    }

    /* a block of the same name again is a variant, checked below */

    n = lmcf->models.nelts;
    first = ngx_http_llm_first_model(lmcf, &value[1], n);

    model = ngx_array_push(&lmcf->models);
    if (model == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_model_init(cf, model, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    save = *cf;
    cf->handler = ngx_http_llm_model_directive;
    cf->handler_conf = (void *) model;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    models = lmcf->models.elts;     /* it may have moved */
    model = &models[n];

    if (model->upstream_name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"upstream\" in llm_model \"%V\"",
                           &model->name);
        return NGX_CONF_ERROR;
    }

    if (first != NGX_CONF_UNSET_UINT) {
        return ngx_http_llm_model_variant(cf, &models[first], model);
    }

    return NGX_CONF_OK;
}


/* a new llm_model block's model: nothing set yet */

static ngx_int_t
ngx_http_llm_model_init(ngx_conf_t *cf, ngx_http_llm_model_t *model,
    ngx_str_t *name)
{
    ngx_memzero(model, sizeof(ngx_http_llm_model_t));

    model->name = *name;
    model->stream_usage = NGX_CONF_UNSET;
    model->bytes_per_token = NGX_CONF_UNSET_UINT;
    model->tokenize = NGX_CONF_UNSET;
    model->tokenize_margin = 10;
    model->tokenize_timeout = 300;
    model->default_max_tokens = NGX_CONF_UNSET_UINT;
    model->glob = ngx_strlchr(name->data, name->data + name->len, '*') != NULL
                  || ngx_strlchr(name->data, name->data + name->len, '?')
                     != NULL;
    model->file = cf->conf_file->file.name;
    model->line = cf->conf_file->line;

    return ngx_array_init(&model->rules, cf->pool, 4,
                          sizeof(ngx_http_llm_rule_t));
}


/* a later block of the name of the first: a variant of it */

static char *
ngx_http_llm_model_variant(ngx_conf_t *cf, ngx_http_llm_model_t *first,
    ngx_http_llm_model_t *model)
{
    /* cf->args is the last directive's now: the name is model's */

    if (model->glob
        || (model->name.len == 7
            && ngx_strncmp(model->name.data, "default", 7) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate llm_model \"%V\", first declared "
                           "in %V:%ui (only blocks of one exact name "
                           "can be variants)",
                           &model->name, &first->file, first->line);
        return NGX_CONF_ERROR;
    }

    /* a variant without max_context learns it from its engines */

    if (first->max_context == 0) {
        first->max_context = NGX_HTTP_LLM_CONTEXT_AUTO;
    }

    if (model->max_context == 0) {
        model->max_context = NGX_HTTP_LLM_CONTEXT_AUTO;
    }

    return NGX_CONF_OK;
}


/* the block's cf->handler: a directive looked up in the table above */

static char *
ngx_http_llm_model_directive(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    ngx_http_llm_model_t  *model = conf;

    ngx_str_t      *value;
    ngx_command_t  *cmd;

    value = cf->args->elts;

    for (cmd = ngx_http_llm_model_commands; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strncmp(cmd->name.data, value[0].data, value[0].len) != 0)
        {
            continue;
        }

        if (!ngx_http_llm_model_args(cmd->type, cf->args->nelts - 1)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "directive of llm_model \"%V\"", &value[0],
                               &model->name);
            return NGX_CONF_ERROR;
        }

        return cmd->set(cf, cmd, model);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in llm_model \"%V\"",
                       &value[0], &model->name);
    return NGX_CONF_ERROR;
}


/* n arguments suit a directive of this type (as in ngx_conf_handler()) */

static ngx_uint_t
ngx_http_llm_model_args(ngx_uint_t type, ngx_uint_t n)
{
    static const ngx_uint_t  takes[] = {
        NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE2, NGX_CONF_TAKE3
    };

    if (type & NGX_CONF_ANY) {
        return 1;
    }

    if (type & NGX_CONF_1MORE) {
        return n >= 1;
    }

    return n < sizeof(takes) / sizeof(takes[0]) && (type & takes[n]);
}


/* upstream NAME; fallback NAME */

static char *
ngx_http_llm_model_str(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t  *field, *value;

    field = (ngx_str_t *) (p + cmd->offset);
    value = cf->args->elts;

    if (field->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive is duplicate", &value[0]);
        return NGX_CONF_ERROR;
    }

    *field = value[1];

    return NGX_CONF_OK;
}


/* target NAME: the name the engine gets */

static char *
ngx_http_llm_model_target(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_model_t  *model = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (model->target.len) {
        return "\"target\" directive is duplicate";
    }

    if (value[1].len == 0) {
        return "\"target\" has an empty name";
    }

    model->target = value[1];

    if (ngx_http_llm_json_quote(cf->pool, &model->target, &model->target_json)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* stream_usage on | off: the location's llm_stream_usage for this model */

static char *
ngx_http_llm_model_stream_usage(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_llm_model_t  *model = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (model->stream_usage != NGX_CONF_UNSET) {
        return "\"stream_usage\" directive is duplicate";
    }

    if (ngx_strcmp(value[1].data, "on") == 0) {
        model->stream_usage = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        model->stream_usage = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"stream_usage\" "
                           "of llm_model \"%V\", it must be \"on\" or "
                           "\"off\"", &value[1], &model->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* max_context N | auto; bytes_per_token N; default_max_tokens N (or 0) */

static char *
ngx_http_llm_model_number(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_model_t  *model = conf;

    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_uint_t  *field;

    field = (ngx_uint_t *) ((char *) model + cmd->offset);
    value = cf->args->elts;

    if (*field != 0 && *field != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive is duplicate", &value[0]);
        return NGX_CONF_ERROR;
    }

    if (field == &model->max_context && value[1].len == 4
        && ngx_strncmp(value[1].data, "auto", 4) == 0)
    {
        *field = NGX_HTTP_LLM_CONTEXT_AUTO;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || (n == 0 && field != &model->default_max_tokens)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" of llm_model "
                           "\"%V\"", &value[1], &value[0], &model->name);
        return NGX_CONF_ERROR;
    }

    *field = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


/* tokenize on | off [margin=N%] [timeout=T] */

static char *
ngx_http_llm_model_tokenize(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_model_t  *model = conf;

    ngx_int_t    n;
    ngx_str_t   *value, v;
    ngx_uint_t   i;
    ngx_msec_t   ms;

    value = cf->args->elts;

    if (model->tokenize != NGX_CONF_UNSET) {
        return "\"tokenize\" directive is duplicate";
    }

    if (cf->args->nelts < 2) {
        goto invalid;
    }

    if (ngx_strcmp(value[1].data, "on") == 0) {
        model->tokenize = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        model->tokenize = 0;

    } else {
        goto invalid;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "margin=", 7) == 0) {
            v.data = value[i].data + 7;
            v.len = value[i].len - 7;

            if (v.len && v.data[v.len - 1] == '%') {
                v.len--;
            }

            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n > 100) {
                goto invalid;
            }

            model->tokenize_margin = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            ms = ngx_parse_time(&v, 0);
            if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
                goto invalid;
            }

            model->tokenize_timeout = ms;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid \"tokenize\" in llm_model \"%V\": use "
                       "tokenize on|off [margin=N%%] [timeout=T]",
                       &model->name);
    return NGX_CONF_ERROR;
}


/* hook FILE: read by the hook's own code (ngx_http_llm_hook.c) */

static char *
ngx_http_llm_model_hook_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_llm_model_hook(cf, conf);
}


/*
 * set FIELD JSON; clamp FIELD NUMBER; drop FIELD [FIELD ...]
 *
 * max_tokens and max_completion_tokens are one field, under two names: a
 * rule on one holds the other (ngx_http_llm_plan_rule()), so a second rule
 * on it is refused, but for a drop of both names.
 */

static char *
ngx_http_llm_model_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    cJSON                *json;
    ngx_int_t             rc;
    ngx_str_t            *value;
    ngx_http_llm_rule_t  *rule;

    value = cf->args->elts;

    rule = ngx_http_llm_model_rules(cf, conf, NGX_HTTP_LLM_RULE_SET, 2);
    if (rule == NULL || rule == NGX_CONF_ERROR) {
        return NGX_CONF_ERROR;
    }

    json = cJSON_ParseWithLength((const char *) value[2].data, value[2].len);
    if (json == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"set\" value \"%V\" is not valid JSON "
                           "(quote strings: '\"text\"')", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* sent in canonical form: nginx unescapes "\n" in quoted words */

    rc = ngx_http_llm_json_print(cf->pool, json, &rule->value);
    cJSON_Delete(json);

    if (rc != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the member a request without the field gets, built once */

    if (ngx_http_llm_rule_member(cf, &rule->member, &rule->field,
                                 &rule->value)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* an engine that reads max_tokens only gets it under that name */

    if (rule->alias.len == ngx_http_llm_max_tokens.len
        && ngx_http_llm_rule_member(cf, &rule->engine_member,
                                    &ngx_http_llm_max_tokens, &rule->value)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_llm_model_clamp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t            *value;
    ngx_http_llm_rule_t  *rule;

    value = cf->args->elts;

    rule = ngx_http_llm_model_rules(cf, conf, NGX_HTTP_LLM_RULE_CLAMP, 2);
    if (rule == NULL || rule == NGX_CONF_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_json_number(value[2].data, value[2].len, &rule->limit)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"clamp\" limit \"%V\" is not a number",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    rule->value = value[2];

    return NGX_CONF_OK;
}


static char *
ngx_http_llm_model_drop(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_rule_t  *rule;

    rule = ngx_http_llm_model_rules(cf, conf, NGX_HTTP_LLM_RULE_DROP,
                                    cf->args->nelts);

    return (rule == NGX_CONF_ERROR) ? NGX_CONF_ERROR : NGX_CONF_OK;
}


/*
 * A rule of op on each field of value[1 .. last): the last rule added, NULL
 * if none was (a drop under the field's other name already), or
 * NGX_CONF_ERROR.
 */

static ngx_http_llm_rule_t *
ngx_http_llm_model_rules(ngx_conf_t *cf, ngx_http_llm_model_t *model,
    ngx_uint_t op, ngx_uint_t last)
{
    char                 *rv;
    ngx_str_t            *value, alias;
    ngx_uint_t            i;
    ngx_http_llm_rule_t  *rule;

    value = cf->args->elts;
    rule = NULL;

    for (i = 1; i < last; i++) {

        if (value[i].len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" has an empty field name", &value[0]);
            return NGX_CONF_ERROR;
        }

        if (value[i].len == 5 && ngx_strncmp(value[i].data, "model", 5) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" cannot change \"model\", "
                               "use \"target\"", &value[0]);
            return NGX_CONF_ERROR;
        }

        ngx_http_llm_rule_alias(&value[i], &alias);

        rv = ngx_http_llm_rule_taken(cf, model, op, &value[i], &alias);

        if (rv == NGX_CONF_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (rv != NGX_CONF_OK) {
            continue;       /* dropped already, under its other name */
        }

        rule = ngx_array_push(&model->rules);
        if (rule == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(rule, sizeof(ngx_http_llm_rule_t));

        rule->op = op;
        rule->field = value[i];
        rule->alias = alias;
    }

    return rule;
}


/* the other name of max_tokens and max_completion_tokens, else empty */

static void
ngx_http_llm_rule_alias(ngx_str_t *field, ngx_str_t *alias)
{
    static ngx_str_t  mct = ngx_string("max_completion_tokens");

    ngx_str_null(alias);

    if (field->len == ngx_http_llm_max_tokens.len
        && ngx_strncmp(field->data, ngx_http_llm_max_tokens.data,
                       field->len) == 0)
    {
        *alias = mct;

    } else if (field->len == mct.len
               && ngx_strncmp(field->data, mct.data, mct.len) == 0)
    {
        *alias = ngx_http_llm_max_tokens;
    }
}


/*
 * NGX_CONF_OK: the field has no rule yet, under either name; "" (not an
 * error): a drop of a field dropped already under its other name;
 * NGX_CONF_ERROR: it has one, logged.
 */

static char *
ngx_http_llm_rule_taken(ngx_conf_t *cf, ngx_http_llm_model_t *model,
    ngx_uint_t op, ngx_str_t *field, ngx_str_t *alias)
{
    ngx_uint_t            j;
    ngx_http_llm_rule_t  *rules;

    rules = model->rules.elts;

    for (j = 0; j < model->rules.nelts; j++) {
        if (rules[j].field.len == field->len
            && ngx_strncmp(rules[j].field.data, field->data, field->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "field \"%V\" already has a rule in "
                               "llm_model \"%V\"", field, &model->name);
            return NGX_CONF_ERROR;
        }

        if (alias->len == 0
            || rules[j].field.len != alias->len
            || ngx_strncmp(rules[j].field.data, alias->data, alias->len) != 0)
        {
            continue;
        }

        if (op == NGX_HTTP_LLM_RULE_DROP
            && rules[j].op == NGX_HTTP_LLM_RULE_DROP)
        {
            return "";
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "field \"%V\" already has a rule in "
                           "llm_model \"%V\" (as \"%V\": they are one "
                           "field)", field, &model->name, alias);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "field":value, built once */

static ngx_int_t
ngx_http_llm_rule_member(ngx_conf_t *cf, ngx_str_t *member, ngx_str_t *field,
    ngx_str_t *value)
{
    member->len = field->len + value->len + 3;
    member->data = ngx_pnalloc(cf->pool, member->len);

    if (member->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(member->data, "\"%V\":%V", field, value);

    return NGX_OK;
}


char *
ngx_http_llm_alias(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t *lmcf = conf;

    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_http_llm_alias_t  *alias, *aliases;

    value = cf->args->elts;

    if (value[1].len == 0 || value[2].len == 0) {
        return "has an empty name";
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '*')
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '?'))
    {
        return "cannot be a glob";
    }

    aliases = lmcf->aliases.elts;

    for (i = 0; i < lmcf->aliases.nelts; i++) {
        if (aliases[i].name.len == value[1].len
            && ngx_strncmp(aliases[i].name.data, value[1].data,
                           value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate llm_alias \"%V\", first declared "
                               "in %V:%ui", &value[1], &aliases[i].file,
                               aliases[i].line);
            return NGX_CONF_ERROR;
        }
    }

    alias = ngx_array_push(&lmcf->aliases);
    if (alias == NULL) {
        return NGX_CONF_ERROR;
    }

    alias->name = value[1];
    alias->model = value[2];
    alias->file = cf->conf_file->file.name;
    alias->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* called once the whole http{} block is parsed */

ngx_int_t
ngx_http_llm_init_routes(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t               i;
    ngx_hash_keys_arrays_t   ha;

    ngx_memzero(&ha, sizeof(ngx_hash_keys_arrays_t));

    ha.temp_pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, cf->log);
    if (ha.temp_pool == NULL) {
        return NGX_ERROR;
    }

    ha.pool = cf->pool;

    if (ngx_hash_keys_array_init(&ha, NGX_HASH_SMALL) != NGX_OK) {
        goto failed;
    }

    for (i = 0; i < lmcf->models.nelts; i++) {
        if (ngx_http_llm_init_model(cf, lmcf, i, &ha) != NGX_OK) {
            goto failed;
        }
    }

    if (ngx_http_llm_init_globs(cf, lmcf) != NGX_OK) {
        goto failed;
    }

    if (ngx_http_llm_init_aliases(cf, lmcf, &ha) != NGX_OK) {
        goto failed;
    }

    if (ngx_http_llm_init_names(cf, lmcf, &ha) != NGX_OK) {
        goto failed;
    }

    ngx_destroy_pool(ha.temp_pool);

    return ngx_http_llm_init_fallbacks(cf, lmcf);

failed:

    ngx_destroy_pool(ha.temp_pool);

    return NGX_ERROR;
}


/* model i: its upstream, its route, its name among the names */

static ngx_int_t
ngx_http_llm_init_model(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf,
    ngx_uint_t i, ngx_hash_keys_arrays_t *ha)
{
    ngx_int_t              rc;
    ngx_http_llm_route_t  *route;
    ngx_http_llm_model_t  *model;

    model = &((ngx_http_llm_model_t *) lmcf->models.elts)[i];

    /* the zone keys a model's counters by its name: whole names only */

    if (model->name.len >= NGX_HTTP_LLM_MODEL_LEN) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "llm_model name \"%V\" is longer than %d bytes, "
                      "in %V:%ui", &model->name,
                      NGX_HTTP_LLM_MODEL_LEN - 1, &model->file,
                      model->line);
        return NGX_ERROR;
    }

    if (ngx_http_llm_resolve_upstream(cf, model) != NGX_OK) {
        return NGX_ERROR;
    }

    if (model->glob) {
        return NGX_OK;
    }

    route = ngx_http_llm_make_route(cf, model, &model->target);
    if (route == NULL) {
        return NGX_ERROR;
    }

    model->route = route;

    if (model->max_context) {
        rc = ngx_http_llm_add_variant(cf, lmcf, i, route);

        if (rc != NGX_OK) {
            /* NGX_DONE: a later variant, found through the first */
            return (rc == NGX_DONE) ? NGX_OK : NGX_ERROR;
        }
    }

    if (model->name.len == ngx_http_llm_default_name.len
        && ngx_strncmp(model->name.data, "default", 7) == 0)
    {
        lmcf->default_route = route;
    }

    return ngx_hash_add_key(ha, &model->name, route, NGX_HASH_READONLY_KEY);
}


/* the hash of exact names and aliases */

static ngx_int_t
ngx_http_llm_init_names(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf,
    ngx_hash_keys_arrays_t *ha)
{
    ngx_hash_init_t  hinit;

    hinit.hash = &lmcf->names;
    hinit.key = ngx_hash_key;
    hinit.max_size = 8192;
    /* a bucket holds a name of NGX_HTTP_LLM_MODEL_LEN - 1 bytes */
    hinit.bucket_size = ngx_align(2 * NGX_HTTP_LLM_MODEL_LEN,
                                  ngx_cacheline_size);
    hinit.name = "llm_model_names_hash";
    hinit.pool = cf->pool;
    hinit.temp_pool = NULL;

    return ngx_hash_init(&hinit, ha->keys.elts, ha->keys.nelts);
}


static ngx_int_t
ngx_http_llm_resolve_upstream(ngx_conf_t *cf, ngx_http_llm_model_t *model)
{
    ngx_uint_t                      i;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        /* only explicit upstream{} blocks: never an implicit host */

        if (!(uscfp[i]->flags & NGX_HTTP_UPSTREAM_CREATE)
            || uscfp[i]->host.len != model->upstream_name.len
            || ngx_strncasecmp(uscfp[i]->host.data, model->upstream_name.data,
                               model->upstream_name.len) != 0)
        {
            continue;
        }

        model->upstream = uscfp[i];
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "llm_model \"%V\" names upstream \"%V\", which is not an "
                  "upstream{} block, in %V:%ui", &model->name,
                  &model->upstream_name, &model->file, model->line);

    return NGX_ERROR;
}


/*
 * Variants: every block of a name with max_context joins the list of the
 * first one, in declaration order.  NGX_DONE: a later variant, which the
 * name does not lead to directly.
 */

static ngx_int_t
ngx_http_llm_add_variant(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf,
    ngx_uint_t i, ngx_http_llm_route_t *route)
{
    ngx_uint_t              k;
    ngx_http_llm_model_t   *models, *first;
    ngx_http_llm_route_t  **v;

    models = lmcf->models.elts;
    k = ngx_http_llm_first_model(lmcf, &models[i].name, i);
    first = (k == NGX_CONF_UNSET_UINT) ? &models[i] : &models[k];

    if (first->variants == NULL) {
        first->variants = ngx_array_create(cf->pool, 2,
                                           sizeof(ngx_http_llm_route_t *));
        if (first->variants == NULL) {
            return NGX_ERROR;
        }
    }

    v = ngx_array_push(first->variants);
    if (v == NULL) {
        return NGX_ERROR;
    }

    *v = route;

    return (first == &models[i]) ? NGX_OK : NGX_DONE;
}


static ngx_http_llm_route_t *
ngx_http_llm_make_route(ngx_conf_t *cf, ngx_http_llm_model_t *model,
    ngx_str_t *send)
{
    ngx_http_llm_route_t  *route;

    route = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_route_t));
    if (route == NULL) {
        return NULL;
    }

    route->model = model;

    if (send->len) {
        route->send = *send;

        if (ngx_http_llm_json_quote(cf->pool, send, &route->send_json)
            != NGX_OK)
        {
            return NULL;
        }
    }

    return route;
}


/* globs sorted by pattern length, longest first, declaration order kept */

static ngx_int_t
ngx_http_llm_init_globs(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t             i, j;
    ngx_http_llm_route_t  *route, *routes, tmp;
    ngx_http_llm_model_t  *models;

    if (ngx_array_init(&lmcf->globs, cf->pool, 4,
                       sizeof(ngx_http_llm_route_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {
        if (!models[i].glob) {
            continue;
        }

        route = ngx_array_push(&lmcf->globs);
        if (route == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(route, sizeof(ngx_http_llm_route_t));
        route->model = &models[i];
        route->send = models[i].target;
        route->send_json = models[i].target_json;
    }

    routes = lmcf->globs.elts;

    for (i = 1; i < lmcf->globs.nelts; i++) {
        tmp = routes[i];

        for (j = i;
             j > 0 && routes[j - 1].model->name.len < tmp.model->name.len;
             j--)
        {
            routes[j] = routes[j - 1];
        }

        routes[j] = tmp;
    }

    return NGX_OK;
}


/* the model a name routes to, by exact name, longest glob, then default */

static ngx_http_llm_model_t *
ngx_http_llm_match_model(ngx_http_llm_main_conf_t *lmcf, ngx_str_t *name)
{
    ngx_uint_t             i;
    ngx_http_llm_route_t  *globs;
    ngx_http_llm_model_t  *models;

    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {
        if (!models[i].glob
            && models[i].name.len == name->len
            && ngx_strncmp(models[i].name.data, name->data, name->len) == 0)
        {
            return &models[i];
        }
    }

    globs = lmcf->globs.elts;

    for (i = 0; i < lmcf->globs.nelts; i++) {
        if (ngx_http_llm_glob_match(&globs[i].model->name, name)) {
            return globs[i].model;
        }
    }

    return lmcf->default_route ? lmcf->default_route->model : NULL;
}


static ngx_int_t
ngx_http_llm_init_aliases(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf,
    ngx_hash_keys_arrays_t *ha)
{
    ngx_int_t              rc;
    ngx_str_t             *send;
    ngx_uint_t             i;
    ngx_http_llm_alias_t  *aliases;
    ngx_http_llm_model_t  *model;
    ngx_http_llm_route_t  *route;

    aliases = lmcf->aliases.elts;

    for (i = 0; i < lmcf->aliases.nelts; i++) {

        model = ngx_http_llm_match_model(lmcf, &aliases[i].model);

        if (model == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "llm_alias \"%V\" points to \"%V\", which matches "
                          "no llm_model, in %V:%ui", &aliases[i].name,
                          &aliases[i].model, &aliases[i].file,
                          aliases[i].line);
            return NGX_ERROR;
        }

        /* the engine gets the model's target, else the name aliased to */

        send = model->target.len ? &model->target : &aliases[i].model;

        route = ngx_http_llm_make_route(cf, model, send);
        if (route == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_hash_add_key(ha, &aliases[i].name, route,
                              NGX_HASH_READONLY_KEY);

        if (rc == NGX_BUSY) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "llm_alias \"%V\" is also an llm_model name, "
                          "in %V:%ui", &aliases[i].name, &aliases[i].file,
                          aliases[i].line);
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A fallback names another model (or an alias, or a name a glob matches);
 * the engine behind it gets that model's target, else the fallback name.
 * Chains are followed at request time, so a loop is refused here.
 */

static ngx_int_t
ngx_http_llm_init_fallbacks(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf)
{
    ngx_uint_t             i, n;
    ngx_str_t             *send;
    ngx_http_llm_route_t  *route;
    ngx_http_llm_model_t  *models, *model, *m;

    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {
        model = &models[i];

        if (model->fallback.len == 0) {
            continue;
        }

        route = ngx_hash_find(&lmcf->names,
                              ngx_hash_key(model->fallback.data,
                                           model->fallback.len),
                              model->fallback.data, model->fallback.len);

        m = route ? route->model : ngx_http_llm_match_model(lmcf,
                                                            &model->fallback);

        if (m == NULL
            || (route == NULL && lmcf->default_route
                && m == lmcf->default_route->model))
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "fallback \"%V\" of llm_model \"%V\" matches no "
                          "llm_model, in %V:%ui", &model->fallback,
                          &model->name, &model->file, model->line);
            return NGX_ERROR;
        }

        /* the default model without a target passes the name on as is */

        send = m->target.len ? &m->target
               : (route && route->send.len) ? &route->send
               : (lmcf->default_route && m == lmcf->default_route->model)
                 ? &ngx_http_llm_no_name
               : &model->fallback;

        model->fallback_route = ngx_http_llm_make_route(cf, m, send);
        if (model->fallback_route == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < lmcf->models.nelts; i++) {
        m = &models[i];

        for (n = 0; m->fallback_route; n++) {
            m = m->fallback_route->model;

            if (m == &models[i] || n > lmcf->models.nelts) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "the fallbacks of llm_model \"%V\" make a "
                              "loop, in %V:%ui", &models[i].name,
                              &models[i].file, models[i].line);
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}
