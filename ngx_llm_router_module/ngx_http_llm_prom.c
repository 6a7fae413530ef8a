
/*
 * ngx_llm_router: an incremental parser of the Prometheus text format.
 * Not here: anything of nginx; fetching a scrape (check.c); writing it out
 * (prometheus.c).
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "ngx_http_llm_prom.h"


static void ngx_http_llm_prom_line(ngx_http_llm_prom_t *pr,
    const unsigned char *p, const unsigned char *end);
static const unsigned char *ngx_http_llm_prom_skip_labels(
    const unsigned char *p, const unsigned char *end);
static int ngx_http_llm_prom_value(const unsigned char *p,
    const unsigned char *end, double *value);


#define ngx_http_llm_prom_space(c)  ((c) == ' ' || (c) == '\t')

#define ngx_http_llm_prom_name_start(c)                                       \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                \
     || (c) == '_' || (c) == ':')

#define ngx_http_llm_prom_name_char(c)                                        \
    (ngx_http_llm_prom_name_start(c) || ((c) >= '0' && (c) <= '9'))


void
ngx_http_llm_prom_init(ngx_http_llm_prom_t *pr, const char *const *names,
    size_t nnames, size_t limit)
{
    size_t  i;

    memset(pr, 0, sizeof(ngx_http_llm_prom_t));

    if (nnames > NGX_HTTP_LLM_PROM_MAX_NAMES) {
        nnames = NGX_HTTP_LLM_PROM_MAX_NAMES;
    }

    for (i = 0; i < nnames; i++) {
        pr->names[i] = names[i];
    }

    pr->nnames = nnames;
    pr->limit = limit;
}


/* returns NGX_HTTP_LLM_PROM_TOO_BIG once the limit is passed */

int
ngx_http_llm_prom_feed(ngx_http_llm_prom_t *pr, const unsigned char *data,
    size_t len)
{
    size_t               n;
    const unsigned char  *p, *end, *nl;

    if (pr->too_big) {
        return NGX_HTTP_LLM_PROM_TOO_BIG;
    }

    if (len > pr->limit - pr->total) {
        len = pr->limit - pr->total;
        pr->too_big = 1;
    }

    pr->total += len;

    p = data;
    end = data + len;

    while (p < end) {
        nl = memchr(p, '\n', end - p);
        n = (nl ? nl : end) - p;

        if (pr->line_len + n > sizeof(pr->line)) {
            pr->line_too_long = 1;
            n = 0;
        }

        memcpy(pr->line + pr->line_len, p, n);
        pr->line_len += n;

        if (nl == NULL) {
            break;
        }

        if (pr->line_too_long) {
            pr->bad_lines++;

        } else {
            ngx_http_llm_prom_line(pr, pr->line, pr->line + pr->line_len);
        }

        pr->line_len = 0;
        pr->line_too_long = 0;
        p = nl + 1;
    }

    return pr->too_big ? NGX_HTTP_LLM_PROM_TOO_BIG : NGX_HTTP_LLM_PROM_OK;
}


/* the last line may lack its newline; a truncated body's is not trusted */

void
ngx_http_llm_prom_finish(ngx_http_llm_prom_t *pr)
{
    if (pr->line_len == 0 && !pr->line_too_long) {
        return;
    }

    if (pr->line_too_long || pr->too_big) {
        pr->bad_lines++;

    } else {
        ngx_http_llm_prom_line(pr, pr->line, pr->line + pr->line_len);
    }

    pr->line_len = 0;
    pr->line_too_long = 0;
}


/* name{labels} value [timestamp] */

static void
ngx_http_llm_prom_line(ngx_http_llm_prom_t *pr, const unsigned char *p,
    const unsigned char *end)
{
    size_t               i, len;
    double               value;
    const unsigned char  *name;

    if (end > p && end[-1] == '\r') {
        end--;
    }

    while (p < end && ngx_http_llm_prom_space(*p)) {
        p++;
    }

    if (p == end || *p == '#') {
        return;
    }

    if (!ngx_http_llm_prom_name_start(*p)) {
        pr->bad_lines++;
        return;
    }

    name = p;

    while (p < end && ngx_http_llm_prom_name_char(*p)) {
        p++;
    }

    len = p - name;

    if (p < end && *p == '{') {
        p = ngx_http_llm_prom_skip_labels(p + 1, end);
        if (p == NULL) {
            pr->bad_lines++;
            return;
        }
    }

    if (p == end || !ngx_http_llm_prom_space(*p)) {
        pr->bad_lines++;
        return;
    }

    while (p < end && ngx_http_llm_prom_space(*p)) {
        p++;
    }

    if (ngx_http_llm_prom_value(p, end, &value) != 0) {
        pr->bad_lines++;
        return;
    }

    for (i = 0; i < pr->nnames; i++) {
        if (strlen(pr->names[i]) == len
            && memcmp(pr->names[i], name, len) == 0)
        {
            /* finite samples can still sum to Inf: such a one is bad */

            if (!isfinite(pr->sum[i] + value)) {
                pr->bad_lines++;
                return;
            }

            pr->sum[i] += value;
            pr->seen[i] = 1;
            return;
        }
    }
}


/* p is past '{'; returns one past the closing '}' */

static const unsigned char *
ngx_http_llm_prom_skip_labels(const unsigned char *p, const unsigned char *end)
{
    int  quoted;

    quoted = 0;

    for ( /* void */ ; p < end; p++) {

        if (quoted) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                quoted = 0;
            }

            continue;
        }

        if (*p == '"') {
            quoted = 1;

        } else if (*p == '}') {
            return p + 1;
        }
    }

    return NULL;
}


/* a finite number; NaN, Inf and anything unparsable are refused */

static int
ngx_http_llm_prom_value(const unsigned char *p, const unsigned char *end,
    double *value)
{
    char                  buf[64], *last;
    size_t                len;
    const unsigned char  *v;

    v = p;

    while (p < end && !ngx_http_llm_prom_space(*p)) {
        p++;
    }

    len = p - v;

    if (len == 0 || len >= sizeof(buf)) {
        return -1;
    }

    memcpy(buf, v, len);
    buf[len] = '\0';

    /* strtod() would also take hex, "inf" and "nan": allow digits only */

    if (strspn(buf, "0123456789+-.eE") != len) {
        return -1;
    }

    *value = strtod(buf, &last);

    if (last != buf + len || !isfinite(*value)) {
        return -1;
    }

    return 0;
}


/*
 * A value as the text format spells it: NaN, +Inf, -Inf; below 1e15 with
 * "decimals" places (0 to 9), else in %.17g ("1e+300"): never longer than
 * NGX_HTTP_LLM_PROM_NUMBER_LEN - 1 bytes, no NUL written.  Finite values
 * are JSON numbers too.  nginx's own "%f" casts to an integer, undefined
 * for NaN, Inf and anything past 2^63.
 */

size_t
ngx_http_llm_prom_number(unsigned char *buf, double v, int decimals)
{
    int   n;
    char  tmp[NGX_HTTP_LLM_PROM_NUMBER_LEN];

    if (isnan(v)) {
        memcpy(buf, "NaN", 3);
        return 3;
    }

    if (isinf(v)) {
        memcpy(buf, v > 0 ? "+Inf" : "-Inf", 4);
        return 4;
    }

    if (decimals < 0) {
        decimals = 0;

    } else if (decimals > 9) {
        decimals = 9;
    }

    if (fabs(v) < 1e15) {
        n = snprintf(tmp, sizeof(tmp), "%.*f", decimals, v);

    } else {
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    }

    if (n <= 0 || (size_t) n >= sizeof(tmp)) {
        memcpy(buf, "NaN", 3);      /* cannot happen: the widths are known */
        return 3;
    }

    memcpy(buf, tmp, n);

    return n;
}
