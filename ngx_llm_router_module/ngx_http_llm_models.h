
/*
 * ngx_llm_router: the llm_models endpoint, GET /v1/models
 * (ngx_http_llm_models.c).
 */


#ifndef _NGX_HTTP_LLM_MODELS_H_INCLUDED_
#define _NGX_HTTP_LLM_MODELS_H_INCLUDED_


#include "ngx_http_llm_router.h"


char *ngx_http_llm_models(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_llm_build_models_json(ngx_conf_t *cf,
    ngx_http_llm_main_conf_t *lmcf);


#endif /* _NGX_HTTP_LLM_MODELS_H_INCLUDED_ */
