
/*
 * Unit tests of the server-sent events parser (ngx_http_llm_sse.c).
 * Every stream is fed whole, byte by byte and split at every offset; the
 * events seen must be the same each time.
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_llm_sse.h"


#define MAX_EVENTS  16
#define DATA_CAP    64


typedef struct {
    size_t  n;
    char    data[MAX_EVENTS][DATA_CAP + 1];
    size_t  lines[MAX_EVENTS];
    int     truncated[MAX_EVENTS];
    char    value[MAX_EVENTS][256];   /* raw[value_start, value_end) */
    size_t  raw[MAX_EVENTS];
    char    name[MAX_EVENTS][NGX_HTTP_LLM_SSE_NAME_MAX + 1];   /* event: */
    size_t  name_len[MAX_EVENTS];
    size_t  consumed;
} result_t;


#include "unit_check.h"


/* feeds text in pieces cut at the offsets in cuts (ascending) */

static void
run(const char *text, const size_t *cuts, size_t ncuts, result_t *res)
{
    int                  event;
    size_t               len, off, end, k, used, start;
    unsigned char        buf[DATA_CAP];
    ngx_http_llm_sse_t   p;

    memset(res, 0, sizeof(result_t));
    ngx_http_llm_sse_init(&p, buf, DATA_CAP);

    len = strlen(text);
    off = 0;
    start = 0;

    for (k = 0; k <= ncuts; k++) {
        end = (k < ncuts) ? cuts[k] : len;

        while (off < end) {
            used = ngx_http_llm_sse_feed(&p, (const unsigned char *) text + off,
                                         end - off, &event);
            off += used;
            res->consumed += used;

            if (!event) {
                if (off != end) {
                    res->n = MAX_EVENTS + 1;   /* stopped without event */
                    return;
                }
                continue;
            }

            if (res->n < MAX_EVENTS) {
                memcpy(res->data[res->n], p.data, p.data_len);
                res->data[res->n][p.data_len] = '\0';
                res->lines[res->n] = p.data_lines;
                res->truncated[res->n] = p.truncated;
                res->raw[res->n] = p.raw_len;
                res->name_len[res->n] = p.name_len;

                if (p.name_len <= NGX_HTTP_LLM_SSE_NAME_MAX) {
                    memcpy(res->name[res->n], p.name, p.name_len);
                    res->name[res->n][p.name_len] = '\0';
                }

                if (p.value_end >= p.value_start
                    && p.value_end - p.value_start < 256
                    && start + p.value_end <= len)
                {
                    memcpy(res->value[res->n], text + start + p.value_start,
                           p.value_end - p.value_start);
                    res->value[res->n][p.value_end - p.value_start] = '\0';
                }
            }

            res->n++;
            start += p.raw_len;
            ngx_http_llm_sse_next(&p);
        }
    }
}


static int
same(const result_t *a, const result_t *b)
{
    size_t  i;

    if (a->n != b->n || a->consumed != b->consumed) {
        return 0;
    }

    for (i = 0; i < a->n && i < MAX_EVENTS; i++) {
        if (strcmp(a->data[i], b->data[i]) != 0
            || a->lines[i] != b->lines[i]
            || a->truncated[i] != b->truncated[i]
            || a->raw[i] != b->raw[i]
            || strcmp(a->value[i], b->value[i]) != 0
            || a->name_len[i] != b->name_len[i]
            || strcmp(a->name[i], b->name[i]) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/* whole, then cut at every single offset, then at every pair */

static void
check_splits(const char *name, const char *text, const result_t *want)
{
    char      what[128];
    size_t    len, i, j, cuts[2];
    result_t  got;
    int       ok;

    run(text, NULL, 0, &got);
    snprintf(what, sizeof(what), "%s: whole", name);
    CHECK(same(&got, want), what);

    len = strlen(text);
    ok = 1;

    for (i = 1; i < len; i++) {
        cuts[0] = i;
        run(text, cuts, 1, &got);
        if (!same(&got, want)) {
            printf("  %s: differs when cut at %zu\n", name, i);
            ok = 0;
        }

        for (j = i + 1; j < len; j++) {
            cuts[1] = j;
            run(text, cuts, 2, &got);
            if (!same(&got, want)) {
                ok = 0;
            }
        }
    }

    snprintf(what, sizeof(what), "%s: every split", name);
    CHECK(ok, what);
}


static void
check_events(const char *name, const char *text, size_t n,
    const char *const *data, const char *const *values)
{
    char      what[128];
    size_t    i;
    result_t  want;

    run(text, NULL, 0, &want);

    snprintf(what, sizeof(what), "%s: %zu events", name, n);
    CHECK(want.n == n, what);

    for (i = 0; i < n && i < want.n; i++) {
        snprintf(what, sizeof(what), "%s: event %zu data \"%s\"", name, i,
                 data[i]);
        CHECK(strcmp(want.data[i], data[i]) == 0, what);

        if (values) {
            snprintf(what, sizeof(what), "%s: event %zu value \"%s\"", name,
                     i, values[i]);
            CHECK(strcmp(want.value[i], values[i]) == 0, what);
        }
    }

    check_splits(name, text, &want);
}


int
main(void)
{
    result_t  r;

    {
        static const char *const d[] = { "{\"a\":1}", "[DONE]" };
        check_events("lf", "data: {\"a\":1}\n\ndata: [DONE]\n\n", 2, d, d);
    }

    {
        static const char *const d[] = { "{\"a\":1}", "[DONE]" };
        check_events("crlf", "data: {\"a\":1}\r\n\r\ndata: [DONE]\r\n\r\n",
                     2, d, d);
    }

    {
        /* "\r" alone ends lines too */
        static const char *const d[] = { "x", "y" };
        check_events("cr", "data:x\r\rdata: y\r\r", 2, d, d);
    }

    {
        /* a heartbeat comment is an event of its own, without data */
        static const char *const d[] = { "", "{}", "" };
        static const char *const v[] = { "", "{}", "" };
        check_events("comments", ": ping\n\ndata: {}\n\n: ping\n\n", 3, d,
                     v);
    }

    {
        /* event:, id: and comments around data, two data lines */
        static const char *const d[] = { "one\ntwo" };
        static const char *const v[] = { "one" };
        check_events("fields",
                     "event: message\nid: 7\n: c\ndata: one\ndata:two\n\n",
                     1, d, v);
    }

    {
        /* "data" without a colon is an empty data line */
        static const char *const d[] = { "\nx", "" };
        static const char *const v[] = { "", "" };
        check_events("bare data", "data\ndata: x\n\ndata:\n\n", 2, d, v);
    }

    {
        /* only the first space is stripped */
        static const char *const d[] = { "  two" };
        check_events("spaces", "data:   two\n\n", 1, d, d);
    }

    {
        /* field names longer than "data" are skipped */
        static const char *const d[] = { "", "z" };
        check_events("long field", "datax: no\ndataxyzzy\n\ndata: z\n\n",
                     2, d, d);
    }

    {
        static const char *const d[] = { "" };
        check_events("blank", "\n", 1, d, NULL);
    }

    {
        /*
         * data longer than the buffer keeps its first DATA_CAP bytes
         * however the stream is split (a piece that did not fit used to
         * be dropped whole, so the data depended on the split)
         */
        static const char *const d[] = {
            "0123456789012345678901234567890123456789012345678901234567890123",
            "ok"
        };
        check_events("truncated",
                     "data: 0123456789012345678901234567890123456789"
                     "0123456789012345678901234567890\n\ndata: ok\n\n",
                     2, d, NULL);
    }

    /* data longer than the buffer: truncated, the event still ends */

    run("data: 0123456789012345678901234567890123456789"
        "0123456789012345678901234567890\n\ndata: ok\n\n", NULL, 0, &r);
    CHECK(r.n == 2 && r.truncated[0] && !r.truncated[1]
          && strcmp(r.data[1], "ok") == 0, "truncated then ok");

    /* an unfinished event is not reported, its bytes are used */

    run("data: {\"a\":1}\n\ndata: {\"b\"", NULL, 0, &r);
    CHECK(r.n == 1 && r.consumed == 25, "unfinished event");

    /*
     * raw lengths add up to the stream; an event that a "\r\n\r\n" ends
     * is reported at the last '\r', so its final '\n' starts the next one
     */

    run("data: a\r\n\r\n: x\n\ndata: b\n\n", NULL, 0, &r);
    CHECK(r.n == 3 && r.raw[0] == 10 && r.raw[1] == 6 && r.raw[2] == 9,
          "raw lengths");

    /* the event's name: the last "event:" line, cut or not */

    {
        static const char *const d[] = { "{}", "x", "" };
        check_events("names",
                     "event: response.completed\ndata: {}\n\n"
                     "event:a\nevent: message_stop\r\ndata: x\r\n\r\n"
                     "data\n\n",
                     3, d, d);
    }

    run("event: response.completed\ndata: {}\n\n"
        "event:a\nevent: message_stop\r\ndata: x\r\n\r\ndata\n\n",
        NULL, 0, &r);
    CHECK(r.n == 3 && strcmp(r.name[0], "response.completed") == 0
          && strcmp(r.name[1], "message_stop") == 0 && r.name_len[2] == 0,
          "event names");

    run("event: 0123456789012345678901234567890123456789\ndata: y\n\n"
        "event: 01234567890123456789012345678901\ndata: z\n\n",
        NULL, 0, &r);
    CHECK(r.n == 2 && r.name_len[0] == NGX_HTTP_LLM_SSE_NAME_MAX + 1
          && r.name_len[1] == NGX_HTTP_LLM_SSE_NAME_MAX
          && strcmp(r.data[0], "y") == 0, "a name too long is not kept");

    printf("sse: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
