
/*
 * ngx_llm_router: a body's edits planned (rules, profile, hook) and applied.
 * Not here: the edit list itself (edit.c, pure), rejections (body.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_body_buf.h"
#include "ngx_http_llm_plan.h"
#include "ngx_http_llm_edit.h"
#include "ngx_http_llm_engine.h"
#include "ngx_http_llm_jscan.h"
#include "ngx_http_llm_json.h"


/* an edited body up to a page long is copied into one buffer */
#define NGX_HTTP_LLM_FLAT_BODY  4096


/* what the steps of ngx_http_llm_plan_edits() hand on */
typedef struct {
    u_char                        *found;    /* rule i's field was given */
    ngx_uint_t                     kept;     /* members the drops left */
    size_t                         len;      /* of the insertion */
    ngx_str_t                      usage;    /* llm_stream_usage's member */
    ngx_str_t                      profile;  /* the engine profile's */
} ngx_http_llm_plan_t;


/* where the edited body goes: one buffer, or buffers linked */
typedef struct {
    u_char                *pos;
    u_char                *end;
    ngx_buf_t             *b;
    ngx_chain_t           *cl;
    ngx_chain_t           *last;
} ngx_http_llm_edit_out_t;


static ngx_int_t ngx_http_llm_plan_fields(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_srv_conf_t *lscf,
    ngx_http_llm_edits_t *edits, ngx_http_llm_plan_t *plan, ngx_str_t **bad);
static ngx_int_t ngx_http_llm_plan_insert(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_edits_t *edits,
    ngx_http_llm_plan_t *plan);
static ngx_int_t ngx_http_llm_plan_rule(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_rule_t *rule, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits, ngx_uint_t *found,
    ngx_str_t **bad);
static ngx_int_t ngx_http_llm_plan_stream_usage(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_edits_t *edits,
    ngx_str_t *insert);
static ngx_uint_t ngx_http_llm_stream_options_owned(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_member_t *m, ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_plan_profile(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_uint_t profile, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits, ngx_str_t *insert);
static ngx_int_t ngx_http_llm_profile_max_tokens(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_profile_n(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits);
static ngx_int_t ngx_http_llm_plan_drops(ngx_http_request_t *r,
    ngx_http_llm_jscan_t *scan, u_char *dropped, ngx_http_llm_edits_t *edits,
    ngx_uint_t *kept);
static ngx_int_t ngx_http_llm_add_edit(ngx_http_request_t *r,
    ngx_http_llm_edits_t *edits, off_t start, off_t end, ngx_str_t *data);
static ngx_int_t ngx_http_llm_apply_flat(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_edits_t *edits, off_t size);
static ngx_int_t ngx_http_llm_apply_links(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_edits_t *edits, off_t size);
static ngx_int_t ngx_http_llm_apply_walk(ngx_http_llm_body_t *body,
    ngx_http_llm_edits_walk_t *walk, off_t size);
static int ngx_http_llm_edit_copy(void *arg, const u_char *p, size_t len);
static int ngx_http_llm_edit_link(void *arg, const u_char *p, size_t len);
static ngx_int_t ngx_http_llm_scan_member(ngx_http_llm_jscan_member_t *m,
    ngx_http_llm_edits_t *edits, off_t *at, ngx_http_llm_jscan_t *out);
static ngx_int_t ngx_http_llm_scan_inserted(ngx_http_llm_edits_t *edits,
    off_t *at, ngx_http_llm_jscan_t *out);


static ngx_str_t  ngx_http_llm_key_stream_options =
    ngx_string("stream_options");


/*
 * The edits of the body for its route: the model's name, the model's
 * rules, then the engine's profile, the drops, and llm_stream_usage last:
 * each leaves alone what the ones before it took, and an edit overlapping
 * another cannot be added anyway.  The members to add go in one insertion
 * before the closing brace.  NGX_DECLINED: a field a rule clamps is not a
 * number (*bad names it), a 400 for the caller.
 */

ngx_int_t
ngx_http_llm_plan_edits(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_jscan_member_t *model, ngx_http_llm_edits_t *edits,
    ngx_str_t **bad)
{
    ngx_int_t                 status;
    ngx_http_llm_plan_t       plan;
    ngx_http_llm_route_t     *route;
    ngx_http_llm_srv_conf_t  *lscf;

    route = ctx->route;

    /* model: NULL after a hook, which set the model it wants */

    if (model && route->send_json.len
        && (ctx->model.len != route->send.len
            || ngx_strncmp(ctx->model.data, route->send.data,
                           route->send.len) != 0))
    {
        if (ngx_http_llm_add_edit(r, edits, model->value, model->value_end,
                                  &route->send_json)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    plan.found = NULL;
    plan.kept = scan->nmembers;
    plan.len = 0;
    ngx_str_null(&plan.profile);

    lscf = ngx_http_conf_upstream_srv_conf(route->model->upstream,
                                           ngx_http_llm_router_module);

    if (route->model->rules.nelts || lscf->profile) {
        status = ngx_http_llm_plan_fields(r, ctx, body, scan, lscf, edits,
                                          &plan, bad);
        if (status != NGX_OK) {
            return status;
        }
    }

    status = ngx_http_llm_plan_stream_usage(r, ctx, body, scan, edits,
                                            &plan.usage);
    if (status != NGX_OK) {
        return status;
    }

    if (plan.usage.len) {
        plan.len += plan.usage.len + 1;
    }

    if (plan.profile.len) {
        plan.len += plan.profile.len + 1;
    }

    if (plan.len == 0) {
        return NGX_OK;
    }

    return ngx_http_llm_plan_insert(r, ctx, scan, lscf, edits, &plan);
}


/*
 * The model's rules, the engine's profile and the drops they ask for.
 * dropped[k]: 1 dropped; touched[k]: a rule changed member k.
 */

static ngx_int_t
ngx_http_llm_plan_fields(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_srv_conf_t *lscf, ngx_http_llm_edits_t *edits,
    ngx_http_llm_plan_t *plan, ngx_str_t **bad)
{
    u_char                *dropped, *touched;
    ngx_int_t              status;
    ngx_uint_t             i, given;
    ngx_http_llm_rule_t   *rule;
    ngx_http_llm_model_t  *model;

    model = ctx->route->model;
    rule = model->rules.elts;

    dropped = ngx_pcalloc(r->pool, 2 * (scan->nmembers + 1));
    plan->found = ngx_pcalloc(r->pool, model->rules.nelts + 1);

    if (dropped == NULL || plan->found == NULL) {
        return NGX_ERROR;
    }

    touched = dropped + scan->nmembers + 1;

    for (i = 0; i < model->rules.nelts; i++) {
        status = ngx_http_llm_plan_rule(r, ctx, body, scan, &rule[i],
                                        dropped, touched, edits, &given, bad);
        if (status != NGX_OK) {
            return status;
        }

        plan->found[i] = (u_char) given;

        if (rule[i].op == NGX_HTTP_LLM_RULE_SET && !given) {
            plan->len += rule[i].member.len + 1;
        }
    }

    if (lscf->profile) {
        status = ngx_http_llm_plan_profile(r, ctx, body, scan, lscf->profile,
                                           dropped, touched, edits,
                                           &plan->profile);
        if (status != NGX_OK) {
            return status;
        }
    }

    return ngx_http_llm_plan_drops(r, scan, dropped, edits, &plan->kept);
}


/* defaults go before the closing brace: ,"field":value ... */

static ngx_int_t
ngx_http_llm_plan_insert(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_srv_conf_t *lscf,
    ngx_http_llm_edits_t *edits, ngx_http_llm_plan_t *plan)
{
    u_char                *p;
    ngx_str_t              insert, *member;
    ngx_uint_t             i;
    ngx_http_llm_rule_t   *rule;
    ngx_http_llm_model_t  *model;

    model = ctx->route->model;
    rule = model->rules.elts;

    p = ngx_pnalloc(r->pool, plan->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    insert.data = p;

    for (i = 0; plan->found && i < model->rules.nelts; i++) {
        if (rule[i].op != NGX_HTTP_LLM_RULE_SET || plan->found[i]) {
            continue;
        }

        if (plan->kept || p != insert.data) {
            *p++ = ',';
        }

        /* the name the engine reads: its profile's max_tokens */

        member = (rule[i].engine_member.len
                  && (lscf->profile & NGX_HTTP_LLM_PROFILE_MAX_TOKENS))
                 ? &rule[i].engine_member : &rule[i].member;

        p = ngx_cpymem(p, member->data, member->len);
    }

    if (plan->usage.len) {
        if (plan->kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, plan->usage.data, plan->usage.len);
    }

    if (plan->profile.len) {
        if (plan->kept || p != insert.data) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, plan->profile.data, plan->profile.len);
    }

    insert.len = p - insert.data;

    return ngx_http_llm_add_edit(r, edits, scan->obj_end - 1,
                                 scan->obj_end - 1, &insert);
}


/*
 * One rule on its field.  max_tokens and max_completion_tokens are one
 * field (an engine reads either, vLLM the second first), so a rule on one
 * holds the other too: both are clamped or dropped, and a default is set
 * only when neither is given.  llama.cpp reads its own n_predict before
 * either: a third name there.  *given: the client sent the field, under
 * any of its names, null or not.
 */

static ngx_int_t
ngx_http_llm_plan_rule(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_rule_t *rule, u_char *dropped, u_char *touched,
    ngx_http_llm_edits_t *edits, ngx_uint_t *given, ngx_str_t **bad)
{
    double                        number;
    ngx_int_t                     k[3];
    ngx_str_t                     raw, *name, *extra;
    ngx_uint_t                    j, count, set, replace;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_jscan_member_t  *m;

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    k[0] = ngx_http_llm_find_member(body, scan, &rule->field, &count);
    k[1] = rule->alias.len
           ? ngx_http_llm_find_member(body, scan, &rule->alias, &count)
           : NGX_DECLINED;
    extra = rule->alias.len
            ? ngx_http_llm_engine_max_tokens_extra(lscf->engine) : NULL;
    k[2] = extra ? ngx_http_llm_find_member(body, scan, extra, &count)
                 : NGX_DECLINED;

    *given = (k[0] >= 0 || k[1] >= 0 || k[2] >= 0);

    /* set: the client's nulls are replaced when it gave no value */

    set = 1;

    for (j = 0; j < 3; j++) {
        if (k[j] >= 0 && scan->members[k[j]].type != NGX_HTTP_LLM_JSON_NULL)
        {
            set = 0;
        }
    }

    for (j = 0; j < 3; j++) {

        if (k[j] < 0) {
            continue;
        }

        m = &scan->members[k[j]];
        name = (j == 0) ? &rule->field : (j == 1) ? &rule->alias : extra;

        replace = 0;

        switch (rule->op) {

        case NGX_HTTP_LLM_RULE_SET:
            replace = set;
            break;

        case NGX_HTTP_LLM_RULE_CLAMP:
            if (m->type == NGX_HTTP_LLM_JSON_NULL) {
                break;
            }

            if (m->type != NGX_HTTP_LLM_JSON_NUMBER
                || ngx_http_llm_body_range(r, body, m->value, m->value_end,
                                           &raw)
                   != NGX_OK
                || ngx_http_llm_json_number(raw.data, raw.len, &number)
                   != NGX_OK)
            {
                *bad = name;        /* "the field ... must be a number" */
                return NGX_DECLINED;
            }

            /* a negative max_tokens is no limit to llama.cpp and Ollama */

            replace = (number > rule->limit || (rule->alias.len && number < 0));
            break;

        default: /* NGX_HTTP_LLM_RULE_DROP */
            dropped[k[j]] = 1;
            break;
        }

        if (!replace) {
            continue;
        }

        touched[k[j]] = 1;

        if (ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
                                  &rule->value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * llm_stream_usage: a streamed request that does not ask for usage gets
 * "stream_options":{"include_usage":true}, and the response filter drops
 * the usage event the client did not ask for.  An existing stream_options
 * object is rewritten; one of another type is left to the engine, and so
 * is one a model's rule or the engine's profile owns.
 */

static ngx_int_t
ngx_http_llm_plan_stream_usage(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_str_t *insert)
{
    ngx_int_t                     i, rc;
    ngx_str_t                     raw, value;
    ngx_uint_t                    count, on;
    ngx_http_llm_loc_conf_t      *llcf;
    ngx_http_llm_srv_conf_t      *lscf;
    ngx_http_llm_jscan_member_t  *m;

    ngx_str_null(insert);

    if (ctx->stream != 1) {
        return NGX_OK;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_router_module);

    on = (ctx->route->model->stream_usage == NGX_CONF_UNSET)
         ? (ngx_uint_t) llcf->stream_usage
         : (ngx_uint_t) ctx->route->model->stream_usage;

    lscf = ngx_http_conf_upstream_srv_conf(ctx->route->model->upstream,
                                           ngx_http_llm_router_module);

    if (!on || (lscf->profile & NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS)) {
        return NGX_OK;      /* an engine that refuses stream_options */
    }

    i = ngx_http_llm_find_member(body, scan, &ngx_http_llm_key_stream_options,
                                 &count);

    if (ngx_http_llm_stream_options_owned(ctx, i >= 0 ? &scan->members[i]
                                                      : NULL, edits))
    {
        return NGX_OK;
    }

    if (i < 0) {
        ngx_str_set(insert, "\"stream_options\":{\"include_usage\":true}");
        ctx->strip_usage = 1;
        return NGX_OK;
    }

    m = &scan->members[i];

    if (count > 1) {
        return NGX_OK;
    }

    if (m->type == NGX_HTTP_LLM_JSON_NULL) {
        ngx_str_set(&value, "{\"include_usage\":true}");
        ctx->strip_usage = 1;
        return ngx_http_llm_add_edit(r, edits, m->value, m->value_end,
                                     &value);
    }

    if (m->type != NGX_HTTP_LLM_JSON_OBJECT) {
        return NGX_OK;
    }

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_llm_json_include_usage(r->pool, &raw, &value);
    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
    }

    ctx->strip_usage = 1;

    return ngx_http_llm_add_edit(r, edits, m->value, m->value_end, &value);
}


/* a model's rule on stream_options, or an edit of the member, owns it */

static ngx_uint_t
ngx_http_llm_stream_options_owned(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_jscan_member_t *m, ngx_http_llm_edits_t *edits)
{
    ngx_uint_t            i;
    ngx_http_llm_rule_t  *rule;

    rule = ctx->route->model->rules.elts;

    for (i = 0; i < ctx->route->model->rules.nelts; i++) {
        if (rule[i].field.len == ngx_http_llm_key_stream_options.len
            && ngx_memcmp(rule[i].field.data,
                          ngx_http_llm_key_stream_options.data,
                          rule[i].field.len) == 0)
        {
            return 1;
        }
    }

    return m && ngx_http_llm_edits_covered(edits, m->key - 1, m->value_end);
}


/*
 * The engine's dialect (llm_engine; a rule is left out with skip=):
 *   max_tokens      max_completion_tokens is renamed max_tokens (dropped
 *                   when both are there, but for a null max_tokens, which
 *                   gives way to it): llama.cpp, TGI, Ollama;
 *   stream_options  removed: TGI;
 *   n               above 1 becomes 1: TGI makes one choice;
 *   cache_prompt    "cache_prompt":true unless the client set it: llama.cpp.
 * Members a model's rules changed or dropped are left alone, but for the
 * rename of a max_completion_tokens a rule clamped: its key alone changes.
 */

static ngx_int_t
ngx_http_llm_plan_profile(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan,
    ngx_uint_t profile, u_char *dropped, u_char *touched,
    ngx_http_llm_edits_t *edits, ngx_str_t *insert)
{
    ngx_int_t   k;
    ngx_uint_t  count;

    static ngx_str_t  so = ngx_string("stream_options");
    static ngx_str_t  cp = ngx_string("cache_prompt");

    if ((profile & NGX_HTTP_LLM_PROFILE_MAX_TOKENS)
        && ngx_http_llm_profile_max_tokens(r, body, scan, dropped, touched,
                                           edits)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (profile & NGX_HTTP_LLM_PROFILE_STREAM_OPTIONS) {
        k = ngx_http_llm_find_member(body, scan, &so, &count);

        if (k >= 0 && !touched[k]) {
            dropped[k] = 1;
        }
    }

    if ((profile & NGX_HTTP_LLM_PROFILE_N)
        && ngx_http_llm_profile_n(r, body, scan, dropped, touched, edits)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (profile & NGX_HTTP_LLM_PROFILE_CACHE_PROMPT) {
        k = ngx_http_llm_find_member(body, scan, &cp, &count);

        if (k < 0) {
            ngx_str_set(insert, "\"cache_prompt\":true");
        }
    }

    return NGX_OK;
}


/* max_completion_tokens renamed max_tokens, or dropped for it */

static ngx_int_t
ngx_http_llm_profile_max_tokens(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan, u_char *dropped,
    u_char *touched, ngx_http_llm_edits_t *edits)
{
    ngx_int_t                     k, j;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  mct = ngx_string("max_completion_tokens");
    static ngx_str_t  mt = ngx_string("max_tokens");
    static ngx_str_t  mt_key = ngx_string("\"max_tokens\"");

    k = ngx_http_llm_find_member(body, scan, &mct, &count);
    j = ngx_http_llm_find_member(body, scan, &mt, &count);

    /*
     * a null max_tokens is no limit to the engine: with a value in
     * max_completion_tokens (clamped or not) that one is the limit
     */

    if (k >= 0 && !dropped[k] && j >= 0 && !dropped[j] && !touched[j]
        && scan->members[j].type == NGX_HTTP_LLM_JSON_NULL
        && scan->members[k].type != NGX_HTTP_LLM_JSON_NULL)
    {
        dropped[j] = 1;
        j = NGX_DECLINED;
    }

    if (k < 0 || dropped[k]) {
        return NGX_OK;
    }

    if (j >= 0) {
        if (!touched[k]) {
            dropped[k] = 1;
        }

        return NGX_OK;
    }

    m = &scan->members[k];
    touched[k] = 1;

    return ngx_http_llm_add_edit(r, edits, m->key - 1,
                                 m->key + m->key_len + 1, &mt_key);
}


/* "n" above 1 becomes 1 */

static ngx_int_t
ngx_http_llm_profile_n(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, u_char *dropped, u_char *touched,
    ngx_http_llm_edits_t *edits)
{
    double                        number;
    ngx_int_t                     k;
    ngx_str_t                     raw;
    ngx_uint_t                    count;
    ngx_http_llm_jscan_member_t  *m;

    static ngx_str_t  n = ngx_string("n");
    static ngx_str_t  one = ngx_string("1");

    k = ngx_http_llm_find_member(body, scan, &n, &count);

    if (k < 0 || dropped[k] || touched[k]
        || scan->members[k].type != NGX_HTTP_LLM_JSON_NUMBER)
    {
        return NGX_OK;
    }

    m = &scan->members[k];

    if (ngx_http_llm_body_range(r, body, m->value, m->value_end, &raw)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_llm_json_number(raw.data, raw.len, &number) != NGX_OK
        || number <= 1)
    {
        return NGX_OK;
    }

    touched[k] = 1;

    return ngx_http_llm_add_edit(r, edits, m->value, m->value_end, &one);
}


/* removes the dropped members with their commas (ngx_http_llm_edit.c) */

static ngx_int_t
ngx_http_llm_plan_drops(ngx_http_request_t *r, ngx_http_llm_jscan_t *scan,
    u_char *dropped, ngx_http_llm_edits_t *edits, ngx_uint_t *kept)
{
    int     rc;
    size_t  n;

    rc = ngx_http_llm_edits_drop(edits, scan->members, scan->nmembers,
                                 dropped, &n);
    *kept = n;

    if (rc == NGX_HTTP_LLM_EDIT_OK) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: a drop of a member is refused: %s",
                  (rc == NGX_HTTP_LLM_EDIT_OVERLAP) ? "it overlaps an edit"
                  : (rc == NGX_HTTP_LLM_EDIT_FULL) ? "too many edits"
                  : "an invalid range");

    return NGX_ERROR;
}


/*
 * An edit overlapping one planned before it is refused (ngx_http_llm_edit.c):
 * the planner leaves alone what an earlier step took, so this is a bug of
 * the router's, and the request fails rather than go out half edited.
 */

static ngx_int_t
ngx_http_llm_add_edit(ngx_http_request_t *r, ngx_http_llm_edits_t *edits,
    off_t start, off_t end, ngx_str_t *data)
{
    int  rc;

    rc = ngx_http_llm_edits_add(edits, start, end, data ? data->data : NULL,
                                data ? data->len : 0);

    if (rc == NGX_HTTP_LLM_EDIT_OK) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: an edit of the body's bytes %O-%O is refused: "
                  "%s", start, end,
                  (rc == NGX_HTTP_LLM_EDIT_OVERLAP) ? "it overlaps another"
                  : (rc == NGX_HTTP_LLM_EDIT_FULL) ? "too many edits"
                  : "an invalid range");

    return NGX_ERROR;
}


/*
 * Replaces the request body with the kept spans of its buffers and the
 * edited pieces between them.  A body of up to NGX_HTTP_LLM_FLAT_BODY
 * bytes is copied into one buffer: one short copy costs less than the proxy
 * handling a buffer per piece.  A larger one is linked uncopied.  The walk
 * of ngx_http_llm_edit.c writes what the list counts, and never past the
 * buffer or the links made for it.
 */

ngx_int_t
ngx_http_llm_apply_edits(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_edits_t *edits)
{
    off_t      size;
    ngx_int_t  rc;

    size = body->len + edits->delta;

    if (size < 0) {
        rc = NGX_DECLINED;

    } else if (size <= NGX_HTTP_LLM_FLAT_BODY) {
        rc = ngx_http_llm_apply_flat(r, body, edits, size);

    } else {
        rc = ngx_http_llm_apply_links(r, body, edits, size);
    }

    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "llm router: the edited body does not come to the %O "
                  "bytes planned", size);

    return NGX_ERROR;
}


/* the edited body copied into one buffer; NGX_DECLINED: not as planned */

static ngx_int_t
ngx_http_llm_apply_flat(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_edits_t *edits, off_t size)
{
    ngx_str_t                   doc;
    ngx_http_llm_edit_out_t     out;
    ngx_http_llm_edits_walk_t   walk;

    doc.data = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (doc.data == NULL) {
        return NGX_ERROR;
    }

    doc.len = (size_t) size;

    out.pos = doc.data;
    out.end = doc.data + size;

    ngx_http_llm_edits_walk_init(&walk, edits, ngx_http_llm_edit_copy, &out);

    if (ngx_http_llm_apply_walk(body, &walk, size) != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_http_llm_set_body(r, &doc);
}


/* the edited body linked, uncopied; NGX_DECLINED: not as planned */

static ngx_int_t
ngx_http_llm_apply_links(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_edits_t *edits, off_t size)
{
    ngx_uint_t                  n;
    ngx_chain_t                *src, *links;
    ngx_http_llm_edit_out_t     out;
    ngx_http_llm_edits_walk_t   walk;

    /* at most a piece of every buffer and an edit after each edit */

    n = 2 * edits->nelts + 1;

    for (src = body->bufs; src; src = src->next) {
        n++;
    }

    out.b = ngx_pcalloc(r->pool, n * sizeof(ngx_buf_t));
    links = ngx_palloc(r->pool, n * sizeof(ngx_chain_t));

    if (out.b == NULL || links == NULL) {
        return NGX_ERROR;
    }

    out.cl = links;
    out.last = links + n;

    ngx_http_llm_edits_walk_init(&walk, edits, ngx_http_llm_edit_link, &out);

    if (ngx_http_llm_apply_walk(body, &walk, size) != NGX_OK
        || out.cl == links)
    {
        return NGX_DECLINED;
    }

    out.cl[-1].next = NULL;
    out.cl[-1].buf->last_buf = 1;
    out.cl[-1].buf->last_in_chain = 1;

    r->request_body->bufs = links;

    return ngx_http_llm_body_length(r, size);
}


/* the walk over the body's buffers, to the size planned */

static ngx_int_t
ngx_http_llm_apply_walk(ngx_http_llm_body_t *body,
    ngx_http_llm_edits_walk_t *walk, off_t size)
{
    ngx_chain_t  *src;

    for (src = body->bufs; src; src = src->next) {
        if (ngx_http_llm_edits_walk_feed(walk, src->buf->pos,
                                         src->buf->last - src->buf->pos)
            != 0)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_llm_edits_walk_finish(walk) != 0 || walk->out != size) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static int
ngx_http_llm_edit_copy(void *arg, const u_char *p, size_t len)
{
    ngx_http_llm_edit_out_t  *out = arg;

    if (len > (size_t) (out->end - out->pos)) {
        return -1;
    }

    out->pos = ngx_cpymem(out->pos, p, len);

    return 0;
}


static int
ngx_http_llm_edit_link(void *arg, const u_char *p, size_t len)
{
    ngx_http_llm_edit_out_t  *out = arg;

    if (out->cl == out->last) {
        return -1;
    }

    /* the pieces are read, never written: the proxy sends them */

    ngx_http_llm_body_link(out->cl++, out->b++, (u_char *) p,
                           (u_char *) p + len);

    return 0;
}


/*
 * The top-level members of the body after the edits, from those of the
 * body before them: a member an edit covers from its key on was dropped, a
 * key an edit replaces whole (quotes and all) was renamed, a value an edit
 * replaces whole takes the edit's place and type, the rest move by the
 * lengths the edits before them changed, and the members an edit inserts
 * are skimmed from its text alone.  NGX_DECLINED for any other shape of
 * edit: the hook scans the body then.
 */

ngx_int_t
ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_http_llm_jscan_t *out)
{
    off_t                 shift, at[NGX_HTTP_LLM_MAX_EDITS];
    ngx_uint_t            i, k, n;
    ngx_http_llm_edit_t  *e;

    e = edits->elts;
    n = edits->nelts;

    if (n > NGX_HTTP_LLM_MAX_EDITS) {
        return NGX_DECLINED;
    }

    /* where each edit's text starts in the edited body */

    shift = 0;

    for (k = 0; k < n; k++) {
        at[k] = e[k].start + shift;
        shift += (off_t) e[k].len - (e[k].end - e[k].start);
    }

    out->nmembers = 0;
    out->obj_start = scan->obj_start;
    out->obj_end = scan->obj_end + shift;

    for (i = 0; i < scan->nmembers; i++) {
        if (ngx_http_llm_scan_member(&scan->members[i], edits, at, out)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }
    }

    return ngx_http_llm_scan_inserted(edits, at, out);
}


/* a member of the body before the edits: dropped, or where it went */

static ngx_int_t
ngx_http_llm_scan_member(ngx_http_llm_jscan_member_t *m,
    ngx_http_llm_edits_t *edits, off_t *at, ngx_http_llm_jscan_t *out)
{
    off_t                         shift;
    ngx_uint_t                    k, n, moved, renamed;
    ngx_http_llm_edit_t          *e;
    ngx_http_llm_jscan_member_t  *o;

    e = edits->elts;
    n = edits->nelts;
    shift = 0;
    moved = 0;
    renamed = 0;

    for (k = 0; k < n; k++) {
        if (e[k].start == m->key - 1
            && e[k].end == m->key + (off_t) m->key_len + 1
            && e[k].len >= 2)
        {
            renamed = k + 1;                        /* "new key" */
            continue;
        }

        if (e[k].start <= m->key - 1 && m->key - 1 < e[k].end) {
            return NGX_OK;                          /* dropped */
        }

        if (e[k].start == m->value && e[k].end == m->value_end) {
            moved = k + 1;                          /* replaced */
            continue;
        }

        if (e[k].end <= m->key - 1) {
            shift += (off_t) e[k].len - (e[k].end - e[k].start);
            continue;
        }

        if (e[k].start >= m->value_end) {
            continue;
        }

        return NGX_DECLINED;      /* an edit inside the member */
    }

    o = &out->members[out->nmembers++];
    *o = *m;
    o->key += shift;

    if (renamed) {
        k = renamed - 1;
        o->key = at[k] + 1;
        o->key_len = e[k].len - 2;
        shift += (off_t) e[k].len - (e[k].end - e[k].start);
    }

    if (moved) {
        k = moved - 1;
        o->value = at[k];
        o->value_end = at[k] + e[k].len;

        o->type = ngx_http_llm_jscan_type(e[k].len ? e[k].data[0] : 0);

    } else {
        o->value += shift;
        o->value_end += shift;
    }

    return NGX_OK;
}


/* members inserted: ,"a":1,"b":2, the router's own valid text, skimmed */

static ngx_int_t
ngx_http_llm_scan_inserted(ngx_http_llm_edits_t *edits, off_t *at,
    ngx_http_llm_jscan_t *out)
{
    size_t                        lead;
    ngx_uint_t                    k, n;
    ngx_http_llm_edit_t          *e;
    ngx_http_llm_jskim_t          part;
    const u_char                 *from;
    ngx_http_llm_jscan_member_t  *o;

    e = edits->elts;
    n = edits->nelts;

    for (k = 0; k < n; k++) {
        if (e[k].start != e[k].end || e[k].len == 0) {
            continue;
        }

        lead = (e[k].data[0] == ',');

        part.pos = e[k].data + lead;
        part.last = e[k].data + e[k].len;

        for ( ;; ) {
            from = part.pos;

            if (ngx_http_llm_jskim_next(&part) != NGX_HTTP_LLM_JSKIM_MEMBER) {
                break;
            }

            if (out->nmembers == NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
                return NGX_DECLINED;
            }

            o = &out->members[out->nmembers++];
            o->key = at[k] + (part.key - e[k].data);
            o->key_len = part.key_len;
            o->value = at[k] + (part.value - e[k].data);
            o->value_end = at[k] + (part.value_end - e[k].data);
            o->type = ngx_http_llm_jscan_type(*part.value);
        }

        if (from != part.last) {
            return NGX_DECLINED;     /* not members to the end of the text */
        }
    }

    return NGX_OK;
}


/* doc, in one piece, with its bytes [start, end) replaced by data */

ngx_int_t
ngx_http_llm_edit_doc(ngx_http_request_t *r, ngx_str_t *doc, off_t start,
    off_t end, ngx_str_t *data)
{
    u_char                *p;
    off_t                  size;
    ssize_t                n;
    ngx_http_llm_edit_t    edit[1];
    ngx_http_llm_edits_t   edits;

    ngx_http_llm_edits_init(&edits, edit, 1);

    if (ngx_http_llm_add_edit(r, &edits, start, end, data) != NGX_OK) {
        return NGX_ERROR;
    }

    size = (off_t) doc->len + edits.delta;

    p = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = ngx_http_llm_edits_apply(&edits, doc->data, doc->len, p,
                                 (size_t) size);

    if (n != (ssize_t) size) {
        return NGX_ERROR;
    }

    doc->data = p;
    doc->len = (size_t) n;

    return NGX_OK;
}
