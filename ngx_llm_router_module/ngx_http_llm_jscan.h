
/*
 * ngx_llm_router: a resumable scanner for the top level of a JSON object.
 *
 * The router needs a few top-level fields of the request ("model",
 * "stream", the fields its rules edit) and their byte offsets.  Parsing the
 * whole document into a tree would cost far more than proxying it, so this
 * scanner walks the body once, in the buffers nginx read it into (fed piece
 * by piece, split anywhere), checks the grammar and records each top-level
 * member's offsets.  String contents are skipped with memchr(): escapes and
 * control characters inside them are left to the engine.  Nesting is kept
 * in a bit stack, so deep documents cannot overflow the C stack.
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.
 */


#ifndef _NGX_HTTP_LLM_JSCAN_H_INCLUDED_
#define _NGX_HTTP_LLM_JSCAN_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>


#define NGX_HTTP_LLM_JSCAN_MAX_DEPTH    1024
#define NGX_HTTP_LLM_JSCAN_MAX_MEMBERS  64

/* results */
#define NGX_HTTP_LLM_JSCAN_AGAIN        0
#define NGX_HTTP_LLM_JSCAN_OK           1
#define NGX_HTTP_LLM_JSCAN_INVALID      2   /* not JSON */
#define NGX_HTTP_LLM_JSCAN_NOT_OBJECT   3   /* JSON, but not an object */
#define NGX_HTTP_LLM_JSCAN_TOO_MANY     4   /* over MAX_MEMBERS members */

/* value types */
#define NGX_HTTP_LLM_JSON_STRING        1
#define NGX_HTTP_LLM_JSON_NUMBER        2
#define NGX_HTTP_LLM_JSON_OBJECT        3
#define NGX_HTTP_LLM_JSON_ARRAY         4
#define NGX_HTTP_LLM_JSON_TRUE          5
#define NGX_HTTP_LLM_JSON_FALSE         6
#define NGX_HTTP_LLM_JSON_NULL          7


/* offsets are from the start of the body */
typedef struct {
    off_t           key;          /* the key's first byte, after '"' */
    size_t          key_len;      /* raw, without the quotes */
    off_t           value;        /* the value's first byte */
    off_t           value_end;    /* one past the value */
    unsigned        type;
} ngx_http_llm_jscan_member_t;


typedef struct {
    size_t          nmembers;

    off_t           offset;       /* of the next byte fed */
    off_t           obj_start;    /* the top-level '{' */
    off_t           obj_end;      /* one past the top-level '}' */

    const char     *error;        /* why the body is not valid */
    off_t           error_offset;

    int             result;
    unsigned        state;
    unsigned        sub;          /* progress in a number or a literal */
    unsigned        literal;
    unsigned        escape:1;     /* a backslash ended the last piece */
    unsigned        not_object:1;
    size_t          depth;
    unsigned char   stack[NGX_HTTP_LLM_JSCAN_MAX_DEPTH / 8];
    ngx_http_llm_jscan_member_t  members[NGX_HTTP_LLM_JSCAN_MAX_MEMBERS];
} ngx_http_llm_jscan_t;


/*
 * The members of an object one after another, the grammar not checked: an
 * engine's answer goes to the client whatever it holds, and the router only
 * looks for a member or two in it ("model", the counts of "usage").
 */
typedef struct {
    const unsigned char  *pos;        /* where the next member begins */
    const unsigned char  *last;
    const unsigned char  *key;        /* the member found: the raw key */
    size_t                key_len;
    const unsigned char  *value;      /* its value, whole */
    const unsigned char  *value_end;
} ngx_http_llm_jskim_t;

/* ngx_http_llm_jskim_next() */
#define NGX_HTTP_LLM_JSKIM_MEMBER       1
#define NGX_HTTP_LLM_JSKIM_END          0   /* the object's '}' */
#define NGX_HTTP_LLM_JSKIM_BROKEN       -1  /* cut short or not JSON */


void ngx_http_llm_jscan_init(ngx_http_llm_jscan_t *s);
int ngx_http_llm_jscan_feed(ngx_http_llm_jscan_t *s, const unsigned char *p,
    size_t len);
int ngx_http_llm_jscan_finish(ngx_http_llm_jscan_t *s);
int ngx_http_llm_jscan_is_number(const unsigned char *p, size_t len);
unsigned ngx_http_llm_jscan_type(unsigned char c);

int ngx_http_llm_jskim_open(ngx_http_llm_jskim_t *k, const unsigned char *p,
    size_t len);
int ngx_http_llm_jskim_next(ngx_http_llm_jskim_t *k);

/* one past the string whose opening quote is before p, or NULL if cut */
const unsigned char *ngx_http_llm_jskim_string(const unsigned char *p,
    const unsigned char *last);
/* one past the value that begins at p, or NULL if it is cut short */
const unsigned char *ngx_http_llm_jskim_value(const unsigned char *p,
    const unsigned char *last);


/* past the JSON whitespace at p */

static inline const unsigned char *
ngx_http_llm_jskim_space(const unsigned char *p, const unsigned char *last)
{
    /* compact JSON has none: one test for the byte that is not a space */

    for ( /* void */ ; p < last && *p <= ' '; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            break;
        }
    }

    return p;
}


#endif /* _NGX_HTTP_LLM_JSCAN_H_INCLUDED_ */
