
/*
 * ngx_llm_router: the llm_models content handler, GET /v1/models.
 * Not here: the models' configuration (conf.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_models.h"
#include "ngx_http_llm_ctx.h"
#include "ngx_http_llm_conf.h"
#include "ngx_http_llm_error.h"
#include "ngx_http_llm_json.h"


static ngx_int_t ngx_http_llm_models_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_models_add(cJSON *data, ngx_str_t *name,
    time_t created);


char *
ngx_http_llm_models(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return ngx_http_llm_set_content_handler(cf, ngx_http_llm_models_handler);
}


/* the OpenAI list object, built once per configuration */

ngx_int_t
ngx_http_llm_build_models_json(ngx_conf_t *cf, ngx_http_llm_main_conf_t *lmcf)
{
    cJSON                 *root, *data;
    time_t                 created;
    ngx_uint_t             i;
    ngx_http_llm_alias_t  *aliases;
    ngx_http_llm_model_t  *models;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NGX_ERROR;
    }

    data = cJSON_CreateArray();

    if (data == NULL
        || cJSON_AddStringToObject(root, "object", "list") == NULL
        || !cJSON_AddItemToObject(root, "data", data))
    {
        cJSON_Delete(data);
        goto failed;
    }

    created = ngx_time();
    models = lmcf->models.elts;

    for (i = 0; i < lmcf->models.nelts; i++) {

        /* globs and the default route are patterns, not model names */

        if (models[i].glob
            || (models[i].name.len == 7
                && ngx_strncmp(models[i].name.data, "default", 7) == 0))
        {
            continue;
        }

        /* variants after the first share its name */

        if (ngx_http_llm_first_model(lmcf, &models[i].name, i)
            != NGX_CONF_UNSET_UINT)
        {
            continue;
        }

        if (ngx_http_llm_models_add(data, &models[i].name, created)
            != NGX_OK)
        {
            goto failed;
        }
    }

    aliases = lmcf->aliases.elts;

    for (i = 0; i < lmcf->aliases.nelts; i++) {
        if (ngx_http_llm_models_add(data, &aliases[i].name, created)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (ngx_http_llm_json_print(cf->pool, root, &lmcf->models_json)
        != NGX_OK)
    {
        goto failed;
    }

    cJSON_Delete(root);

    return NGX_OK;

failed:

    cJSON_Delete(root);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_llm_models_add(cJSON *data, ngx_str_t *name, time_t created)
{
    char   buf[512];
    cJSON  *item;

    if (name->len >= sizeof(buf)) {
        return NGX_OK;
    }

    ngx_memcpy(buf, name->data, name->len);
    buf[name->len] = '\0';

    item = cJSON_CreateObject();
    if (item == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_AddStringToObject(item, "id", buf) == NULL
        || cJSON_AddStringToObject(item, "object", "model") == NULL
        || cJSON_AddNumberToObject(item, "created", (double) created) == NULL
        || cJSON_AddStringToObject(item, "owned_by", "ngx_llm_router")
           == NULL
        || !cJSON_AddItemToArray(data, item))
    {
        cJSON_Delete(item);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_models_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_str_t                  message;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_main_conf_t  *lmcf;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ctx = ngx_http_llm_get_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&message, "use GET to list models");
        ngx_http_llm_set_error(ctx, "method_not_allowed", NULL, NULL,
                               &message);

        return ngx_http_llm_send_error(r, NGX_HTTP_NOT_ALLOWED, ctx);
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_router_module);

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->memory = 1;
    b->pos = lmcf->models_json.data;
    b->last = b->pos + lmcf->models_json.len;

    return ngx_http_llm_send_buffer(r, NGX_HTTP_OK, "application/json", b);
}
