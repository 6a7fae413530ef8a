
/*
 * ngx_llm_router: the edit list of a body: ordered, never overlapping, walked.
 * Not here: what to edit (plan.c), anything of nginx (t/unit/edit_test.c).
 */


#include <string.h>

#include "ngx_http_llm_edit.h"


typedef struct {
    unsigned char  *pos;
    unsigned char  *end;
} ngx_http_llm_edits_buf_t;


static int ngx_http_llm_edits_copy(void *arg, const unsigned char *p,
    size_t len);


void
ngx_http_llm_edits_init(ngx_http_llm_edits_t *l, ngx_http_llm_edit_t *elts,
    size_t nalloc)
{
    l->elts = elts;
    l->nelts = 0;
    l->nalloc = nalloc;
    l->delta = 0;
}


/*
 * The list stays ordered by (start, end): an insertion at a point goes
 * before a replacement that starts there.  A new edit must end where the
 * one before it starts at the latest, and start where the one after it
 * ends at the earliest; two insertions at one point are refused too (their
 * order would be a guess).  An insertion of nothing changes nothing.
 */

int
ngx_http_llm_edits_add(ngx_http_llm_edits_t *l, off_t start, off_t end,
    const unsigned char *data, size_t len)
{
    size_t                i;
    ngx_http_llm_edit_t  *e, *prev;

    if (start < 0 || end < start) {
        return NGX_HTTP_LLM_EDIT_INVALID;
    }

    if (start == end && len == 0) {
        return NGX_HTTP_LLM_EDIT_OK;
    }

    e = l->elts;

    for (i = l->nelts;
         i > 0 && (e[i - 1].start > start
                   || (e[i - 1].start == start && e[i - 1].end > end));
         i--)
    {
        /* void */
    }

    if (i > 0) {
        prev = &e[i - 1];

        if (prev->end > start
            || (prev->start == start && prev->end == end))
        {
            return NGX_HTTP_LLM_EDIT_OVERLAP;
        }
    }

    if (i < l->nelts && end > e[i].start) {
        return NGX_HTTP_LLM_EDIT_OVERLAP;
    }

    if (l->nelts == l->nalloc) {
        return NGX_HTTP_LLM_EDIT_FULL;
    }

    memmove(&e[i + 1], &e[i], (l->nelts - i) * sizeof(ngx_http_llm_edit_t));

    e[i].start = start;
    e[i].end = end;
    e[i].data = len ? data : NULL;
    e[i].len = len;

    l->nelts++;
    l->delta += (off_t) len - (end - start);

    return NGX_HTTP_LLM_EDIT_OK;
}


/*
 * Removes the members of an object marked dropped, with their commas:
 * before the first kept member a member goes with the comma after it,
 * after it with the comma before; all of them go as one edit.  Each edit
 * removes a member and one comma, so the object stays valid JSON whichever
 * of them were added.  *kept: the members left.
 */

int
ngx_http_llm_edits_drop(ngx_http_llm_edits_t *l,
    const ngx_http_llm_jscan_member_t *m, size_t n,
    const unsigned char *dropped, size_t *kept)
{
    int     rc;
    size_t  i, first;

    for (first = 0; first < n && dropped[first]; first++) { /* void */ }

    *kept = 0;

    for (i = 0; i < n; i++) {
        *kept += !dropped[i];
    }

    /* a member starts at its key's opening quote */

    if (first == n) {
        return n ? ngx_http_llm_edits_add(l, m[0].key - 1,
                                          m[n - 1].value_end, NULL, 0)
                 : NGX_HTTP_LLM_EDIT_OK;
    }

    for (i = 0; i < n; i++) {
        if (!dropped[i]) {
            continue;
        }

        if (i < first) {
            rc = ngx_http_llm_edits_add(l, m[i].key - 1, m[i + 1].key - 1,
                                        NULL, 0);

        } else {
            rc = ngx_http_llm_edits_add(l, m[i - 1].value_end,
                                        m[i].value_end, NULL, 0);
        }

        if (rc != NGX_HTTP_LLM_EDIT_OK) {
            return rc;
        }
    }

    return NGX_HTTP_LLM_EDIT_OK;
}


/* 1 if an edit replaces or removes a byte of [start, end) */

int
ngx_http_llm_edits_covered(const ngx_http_llm_edits_t *l, off_t start,
    off_t end)
{
    size_t                     i;
    const ngx_http_llm_edit_t  *e;

    for (i = 0; i < l->nelts; i++) {
        e = &l->elts[i];

        if (e->start < end && start < e->end) {
            return 1;
        }
    }

    return 0;
}


void
ngx_http_llm_edits_walk_init(ngx_http_llm_edits_walk_t *w,
    const ngx_http_llm_edits_t *l, ngx_http_llm_edits_emit_pt emit, void *arg)
{
    w->edits = l;
    w->next = 0;
    w->pos = 0;
    w->base = 0;
    w->out = 0;
    w->emit = emit;
    w->arg = arg;
}


/*
 * The next len bytes of the body: the spans of them no edit covers, and
 * the data of each edit that starts in them or where they end.  Bytes an
 * edit covers past the piece are skipped in the pieces that follow.
 * 0, or -1 if the emitter refused a span.
 */

int
ngx_http_llm_edits_walk_feed(ngx_http_llm_edits_walk_t *w,
    const unsigned char *piece, size_t len)
{
    off_t                       end;
    const ngx_http_llm_edit_t  *e;

    end = w->base + (off_t) len;

    while (w->next < w->edits->nelts) {
        e = &w->edits->elts[w->next];

        if (e->start > end) {
            break;
        }

        /* the list is ordered and disjoint: w->pos <= e->start here */

        if (e->start > w->pos) {
            if (w->emit(w->arg, piece + (w->pos - w->base),
                        (size_t) (e->start - w->pos))
                != 0)
            {
                return -1;
            }

            w->out += e->start - w->pos;
        }

        if (e->len) {
            if (w->emit(w->arg, e->data, e->len) != 0) {
                return -1;
            }

            w->out += (off_t) e->len;
        }

        w->pos = e->end;
        w->next++;
    }

    if (w->pos < end) {
        if (w->emit(w->arg, piece + (w->pos - w->base),
                    (size_t) (end - w->pos))
            != 0)
        {
            return -1;
        }

        w->out += end - w->pos;
        w->pos = end;
    }

    w->base = end;

    return 0;
}


/* 0 if the body held every edit; -1 if one lay past its end */

int
ngx_http_llm_edits_walk_finish(ngx_http_llm_edits_walk_t *w)
{
    if (w->next != w->edits->nelts || w->pos != w->base) {
        return -1;
    }

    return 0;
}


/* the edited body's length, or -1 if it would not fit or an edit is off */

ssize_t
ngx_http_llm_edits_apply(const ngx_http_llm_edits_t *l,
    const unsigned char *src, size_t len, unsigned char *dst, size_t cap)
{
    ngx_http_llm_edits_buf_t   out;
    ngx_http_llm_edits_walk_t  w;

    out.pos = dst;
    out.end = dst + cap;

    ngx_http_llm_edits_walk_init(&w, l, ngx_http_llm_edits_copy, &out);

    if (ngx_http_llm_edits_walk_feed(&w, src, len) != 0
        || ngx_http_llm_edits_walk_finish(&w) != 0)
    {
        return -1;
    }

    return (ssize_t) w.out;
}


static int
ngx_http_llm_edits_copy(void *arg, const unsigned char *p, size_t len)
{
    ngx_http_llm_edits_buf_t  *b = arg;

    if (len > (size_t) (b->end - b->pos)) {
        return -1;
    }

    memcpy(b->pos, p, len);
    b->pos += len;

    return 0;
}
