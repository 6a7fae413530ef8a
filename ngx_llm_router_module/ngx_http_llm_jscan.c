
/*
 * ngx_llm_router: a resumable scanner for the top level of a JSON object.
 */


#include <string.h>

#include "ngx_http_llm_jscan.h"


/* states */
#define ST_BEGIN       0    /* before the document */
#define ST_VALUE       1    /* a value is expected */
#define ST_OBJ_FIRST   2    /* after '{': a key or '}' */
#define ST_ARR_FIRST   3    /* after '[': a value or ']' */
#define ST_KEY_NEXT    4    /* after ',' in an object: a key */
#define ST_KEY         5    /* inside a key */
#define ST_COLON       6    /* after a key */
#define ST_STRING      7    /* inside a string value */
#define ST_NUMBER      8
#define ST_LITERAL     9
#define ST_AFTER       10   /* after a value: ',' or a closing bracket */
#define ST_END         11   /* after the document: whitespace only */
#define ST_DONE        12   /* a result is known */

/* number progress */
#define NUM_MINUS      0    /* after '-' */
#define NUM_ZERO       1    /* a leading zero */
#define NUM_INT        2
#define NUM_DOT        3
#define NUM_FRAC       4
#define NUM_E          5
#define NUM_E_SIGN     6
#define NUM_EXP        7


static const char  *ngx_http_llm_jscan_literals[] = { "true", "false", "null" };


static int ngx_http_llm_jscan_fail(ngx_http_llm_jscan_t *s, off_t offset,
    const char *error);
static int ngx_http_llm_jscan_value_start(ngx_http_llm_jscan_t *s,
    unsigned char c, off_t offset);
static void ngx_http_llm_jscan_value_end(ngx_http_llm_jscan_t *s,
    off_t offset);
static const unsigned char *ngx_http_llm_jscan_string(
    ngx_http_llm_jscan_t *s, const unsigned char *p,
    const unsigned char *end, off_t offset);
static int ngx_http_llm_jscan_number(unsigned *sub, unsigned char c);


#define ngx_http_llm_jscan_ws(c)                                              \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

#define ngx_http_llm_jscan_push(s, object)                                    \
    if ((object)) {                                                           \
        (s)->stack[(s)->depth >> 3] |= (unsigned char) (1 << ((s)->depth & 7));\
    } else {                                                                  \
        (s)->stack[(s)->depth >> 3] &=                                        \
                                  (unsigned char) ~(1 << ((s)->depth & 7));   \
    }                                                                         \
    (s)->depth++

#define ngx_http_llm_jscan_in_object(s)                                       \
    ((s)->stack[((s)->depth - 1) >> 3] & (1 << (((s)->depth - 1) & 7)))

/* members of the top-level object are values at depth 1 */
#define ngx_http_llm_jscan_top_member(s)                                      \
    ((s)->depth == 1 && !(s)->not_object)


void
ngx_http_llm_jscan_init(ngx_http_llm_jscan_t *s)
{
    /* the bit stack and the members are written before they are read */

    memset(s, 0, offsetof(ngx_http_llm_jscan_t, stack));

    s->state = ST_BEGIN;
    s->obj_start = -1;
}


static int
ngx_http_llm_jscan_fail(ngx_http_llm_jscan_t *s, off_t offset,
    const char *error)
{
    s->error = error;
    s->error_offset = offset;
    s->state = ST_DONE;
    s->result = NGX_HTTP_LLM_JSCAN_INVALID;

    return s->result;
}


int
ngx_http_llm_jscan_feed(ngx_http_llm_jscan_t *s, const unsigned char *p,
    size_t len)
{
    unsigned char         c;
    const char           *word;
    const unsigned char  *start, *end;

    start = p;
    end = p + len;

#define pos  (s->offset + (p - start))

    while (p < end) {

        if (s->state == ST_DONE) {
            return s->result;
        }

        if (s->state == ST_KEY || s->state == ST_STRING) {
            p = ngx_http_llm_jscan_string(s, p, end, pos);
            continue;
        }

        c = *p;

        switch (s->state) {

        case ST_BEGIN:
            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (c == '{') {
                s->obj_start = pos;

            } else {
                s->not_object = 1;
            }

            s->state = ST_VALUE;
            continue;

        case ST_VALUE:
            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (ngx_http_llm_jscan_value_start(s, c, pos) != 0) {
                return s->result;
            }

            break;

        case ST_OBJ_FIRST:
        case ST_KEY_NEXT:
            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (c == '}' && s->state == ST_OBJ_FIRST) {
                s->state = ST_AFTER;
                continue;
            }

            if (c != '"') {
                return ngx_http_llm_jscan_fail(s, pos,
                                               "expected a string key");
            }

            if (ngx_http_llm_jscan_top_member(s)) {
                if (s->nmembers == NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
                    s->error = "too many top-level fields";
                    s->error_offset = pos;
                    s->state = ST_DONE;
                    s->result = NGX_HTTP_LLM_JSCAN_TOO_MANY;
                    return s->result;
                }

                s->members[s->nmembers].key = pos + 1;
                s->nmembers++;
            }

            s->state = ST_KEY;
            break;

        case ST_ARR_FIRST:
            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (c == ']') {
                s->state = ST_AFTER;
                continue;
            }

            s->state = ST_VALUE;
            continue;

        case ST_COLON:
            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (c != ':') {
                return ngx_http_llm_jscan_fail(s, pos,
                                               "expected ':' after a key");
            }

            s->state = ST_VALUE;
            break;

        case ST_NUMBER:
            if (ngx_http_llm_jscan_number(&s->sub, c)) {
                break;
            }

            if (s->sub != NUM_ZERO && s->sub != NUM_INT
                && s->sub != NUM_FRAC && s->sub != NUM_EXP)
            {
                return ngx_http_llm_jscan_fail(s, pos, "invalid number");
            }

            ngx_http_llm_jscan_value_end(s, pos);
            continue;

        case ST_LITERAL:
            word = ngx_http_llm_jscan_literals[s->literal];

            if (c != (unsigned char) word[s->sub]) {
                return ngx_http_llm_jscan_fail(s, pos, "invalid literal");
            }

            if (word[++s->sub] == '\0') {
                ngx_http_llm_jscan_value_end(s, pos + 1);
            }

            break;

        case ST_AFTER:
            if (s->depth == 0) {
                s->state = ST_END;
                continue;
            }

            if (ngx_http_llm_jscan_ws(c)) {
                break;
            }

            if (c == ',') {
                s->state = ngx_http_llm_jscan_in_object(s) ? ST_KEY_NEXT
                                                           : ST_VALUE;
                break;
            }

            if (c == (ngx_http_llm_jscan_in_object(s) ? '}' : ']')) {
                s->depth--;

                if (s->depth == 0 && !s->not_object) {
                    s->obj_end = pos + 1;
                }

                ngx_http_llm_jscan_value_end(s, pos + 1);
                break;
            }

            return ngx_http_llm_jscan_fail(s, pos,
                                           "expected ',' or a closing "
                                           "bracket");

        default: /* ST_END */
            if (!ngx_http_llm_jscan_ws(c)) {
                return ngx_http_llm_jscan_fail(s, pos,
                                               "trailing data after the "
                                               "document");
            }

            break;
        }

        p++;
    }

    s->offset += len;

#undef pos

    return s->state == ST_DONE ? s->result : NGX_HTTP_LLM_JSCAN_AGAIN;
}


static int
ngx_http_llm_jscan_value_start(ngx_http_llm_jscan_t *s, unsigned char c,
    off_t offset)
{
    unsigned  type;

    switch (c) {

    case '{':
    case '[':
        if (s->depth == NGX_HTTP_LLM_JSCAN_MAX_DEPTH) {
            return ngx_http_llm_jscan_fail(s, offset, "nesting too deep");
        }

        type = (c == '{') ? NGX_HTTP_LLM_JSON_OBJECT : NGX_HTTP_LLM_JSON_ARRAY;
        break;

    case '"':
        type = NGX_HTTP_LLM_JSON_STRING;
        break;

    case 't':
    case 'f':
    case 'n':
        type = (c == 't') ? NGX_HTTP_LLM_JSON_TRUE
               : (c == 'f') ? NGX_HTTP_LLM_JSON_FALSE
               : NGX_HTTP_LLM_JSON_NULL;
        break;

    default:
        if (c != '-' && (c < '0' || c > '9')) {
            return ngx_http_llm_jscan_fail(s, offset, "unexpected character");
        }

        type = NGX_HTTP_LLM_JSON_NUMBER;
        break;
    }

    if (ngx_http_llm_jscan_top_member(s)) {
        s->members[s->nmembers - 1].value = offset;
        s->members[s->nmembers - 1].type = type;
    }

    switch (type) {

    case NGX_HTTP_LLM_JSON_OBJECT:
    case NGX_HTTP_LLM_JSON_ARRAY:
        ngx_http_llm_jscan_push(s, c == '{');
        s->state = (c == '{') ? ST_OBJ_FIRST : ST_ARR_FIRST;
        break;

    case NGX_HTTP_LLM_JSON_STRING:
        s->state = ST_STRING;
        break;

    case NGX_HTTP_LLM_JSON_NUMBER:
        s->state = ST_NUMBER;
        s->sub = (c == '-') ? NUM_MINUS : (c == '0') ? NUM_ZERO : NUM_INT;
        break;

    default:
        s->state = ST_LITERAL;
        s->literal = type - NGX_HTTP_LLM_JSON_TRUE;
        s->sub = 1;
        break;
    }

    return 0;
}


/* a value ended at offset: record it if it is a top-level member's */

static void
ngx_http_llm_jscan_value_end(ngx_http_llm_jscan_t *s, off_t offset)
{
    if (ngx_http_llm_jscan_top_member(s)) {
        s->members[s->nmembers - 1].value_end = offset;
    }

    s->state = ST_AFTER;
}


/* inside a key or a string value, p at offset: finds the closing quote */

static const unsigned char *
ngx_http_llm_jscan_string(ngx_http_llm_jscan_t *s, const unsigned char *p,
    const unsigned char *end, off_t offset)
{
    size_t                        n;
    const unsigned char          *q, *b, *start;
    ngx_http_llm_jscan_member_t  *m;

    if (s->escape) {
        s->escape = 0;
        return p + 1;
    }

    start = p;

    for ( ;; ) {
        q = memchr(p, '"', end - p);

        /* the quote, or the piece's end, after an odd run of backslashes */

        for (b = (q ? q : end); b > p && b[-1] == '\\'; b--) { /* void */ }

        n = (q ? q : end) - b;

        if (q == NULL) {
            s->escape = n & 1;
            return end;
        }

        if ((n & 1) == 0) {
            break;
        }

        p = q + 1;
    }

    offset += q - start;

    if (s->state == ST_KEY) {
        if (ngx_http_llm_jscan_top_member(s)) {
            m = &s->members[s->nmembers - 1];
            m->key_len = (size_t) (offset - m->key);
        }

        s->state = ST_COLON;
        return q + 1;
    }

    ngx_http_llm_jscan_value_end(s, offset + 1);

    return q + 1;
}


/* 1 if c continues the number */

static int
ngx_http_llm_jscan_number(unsigned *sub, unsigned char c)
{
    int  digit;

    digit = (c >= '0' && c <= '9');

    switch (*sub) {

    case NUM_MINUS:
        if (!digit) {
            return 0;
        }

        *sub = (c == '0') ? NUM_ZERO : NUM_INT;
        return 1;

    case NUM_ZERO:
    case NUM_INT:
        if (digit && *sub == NUM_INT) {
            return 1;
        }

        if (c == '.') {
            *sub = NUM_DOT;
            return 1;
        }

        if (c == 'e' || c == 'E') {
            *sub = NUM_E;
            return 1;
        }

        return 0;

    case NUM_DOT:
    case NUM_FRAC:
        if (digit) {
            *sub = NUM_FRAC;
            return 1;
        }

        if (*sub == NUM_FRAC && (c == 'e' || c == 'E')) {
            *sub = NUM_E;
            return 1;
        }

        return 0;

    case NUM_E:
        if (c == '+' || c == '-') {
            *sub = NUM_E_SIGN;
            return 1;
        }

        /* fall through */

    default: /* NUM_E_SIGN, NUM_EXP */
        if (digit) {
            *sub = NUM_EXP;
            return 1;
        }

        return 0;
    }
}


int
ngx_http_llm_jscan_finish(ngx_http_llm_jscan_t *s)
{
    if (s->state == ST_DONE) {
        return s->result;
    }

    /* a number may end with the document */

    if (s->state == ST_NUMBER) {
        if (s->sub != NUM_ZERO && s->sub != NUM_INT
            && s->sub != NUM_FRAC && s->sub != NUM_EXP)
        {
            return ngx_http_llm_jscan_fail(s, s->offset, "invalid number");
        }

        ngx_http_llm_jscan_value_end(s, s->offset);
    }

    if (s->state == ST_BEGIN) {
        return ngx_http_llm_jscan_fail(s, s->offset, "the body is empty");
    }

    if ((s->state != ST_AFTER && s->state != ST_END) || s->depth != 0) {
        return ngx_http_llm_jscan_fail(s, s->offset, "unexpected end of data");
    }

    s->state = ST_DONE;
    s->result = s->not_object ? NGX_HTTP_LLM_JSCAN_NOT_OBJECT
                              : NGX_HTTP_LLM_JSCAN_OK;

    return s->result;
}


/* the whole of p is one JSON number */

int
ngx_http_llm_jscan_is_number(const unsigned char *p, size_t len)
{
    unsigned              sub;
    const unsigned char  *end;

    end = p + len;

    if (p == end || (*p != '-' && (*p < '0' || *p > '9'))) {
        return 0;
    }

    sub = (*p == '-') ? NUM_MINUS : (*p == '0') ? NUM_ZERO : NUM_INT;

    for (p++; p < end; p++) {
        if (!ngx_http_llm_jscan_number(&sub, *p)) {
            return 0;
        }
    }

    return sub == NUM_ZERO || sub == NUM_INT || sub == NUM_FRAC
           || sub == NUM_EXP;
}
