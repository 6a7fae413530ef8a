
/*
 * ngx_llm_router: the request body as spans of the buffers nginx read it
 * into (ngx_http_llm_body_buf.c).
 */


#ifndef _NGX_HTTP_LLM_BODY_BUF_H_INCLUDED_
#define _NGX_HTTP_LLM_BODY_BUF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_router.h"
#include "ngx_http_llm_jscan.h"


/* the body as nginx read it: memory buffers, or a file read into one */
typedef struct {
    ngx_chain_t                   *bufs;
    off_t                          len;
    ngx_chain_t                    flat;
    ngx_str_t                     *keys;     /* of the top-level members */
    uint64_t                       escaped;  /* bit k: key k has a '\\' */
} ngx_http_llm_body_t;


ngx_int_t ngx_http_llm_body_init(ngx_http_request_t *r,
    ngx_http_llm_body_t *body);
int ngx_http_llm_body_scan(ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan);
ngx_int_t ngx_http_llm_body_range(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, off_t from, off_t to, ngx_str_t *out);
ngx_int_t ngx_http_llm_body_keys(ngx_http_request_t *r,
    ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan);
uint32_t ngx_http_llm_body_crc32(ngx_http_llm_body_t *body, off_t from,
    off_t to);

ngx_int_t ngx_http_llm_flat_body(ngx_http_request_t *r, ngx_str_t *doc);
ngx_int_t ngx_http_llm_set_body(ngx_http_request_t *r, ngx_str_t *doc);
ngx_int_t ngx_http_llm_body_length(ngx_http_request_t *r, off_t size);


/*
 * The index of the top-level member named "name", or NGX_DECLINED.  The
 * keys were checked (ngx_http_llm_check_keys()): plain and unique, so the
 * first equal key is the only one, and count is 0 or 1.  Inline: every
 * step of the planning and the estimate looks its fields up with it.
 */

static ngx_inline ngx_int_t
ngx_http_llm_find_member(ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan, ngx_str_t *name, ngx_uint_t *count)
{
    ngx_str_t   *key;
    ngx_uint_t   i;

    for (i = 0; i < scan->nmembers; i++) {
        key = &body->keys[i];

        if (key->len == name->len
            && ngx_memcmp(key->data, name->data, name->len) == 0)
        {
            *count = 1;
            return i;
        }
    }

    *count = 0;

    return NGX_DECLINED;
}


/* upstream retries reset pos to start, so both mark the span */

static ngx_inline void
ngx_http_llm_body_link(ngx_chain_t *cl, ngx_buf_t *b, u_char *start,
    u_char *end)
{
    b->memory = 1;
    b->start = start;
    b->pos = start;
    b->end = end;
    b->last = end;

    cl->buf = b;
    cl->next = cl + 1;
}


#endif /* _NGX_HTTP_LLM_BODY_BUF_H_INCLUDED_ */
