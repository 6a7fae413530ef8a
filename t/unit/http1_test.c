
/*
 * Unit tests of the HTTP/1.x answer parser (ngx_http_llm_http1.c).
 * Built and run by `./build.sh test`; prints "N passed, N failed".
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_llm_http1.h"


#include "unit_check.h"


typedef struct {
    int       rc;           /* the last result: DONE, ERROR or AGAIN */
    unsigned  status;
    int       statuses;     /* how many times STATUS came */
    int       complete;     /* complete at close after all was fed */
    char      body[256];
    size_t    len;
} result_t;


/* feeds the answer in pieces of step bytes (0: whole) */

static void
run(const char *answer, size_t step, result_t *r)
{
    int                    rc;
    size_t                 len, n, off, blen;
    const unsigned char   *p, *last, *body;
    ngx_http_llm_http1_t   h;

    memset(r, 0, sizeof(result_t));
    ngx_http_llm_http1_init(&h);

    len = strlen(answer);
    rc = NGX_HTTP_LLM_HTTP1_AGAIN;

    for (off = 0; off < len || len == 0; off += n) {
        n = (step == 0 || step > len - off) ? len - off : step;
        p = (const unsigned char *) answer + off;
        last = p + n;

        for ( ;; ) {
            rc = ngx_http_llm_http1_parse(&h, &p, last, &body, &blen);

            if (rc == NGX_HTTP_LLM_HTTP1_STATUS) {
                r->statuses++;
                r->status = h.status;
                continue;
            }

            if (rc == NGX_HTTP_LLM_HTTP1_BODY) {
                if (r->len + blen < sizeof(r->body)) {
                    memcpy(r->body + r->len, body, blen);
                    r->len += blen;
                }

                continue;
            }

            break;
        }

        if (rc != NGX_HTTP_LLM_HTTP1_AGAIN || len == 0) {
            break;
        }
    }

    r->rc = rc;
    r->body[r->len] = '\0';
    r->complete = ngx_http_llm_http1_complete_at_close(&h);
}


/* the same outcome whole, byte by byte and in pieces of 3 and 7 */

static void
expect(const char *answer, int rc, unsigned status, const char *body,
    int complete, const char *what)
{
    size_t     steps[] = { 0, 1, 3, 7 };
    size_t     i;
    result_t   r;
    char       name[256];

    for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        run(answer, steps[i], &r);

        snprintf(name, sizeof(name), "%s (pieces of %zu)", what, steps[i]);

        CHECK(r.rc == rc, name);
        CHECK(r.status == status, name);
        CHECK(r.statuses == (status ? 1 : 0), name);

        if (body) {
            CHECK(strcmp(r.body, body) == 0, name);
        }

        CHECK(r.complete == complete, name);
    }
}


typedef struct {
    const char  *answer;
    int          rc;
    unsigned     status;
    const char  *body;
    int          complete;
    const char  *what;
} case_t;


static const case_t  cases[] = {

    /* framing */

    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "hello", 1, "content-length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, more",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "hello", 1,
      "bytes after the length are not body" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "hello", 0, "a short body" },
    { "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 204, "", 1, "an empty body" },
    { "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nup to the close",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "up to the close", 1,
      "a body up to the close" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;ext=1\r\n,\r\nA \r\n0123456789\r\n0\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "hello,0123456789", 1, "chunked" },
    { "HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n"
      "Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "abc", 1,
      "chunked before a length, a trailer" },
    { "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "ok", 1, "bare LFs" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "ok", 1, "the same length twice" },
    { "HTTP/1.1 503\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_AGAIN, 503, "", 1, "no reason phrase" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "hel", 0, "a chunk cut short" },
    { "HTTP/1.1 200 OK\r\nContent-Lengthy: 1\r\nX-Content-Length: 1\r\n"
      "\r\nabc",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "abc", 1,
      "names that only look alike" },

    /* hostile status lines */

    { "HTTP/2.0 200 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "not HTTP/1" },
    { "HTTP/1.1 20 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "two digits" },
    { "HTTP/1.1 2000 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "four digits" },
    { "HTTP/1.1 099 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "a status below 100" },
    { "HTTP/1.1  200 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "two spaces" },
    { "http/1.1 200 OK\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "lower case" },
    { "HTTP/1.1 200 OK\rX",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "a CR alone" },
    { "SSH-2.0-OpenSSH\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "another protocol" },
    { "HTTP/1.1 200 OK",
      NGX_HTTP_LLM_HTTP1_AGAIN, 0, NULL, 0, "a status line without end" },

    /* hostile headers and framing */

    { "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a bad length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a length in two" },
    { "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "an empty length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "two lengths" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a huge length" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a coding not undone" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "fffffffffffffffff\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a huge chunk" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a chunk size no number" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, "ok", 0, "a chunk over its size" },
    { "HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a folded line" },
    { "HTTP/1.1 200 OK\r\nNo Colon\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a space in a name" },
    { "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "an empty name" },

    /* attacks of issue 16's hostile read */

    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0000000000000000000000000000000000000000000000000000000000000001"
      "\r\nx\r\n0\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "x", 1, "a size of 64 digits, zeros" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
      "\r\nx",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a size of 64 hex digits" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1000000000000000\r\nx",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a size of 2^60" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a negative size" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a size in C" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2 ; a=\"b\"\r\nok\n0\nX-T: 1\nY-T: 2\n\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "ok", 1,
      "an extension, bare LFs, two trailers" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nok\r\n0\r\n\r\nmore",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "ok", 1, "bytes after the last chunk" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "2\r\nok\r\n0\r\nX-T: 1\r\n",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "ok", 0, "a trailer cut short" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n"
      "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "ok", 1, "a length after chunked" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: gzip\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "chunked, then gzip" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "identity" },
    { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a coding that only begins "
      "alike" },
    { "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a negative length" },
    { "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a length with a sign" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a length of 2^64" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a list of lengths" },
    { "HTTP/1.1 200 OK\r\nX: 1\r\n\tfolded\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a line folded by a tab" },
    { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nok",
      NGX_HTTP_LLM_HTTP1_AGAIN, 100, "HTTP/1.1 200 OK\r\n\r\nok", 1,
      "a 1xx is the answer (HTTP/1.0 asked, none is due)" },
    { "HTTP/1.0 200 \x01\x7f\xff\r\nContent-Length: 0\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_DONE, 200, "", 1, "controls in the reason" },
    { "HTTP/1.1 200 OK\r\n\x01: x\r\n\r\n",
      NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "a control in a name" },
    { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, "hel", 0, "closed mid-body" },
    { "HTTP/1.1 200 OK\r\nContent-Len",
      NGX_HTTP_LLM_HTTP1_AGAIN, 200, NULL, 0, "closed mid-header" }
};




int
main(void)
{
    size_t       i, n;
    static char  big[NGX_HTTP_LLM_HTTP1_HEADERS_MAX + 64];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect(cases[i].answer, cases[i].rc, cases[i].status, cases[i].body,
               cases[i].complete, cases[i].what);
    }

    /* headers without end are cut */

    n = (size_t) sprintf(big, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'a', sizeof(big) - n - 1);
    big[sizeof(big) - 1] = '\0';

    expect(big, NGX_HTTP_LLM_HTTP1_ERROR, 200, NULL, 0, "headers too long");

    /* so are a status line and a trailer without end */

    n = (size_t) sprintf(big, "HTTP/1.1 200 ");
    memset(big + n, 'a', sizeof(big) - n - 1);

    expect(big, NGX_HTTP_LLM_HTTP1_ERROR, 0, NULL, 0, "status line too long");

    n = (size_t) sprintf(big, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                              "\r\n\r\n2\r\nok\r\n0\r\nX-T: ");
    memset(big + n, 'a', sizeof(big) - n - 1);

    expect(big, NGX_HTTP_LLM_HTTP1_ERROR, 200, "ok", 0, "trailer too long");

    printf("http1: %d passed, %d failed\n", passed, failed);

    return failed ? 1 : 0;
}
