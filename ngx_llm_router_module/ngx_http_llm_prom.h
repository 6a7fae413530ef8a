
/*
 * ngx_llm_router: an incremental parser of the Prometheus text format.
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.  It
 * is fed a scrape response in pieces split anywhere, sums the samples of a
 * few named metrics over all their label sets, and never reads more than
 * its byte limit; garbage, partial lines, NaN, Inf and huge numbers are
 * counted as bad lines, never trusted, and so is a sample that would make
 * a sum overflow: every sum is a finite number.
 */


#ifndef _NGX_HTTP_LLM_PROM_H_INCLUDED_
#define _NGX_HTTP_LLM_PROM_H_INCLUDED_


#include <stddef.h>


#define NGX_HTTP_LLM_PROM_MAX_NAMES  8
#define NGX_HTTP_LLM_PROM_LINE_MAX   1024

#define NGX_HTTP_LLM_PROM_OK         0
#define NGX_HTTP_LLM_PROM_TOO_BIG    1


typedef struct {
    const char     *names[NGX_HTTP_LLM_PROM_MAX_NAMES];
    size_t          nnames;
    double          sum[NGX_HTTP_LLM_PROM_MAX_NAMES];
    unsigned        seen[NGX_HTTP_LLM_PROM_MAX_NAMES];
    size_t          limit;
    size_t          total;
    size_t          bad_lines;
    size_t          line_len;
    unsigned        line_too_long;
    unsigned        too_big;
    unsigned char   line[NGX_HTTP_LLM_PROM_LINE_MAX];
} ngx_http_llm_prom_t;


void ngx_http_llm_prom_init(ngx_http_llm_prom_t *pr, const char *const *names,
    size_t nnames, size_t limit);
int ngx_http_llm_prom_feed(ngx_http_llm_prom_t *pr, const unsigned char *data,
    size_t len);
void ngx_http_llm_prom_finish(ngx_http_llm_prom_t *pr);

/* room for any value ngx_http_llm_prom_number() prints, with a NUL */
#define NGX_HTTP_LLM_PROM_NUMBER_LEN  32

size_t ngx_http_llm_prom_number(unsigned char *buf, double v, int decimals);


#endif /* _NGX_HTTP_LLM_PROM_H_INCLUDED_ */
