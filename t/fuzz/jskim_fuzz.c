/* fuzz-sources: ngx_http_llm_jscan.c */

/*
 * libFuzzer target: the answer skimmer (ngx_http_llm_jskim_open/next in
 * ngx_http_llm_jscan.c).  On any input it stays inside the bytes it is
 * given (ASan: each buffer is its own allocation, of its exact size), the
 * members it reports lie in order inside them, and it ends.  On an input
 * the scanner takes for an object it finds the scanner's members with the
 * same offsets, then the end; cut anywhere before the object's last '}' it
 * never says the object ended, and a member it reports whole before the
 * cut is the scanner's.
 * Built and run by `./build.sh fuzz`.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_jscan.h"


#define MAX_SKIMMED  4096


typedef struct {
    size_t                        n;
    int                           rc;          /* what ended the walk */
    size_t                        end;         /* where '}' was, if END */
    ngx_http_llm_jscan_member_t   m[MAX_SKIMMED];
} skim_t;


/* a property does not hold: say which, and let libFuzzer keep the input */

#define fail()  fail_at(__LINE__)

static void
fail_at(int line)
{
    fprintf(stderr, "%s:%d: the check failed\n", __FILE__, line);
    abort();
}


/* skims p (len bytes, its own allocation), checking what it reports */

static void
skim(const unsigned char *p, size_t len, skim_t *out)
{
    int                   rc;
    const unsigned char  *last, *prev;
    ngx_http_llm_jskim_t  k;

    out->n = 0;
    out->rc = NGX_HTTP_LLM_JSKIM_BROKEN;
    out->end = 0;

    if (!ngx_http_llm_jskim_open(&k, p, len)) {
        out->rc = 2;
        return;
    }

    last = p + len;
    prev = p;

    for ( ;; ) {
        rc = ngx_http_llm_jskim_next(&k);

        if (rc != NGX_HTTP_LLM_JSKIM_MEMBER) {
            out->rc = rc;

            if (rc == NGX_HTTP_LLM_JSKIM_END) {
                if (k.pos < p || k.pos >= last || *k.pos != '}') {
                    fail();
                }

                out->end = k.pos - p;
            }

            return;
        }

        /* "key" : value, in order, inside the input */

        if (k.key <= prev || k.key[-1] != '"'
            || k.key + k.key_len >= last || k.key[k.key_len] != '"'
            || k.value <= k.key + k.key_len || k.value_end <= k.value
            || k.value_end > last || k.pos < k.value_end || k.pos > last)
        {
            fail();
        }

        prev = k.value_end - 1;

        if (out->n < MAX_SKIMMED) {
            out->m[out->n].key = k.key - p;
            out->m[out->n].key_len = k.key_len;
            out->m[out->n].value = k.value - p;
            out->m[out->n].value_end = k.value_end - p;
            out->n++;
        }

        if (out->n > len) {
            fail();                     /* it does not end */
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                        i, j, cut, cuts[4];
    uint64_t                      h;
    unsigned char                *buf;
    static skim_t                 whole, part;
    static ngx_http_llm_jscan_t   s;
    ngx_http_llm_jscan_member_t  *m;

    /* libFuzzer's data is an allocation of its exact size */

    skim(data, size, &whole);

    ngx_http_llm_jscan_init(&s);
    ngx_http_llm_jscan_feed(&s, data, size);

    if (ngx_http_llm_jscan_finish(&s) != NGX_HTTP_LLM_JSCAN_OK) {
        return 0;
    }

    /* a valid object: the scanner's members, then its '}' */

    if (whole.rc != NGX_HTTP_LLM_JSKIM_END || whole.n != s.nmembers
        || whole.end != (size_t) s.obj_end - 1)
    {
        fail();
    }

    for (i = 0; i < s.nmembers; i++) {
        m = &s.members[i];

        if (whole.m[i].key != m->key || whole.m[i].key_len != m->key_len
            || whole.m[i].value != m->value
            || whole.m[i].value_end != m->value_end)
        {
            fail();
        }
    }

    /* cut before the last '}': just before it, at a hash, in a member */

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }

    cuts[0] = s.obj_end - 1;
    cuts[1] = h % s.obj_end;
    cuts[2] = (h >> 32) % s.obj_end;
    cuts[3] = s.nmembers ? s.members[h % s.nmembers].value_end : 0;

    for (j = 0; j < 4; j++) {
        cut = cuts[j];

        if (cut >= (size_t) s.obj_end) {
            continue;
        }

        buf = malloc(cut ? cut : 1);
        if (buf == NULL) {
            return 0;
        }

        memcpy(buf, data, cut);
        skim(buf, cut, &part);
        free(buf);

        if (part.rc == 2) {
            if ((off_t) cut > s.obj_start) {
                fail();                 /* the '{' is there */
            }

            continue;
        }

        if (part.rc != NGX_HTTP_LLM_JSKIM_BROKEN || part.n > s.nmembers) {
            fail();
        }

        for (i = 0; i < part.n; i++) {
            m = &s.members[i];

            if ((size_t) part.m[i].value_end < cut
                && (part.m[i].key != m->key
                    || part.m[i].key_len != m->key_len
                    || part.m[i].value != m->value
                    || part.m[i].value_end != m->value_end))
            {
                fail();
            }
        }
    }

    return 0;
}
