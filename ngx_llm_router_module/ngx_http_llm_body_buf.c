
/*
 * ngx_llm_router: the request body as spans, in nginx's buffers or a file.
 * Not here: what the fields mean (body.c, plan.c, variant.c), JSON (jscan.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_body_buf.h"


static ngx_int_t ngx_http_llm_body_read_file(ngx_http_request_t *r,
    ngx_http_llm_body_t *body);


/*
 * The body's buffers.  In memory they are scanned and cut where they are;
 * a body in a temporary file is read into one buffer (edits cannot be cut
 * out of the file: a retry to the next upstream would resend its first
 * piece from offset 0 on).
 */

ngx_int_t
ngx_http_llm_body_init(ngx_http_request_t *r, ngx_http_llm_body_t *body)
{
    ngx_chain_t  *cl;

    body->bufs = NULL;
    body->len = 0;

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            return ngx_http_llm_body_read_file(r, body);
        }

        body->len += cl->buf->last - cl->buf->pos;
    }

    body->bufs = r->request_body->bufs;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_body_read_file(ngx_http_request_t *r, ngx_http_llm_body_t *body)
{
    ngx_str_t   doc;
    ngx_buf_t  *b;

    if (ngx_http_llm_flat_body(r, &doc) != NGX_OK) {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->temporary = 1;
    b->start = doc.data;
    b->pos = doc.data;
    b->last = doc.data + doc.len;
    b->end = b->last;

    body->flat.buf = b;
    body->flat.next = NULL;
    body->bufs = &body->flat;
    body->len = (off_t) doc.len;

    return NGX_OK;
}


/* the scanner over the body's buffers: NGX_HTTP_LLM_JSCAN_OK or why not */

int
ngx_http_llm_body_scan(ngx_http_llm_body_t *body, ngx_http_llm_jscan_t *scan)
{
    int           rc;
    ngx_chain_t  *cl;

    ngx_http_llm_jscan_init(scan);

    rc = NGX_HTTP_LLM_JSCAN_AGAIN;

    for (cl = body->bufs; cl && rc == NGX_HTTP_LLM_JSCAN_AGAIN; cl = cl->next) {
        rc = ngx_http_llm_jscan_feed(scan, cl->buf->pos,
                                     cl->buf->last - cl->buf->pos);
    }

    return ngx_http_llm_jscan_finish(scan);
}


/* the bytes [from, to) of the body: in place, or copied if they straddle */

ngx_int_t
ngx_http_llm_body_range(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    off_t from, off_t to, ngx_str_t *out)
{
    off_t         start, size, n;
    u_char       *p;
    ngx_chain_t  *cl;

    start = 0;

    for (cl = body->bufs; cl; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;

        if (from < start + size) {
            break;
        }

        start += size;
    }

    if (cl == NULL) {
        return NGX_ERROR;
    }

    out->len = (size_t) (to - from);

    if (to <= start + size) {
        out->data = cl->buf->pos + (from - start);
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, out->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for ( /* void */ ; cl && from < to; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;
        n = ngx_min(to, start + size) - from;

        p = ngx_cpymem(p, cl->buf->pos + (from - start), (size_t) n);

        from += n;
        start += size;
    }

    return NGX_OK;
}


/* the raw keys of the top-level members, looked up once */

ngx_int_t
ngx_http_llm_body_keys(ngx_http_request_t *r, ngx_http_llm_body_t *body,
    ngx_http_llm_jscan_t *scan)
{
    ngx_uint_t                    i;
    ngx_http_llm_jscan_member_t  *m;

    body->keys = ngx_palloc(r->pool, (scan->nmembers + 1) * sizeof(ngx_str_t));
    if (body->keys == NULL) {
        return NGX_ERROR;
    }

    body->escaped = 0;

    for (i = 0; i < scan->nmembers; i++) {
        m = &scan->members[i];

        if (ngx_http_llm_body_range(r, body, m->key, m->key + m->key_len,
                                    &body->keys[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (memchr(body->keys[i].data, '\\', body->keys[i].len)) {
            body->escaped |= (uint64_t) 1 << i;
        }
    }

    return NGX_OK;
}


/* the CRC32 of the bytes [from, to), read where they lie */

uint32_t
ngx_http_llm_body_crc32(ngx_http_llm_body_t *body, off_t from, off_t to)
{
    off_t         start, size, n;
    uint32_t      crc;
    ngx_chain_t  *cl;

    ngx_crc32_init(crc);

    start = 0;

    for (cl = body->bufs; cl && from < to; cl = cl->next) {
        size = cl->buf->last - cl->buf->pos;

        if (from < start + size) {
            n = ngx_min(to, start + size) - from;
            ngx_crc32_update(&crc, cl->buf->pos + (from - start), (size_t) n);
            from += n;
        }

        start += size;
    }

    ngx_crc32_final(crc);

    return crc;
}


/* the request body in one piece (in memory, or read from its file) */

ngx_int_t
ngx_http_llm_flat_body(ngx_http_request_t *r, ngx_str_t *doc)
{
    u_char       *p;
    off_t         len, size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, (size_t) len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    doc->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        size = b->file_last - b->file_pos;

        n = ngx_read_file(b->file, p, (size_t) size, b->file_pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n != size) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          ngx_read_file_n " \"%V\" returned only %z bytes "
                          "instead of %O", &b->file->name, n, size);
            return NGX_ERROR;
        }

        p += n;
    }

    doc->len = p - doc->data;

    return NGX_OK;
}


/* the body becomes doc */

ngx_int_t
ngx_http_llm_set_body(ngx_http_request_t *r, ngx_str_t *doc)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ngx_http_llm_body_link(cl, b, doc->data, doc->data + doc->len);
    cl->next = NULL;
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->request_body->bufs = cl;

    return ngx_http_llm_body_length(r, (off_t) doc->len);
}


/* the body's new length; $content_length and the header stay right */

ngx_int_t
ngx_http_llm_body_length(ngx_http_request_t *r, off_t size)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    r->headers_in.content_length_n = size;

    h = r->headers_in.content_length;

    if (h == NULL) {
        return NGX_OK;
    }

    /* the digits right to left: ngx_sprintf() would cost more than that */

    last = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (last == NULL) {
        return NGX_ERROR;
    }

    last += NGX_OFF_T_LEN;
    p = last;

    do {
        *--p = (u_char) ('0' + size % 10);
        size /= 10;
    } while (size);

    h->value.data = p;
    h->value.len = last - p;

    return NGX_OK;
}
