
/*
 * ngx_llm_router: the edits of a request body and their application.
 *
 * An edit replaces the body's bytes [start, end) by its data (start == end:
 * an insertion; no data: a deletion).  The list is kept ordered, and an
 * edit that overlaps one already in it is refused: two edits can never
 * claim the same byte, so the size of the edited body (the body's length
 * plus the sum the list keeps) is always what the walk writes.  The walk
 * takes the body piece by piece, as nginx read it, and hands out the spans
 * of the edited body in order; ngx_http_llm_edits_apply() copies a body
 * in one buffer into another, never past its end.
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.
 */


#ifndef _NGX_HTTP_LLM_EDIT_H_INCLUDED_
#define _NGX_HTTP_LLM_EDIT_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>

#include "ngx_http_llm_jscan.h"


/* ngx_http_llm_edits_add() */
#define NGX_HTTP_LLM_EDIT_OK        0
#define NGX_HTTP_LLM_EDIT_OVERLAP   1   /* refused: it overlaps an edit */
#define NGX_HTTP_LLM_EDIT_FULL      2   /* refused: the list is full */
#define NGX_HTTP_LLM_EDIT_INVALID   3   /* refused: end before start */


/* a replacement of the body's bytes [start, end) by data */
typedef struct {
    off_t                  start;
    off_t                  end;
    const unsigned char   *data;
    size_t                 len;
} ngx_http_llm_edit_t;


/* ordered by (start, end), none overlapping */
typedef struct {
    ngx_http_llm_edit_t   *elts;
    size_t                 nelts;
    size_t                 nalloc;
    off_t                  delta;      /* what the edits add to the size */
} ngx_http_llm_edits_t;


/* a span of the edited body; nonzero stops the walk */
typedef int (*ngx_http_llm_edits_emit_pt)(void *arg, const unsigned char *p,
    size_t len);

typedef struct {
    const ngx_http_llm_edits_t  *edits;
    size_t                       next;   /* the next edit to write */
    off_t                        pos;    /* the body is done up to here */
    off_t                        base;   /* the offset of the next piece */
    off_t                        out;    /* bytes handed out */
    ngx_http_llm_edits_emit_pt   emit;
    void                        *arg;
} ngx_http_llm_edits_walk_t;


void ngx_http_llm_edits_init(ngx_http_llm_edits_t *l,
    ngx_http_llm_edit_t *elts, size_t nalloc);
int ngx_http_llm_edits_add(ngx_http_llm_edits_t *l, off_t start, off_t end,
    const unsigned char *data, size_t len);
int ngx_http_llm_edits_drop(ngx_http_llm_edits_t *l,
    const ngx_http_llm_jscan_member_t *m, size_t n,
    const unsigned char *dropped, size_t *kept);
int ngx_http_llm_edits_covered(const ngx_http_llm_edits_t *l, off_t start,
    off_t end);

void ngx_http_llm_edits_walk_init(ngx_http_llm_edits_walk_t *w,
    const ngx_http_llm_edits_t *l, ngx_http_llm_edits_emit_pt emit,
    void *arg);
int ngx_http_llm_edits_walk_feed(ngx_http_llm_edits_walk_t *w,
    const unsigned char *piece, size_t len);
int ngx_http_llm_edits_walk_finish(ngx_http_llm_edits_walk_t *w);

ssize_t ngx_http_llm_edits_apply(const ngx_http_llm_edits_t *l,
    const unsigned char *src, size_t len, unsigned char *dst, size_t cap);


#endif /* _NGX_HTTP_LLM_EDIT_H_INCLUDED_ */
