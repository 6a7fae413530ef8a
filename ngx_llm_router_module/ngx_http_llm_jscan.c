
/*
 * ngx_llm_router: a resumable scanner for the top level of a JSON object,
 * and the skimmer.  Not here: anything of nginx; decoding strings (text.c).
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
static int ngx_http_llm_jscan_number(unsigned *sub, unsigned char c);


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


/*
 * The hot loop keeps the state, the depth and the member count in locals
 * (stores into the members would otherwise make the compiler reload them
 * for every byte), runs over digits and whitespace without going back to
 * the switch, and skips a string from quote to quote with memchr().
 */

int
ngx_http_llm_jscan_feed(ngx_http_llm_jscan_t *s, const unsigned char *p,
    size_t len)
{
    off_t                         base;
    size_t                        depth, nmembers;
    unsigned                      state, top, sub;
    const char                   *error, *word;
    unsigned char                 c;
    const unsigned char          *start, *end, *q, *b;
    ngx_http_llm_jscan_member_t  *m;

    if (s->state == ST_DONE) {
        return s->result;
    }

    start = p;
    end = p + len;
    base = s->offset;

    state = s->state;
    depth = s->depth;
    nmembers = s->nmembers;
    sub = s->sub;

    /* a member of the top-level object is a value at depth 1 */

#define pos         (base + (p - start))
#define at_top      (depth == 1 && !s->not_object)
#define in_object   (s->stack[(depth - 1) >> 3] & (1 << ((depth - 1) & 7)))

    if (s->escape && p < end && (state == ST_KEY || state == ST_STRING)) {
        s->escape = 0;
        p++;
    }

    while (p < end) {

        switch (state) {

        case ST_KEY:
        case ST_STRING:
            q = memchr(p, '"', end - p);

            if (q == NULL) {

                /* an odd run of backslashes at the end escapes what follows */

                for (b = end; b > p && b[-1] == '\\'; b--) { /* void */ }

                s->escape = (end - b) & 1;
                p = end;
                continue;
            }

            if (q > p && q[-1] == '\\') {
                for (b = q - 1; b > p && b[-1] == '\\'; b--) { /* void */ }

                if ((q - b) & 1) {
                    p = q + 1;          /* an escaped quote */
                    continue;
                }
            }

            p = q;

            if (state == ST_KEY) {
                if (at_top) {
                    m = &s->members[nmembers - 1];
                    m->key_len = (size_t) (pos - m->key);
                }

                state = ST_COLON;
                p++;
                continue;
            }

            if (at_top) {
                s->members[nmembers - 1].value_end = pos + 1;
            }

            state = ST_AFTER;
            p++;
            continue;

        case ST_NUMBER:
            c = *p;

            if (c >= '0' && c <= '9'
                && (sub == NUM_INT || sub == NUM_FRAC || sub == NUM_EXP))
            {
                for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
                    /* void */
                }

                continue;
            }

            if (ngx_http_llm_jscan_number(&sub, c)) {
                p++;
                continue;
            }

            if (sub != NUM_ZERO && sub != NUM_INT
                && sub != NUM_FRAC && sub != NUM_EXP)
            {
                error = "invalid number";
                goto failed;
            }

            if (at_top) {
                s->members[nmembers - 1].value_end = pos;
            }

            state = ST_AFTER;
            continue;

        default:
            break;
        }

        c = *p;

        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            if (state == ST_LITERAL) {
                error = "invalid literal";
                goto failed;
            }

            if (state == ST_AFTER && depth == 0) {
                state = ST_END;
            }

            p++;
            continue;
        }

        switch (state) {

        case ST_BEGIN:
            if (c == '{') {
                s->obj_start = pos;

            } else {
                s->not_object = 1;
            }

            state = ST_VALUE;
            continue;

        case ST_VALUE:
            top = at_top;

            if (top) {
                s->members[nmembers - 1].value = pos;
            }

            switch (c) {

            case '"':
                if (top) {
                    s->members[nmembers - 1].type = NGX_HTTP_LLM_JSON_STRING;
                }

                state = ST_STRING;
                break;

            case '{':
            case '[':
                if (depth == NGX_HTTP_LLM_JSCAN_MAX_DEPTH) {
                    error = "nesting too deep";
                    goto failed;
                }

                if (top) {
                    s->members[nmembers - 1].type = (c == '{')
                                                    ? NGX_HTTP_LLM_JSON_OBJECT
                                                    : NGX_HTTP_LLM_JSON_ARRAY;
                }

                if (c == '{') {
                    s->stack[depth >> 3] |= (unsigned char) (1 << (depth & 7));
                    state = ST_OBJ_FIRST;

                } else {
                    s->stack[depth >> 3] &=
                                       (unsigned char) ~(1 << (depth & 7));
                    state = ST_ARR_FIRST;
                }

                depth++;
                break;

            case 't':
            case 'f':
            case 'n':
                s->literal = (c == 't') ? 0 : (c == 'f') ? 1 : 2;

                if (top) {
                    s->members[nmembers - 1].type = NGX_HTTP_LLM_JSON_TRUE
                                                    + s->literal;
                }

                state = ST_LITERAL;
                sub = 1;
                break;

            default:
                if (c != '-' && (c < '0' || c > '9')) {
                    error = "unexpected character";
                    goto failed;
                }

                if (top) {
                    s->members[nmembers - 1].type = NGX_HTTP_LLM_JSON_NUMBER;
                }

                state = ST_NUMBER;
                sub = (c == '-') ? NUM_MINUS : (c == '0') ? NUM_ZERO : NUM_INT;
                break;
            }

            break;

        case ST_OBJ_FIRST:
        case ST_KEY_NEXT:
            if (c == '}' && state == ST_OBJ_FIRST) {
                state = ST_AFTER;
                continue;
            }

            if (c != '"') {
                error = "expected a string key";
                goto failed;
            }

            if (at_top) {
                if (nmembers == NGX_HTTP_LLM_JSCAN_MAX_MEMBERS) {
                    s->error = "too many top-level fields";
                    s->error_offset = pos;
                    s->result = NGX_HTTP_LLM_JSCAN_TOO_MANY;
                    goto done;
                }

                s->members[nmembers].key = pos + 1;
                nmembers++;
            }

            state = ST_KEY;
            break;

        case ST_ARR_FIRST:
            state = (c == ']') ? ST_AFTER : ST_VALUE;
            continue;

        case ST_COLON:
            if (c != ':') {
                error = "expected ':' after a key";
                goto failed;
            }

            state = ST_VALUE;
            break;

        case ST_LITERAL:
            word = ngx_http_llm_jscan_literals[s->literal];

            if (c != (unsigned char) word[sub]) {
                error = "invalid literal";
                goto failed;
            }

            if (word[++sub] == '\0') {
                if (at_top) {
                    s->members[nmembers - 1].value_end = pos + 1;
                }

                state = ST_AFTER;
            }

            break;

        case ST_AFTER:
            if (depth == 0) {
                state = ST_END;
                continue;
            }

            if (c == ',') {
                state = in_object ? ST_KEY_NEXT : ST_VALUE;
                break;
            }

            if (c == (in_object ? '}' : ']')) {
                depth--;

                if (depth == 0 && !s->not_object) {
                    s->obj_end = pos + 1;
                }

                if (at_top) {
                    s->members[nmembers - 1].value_end = pos + 1;
                }

                break;
            }

            error = "expected ',' or a closing bracket";
            goto failed;

        default: /* ST_END */
            error = "trailing data after the document";
            goto failed;
        }

        p++;
    }

#undef pos
#undef at_top
#undef in_object

    s->offset += len;
    s->state = state;
    s->depth = depth;
    s->nmembers = nmembers;
    s->sub = sub;

    return NGX_HTTP_LLM_JSCAN_AGAIN;

failed:

    s->depth = depth;
    s->nmembers = nmembers;

    return ngx_http_llm_jscan_fail(s, base + (p - start), error);

done:

    s->state = ST_DONE;
    s->depth = depth;
    s->nmembers = nmembers;

    return s->result;
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

        if (s->depth == 1 && !s->not_object) {
            s->members[s->nmembers - 1].value_end = s->offset;
        }

        s->state = ST_AFTER;
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


/* the type of a valid value that begins with c */

unsigned
ngx_http_llm_jscan_type(unsigned char c)
{
    switch (c) {
    case '"':
        return NGX_HTTP_LLM_JSON_STRING;
    case '{':
        return NGX_HTTP_LLM_JSON_OBJECT;
    case '[':
        return NGX_HTTP_LLM_JSON_ARRAY;
    case 't':
        return NGX_HTTP_LLM_JSON_TRUE;
    case 'f':
        return NGX_HTTP_LLM_JSON_FALSE;
    case 'n':
        return NGX_HTTP_LLM_JSON_NULL;
    default:
        return NGX_HTTP_LLM_JSON_NUMBER;
    }
}


/* 1 if p, after whitespace, opens an object; its members follow */

int
ngx_http_llm_jskim_open(ngx_http_llm_jskim_t *k, const unsigned char *p,
    size_t len)
{
    k->last = p + len;
    k->pos = ngx_http_llm_jskim_space(p, k->last);

    if (k->pos == k->last || *k->pos != '{') {
        return 0;
    }

    k->pos++;

    return 1;
}


/*
 * The next member: its key and its whole value.  A value is delimited,
 * not checked: a string from quote to quote, an object or an array by
 * counting brackets outside strings, anything else up to ',', a bracket
 * or whitespace.
 */

int
ngx_http_llm_jskim_next(ngx_http_llm_jskim_t *k)
{
    const unsigned char  *p, *last;

    last = k->last;
    p = ngx_http_llm_jskim_space(k->pos, last);

    if (p < last && *p == '}') {
        k->pos = p;
        return NGX_HTTP_LLM_JSKIM_END;
    }

    if (p == last || *p != '"') {
        goto broken;
    }

    k->key = p + 1;

    p = ngx_http_llm_jskim_string(p + 1, last);
    if (p == NULL) {
        goto broken;
    }

    k->key_len = (size_t) (p - 1 - k->key);

    p = ngx_http_llm_jskim_space(p, last);

    if (p == last || *p != ':') {
        goto broken;
    }

    p = ngx_http_llm_jskim_space(p + 1, last);
    k->value = p;

    p = ngx_http_llm_jskim_value(p, last);
    if (p == NULL || p == k->value) {
        goto broken;
    }

    k->value_end = p;

    p = ngx_http_llm_jskim_space(p, last);

    if (p < last && *p == ',') {
        p++;

    } else if (p == last || *p != '}') {
        p = last;               /* the next call says it is broken */
    }

    k->pos = p;

    return NGX_HTTP_LLM_JSKIM_MEMBER;

broken:

    k->pos = last;

    return NGX_HTTP_LLM_JSKIM_BROKEN;
}


/* p follows an opening quote: one past the closing quote, or NULL */

const unsigned char *
ngx_http_llm_jskim_string(const unsigned char *p, const unsigned char *last)
{
    const unsigned char  *q, *b;

    for ( ;; ) {
        q = memchr(p, '"', last - p);

        if (q == NULL) {
            return NULL;
        }

        /* the byte before p is a quote: backslashes are counted up to it */

        for (b = q; b > p && b[-1] == '\\'; b--) { /* void */ }

        if (((q - b) & 1) == 0) {
            return q + 1;
        }

        p = q + 1;
    }
}


/* one past the value that begins at p, or NULL if it is cut short */

const unsigned char *
ngx_http_llm_jskim_value(const unsigned char *p, const unsigned char *last)
{
    size_t         depth;
    unsigned char  c;

    if (p < last && *p == '"') {
        return ngx_http_llm_jskim_string(p + 1, last);
    }

    if (p < last && *p != '{' && *p != '[') {

        /* a number or a literal: up to a delimiter or the end */

        for ( /* void */ ; p < last; p++) {
            c = *p;

            if (c == ',' || c == '}' || c == ']' || c <= ' ') {
                break;
            }
        }

        return p;
    }

    depth = 0;

    while (p < last) {
        c = *p;

        switch (c) {

        case '"':
            p = ngx_http_llm_jskim_string(p + 1, last);

            if (p == NULL) {
                return NULL;
            }

            continue;

        case '{':
        case '[':
            depth++;
            break;

        case '}':
        case ']':
            if (--depth == 0) {
                return p + 1;
            }

            break;

        default:
            break;
        }

        p++;
    }

    return NULL;
}
