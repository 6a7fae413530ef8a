
/*
 * ngx_llm_router: the edits of a request body planned and applied
 * (ngx_http_llm_plan.c), on the pure list of ngx_http_llm_edit.c.
 */


#ifndef _NGX_HTTP_LLM_PLAN_H_INCLUDED_
#define _NGX_HTTP_LLM_PLAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_edit.h"
#include "ngx_http_llm_body_buf.h"


/* a member's key and value, or the member; the model; the insertion */
#define NGX_HTTP_LLM_MAX_EDITS  (2 * NGX_HTTP_LLM_JSCAN_MAX_MEMBERS + 2)


ngx_int_t ngx_http_llm_plan_edits(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_http_llm_jscan_member_t *model,
    ngx_http_llm_edits_t *edits, ngx_str_t **bad);
ngx_int_t ngx_http_llm_apply_edits(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_edits_t *edits);
ngx_int_t ngx_http_llm_edit_doc(ngx_http_request_t *r, ngx_str_t *doc,
    off_t start, off_t end, ngx_str_t *data);
ngx_int_t ngx_http_llm_scan_edited(ngx_http_llm_jscan_t *scan,
    ngx_http_llm_edits_t *edits, ngx_http_llm_jscan_t *out);


#endif /* _NGX_HTTP_LLM_PLAN_H_INCLUDED_ */
