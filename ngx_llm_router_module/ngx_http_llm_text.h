
/*
 * ngx_llm_router: text from clients and engines, checked and quoted.
 *
 * Names from the body ("model", "user") are decoded from their JSON
 * strings and checked before they reach a variable, a header, a log line
 * or an error body; whatever text the router writes into JSON is quoted
 * into valid JSON and valid UTF-8; the texts of a prompt are walked where
 * they lie, without building a tree, to estimate its size and to give an
 * engine's /tokenize.
 *
 * Pure C with no nginx dependency, so that t/unit/ can test it alone.
 */


#ifndef _NGX_HTTP_LLM_TEXT_H_INCLUDED_
#define _NGX_HTTP_LLM_TEXT_H_INCLUDED_


#include <stddef.h>


/* the longest name, in bytes (decoded) */
#define NGX_HTTP_LLM_NAME_MAX       256

/* ngx_http_llm_text_name() */
#define NGX_HTTP_LLM_NAME_OK        0
#define NGX_HTTP_LLM_NAME_CONTROL   1   /* a byte below 0x20, or 0x7f */
#define NGX_HTTP_LLM_NAME_UTF8      2   /* not valid UTF-8 */
#define NGX_HTTP_LLM_NAME_LONG      3   /* over NGX_HTTP_LLM_NAME_MAX */

/* ngx_http_llm_text_decode(): a bad escape */
#define NGX_HTTP_LLM_TEXT_BAD       ((size_t) -1)


/* the texts of a prompt: "messages", "prompt" or "input" */
typedef struct {
    const unsigned char  *pos;
    const unsigned char  *last;
    const unsigned char  *parts;      /* in a message's "content" parts */
    const unsigned char  *parts_last;
    size_t                messages;   /* chat messages (objects) seen */
    unsigned              state;
    unsigned              chat:1;     /* objects are chat messages */
} ngx_http_llm_texts_t;


size_t ngx_http_llm_utf8_len(const unsigned char *p,
    const unsigned char *last);
int ngx_http_llm_text_name(const unsigned char *p, size_t len);

size_t ngx_http_llm_text_decode(unsigned char *dst, const unsigned char *src,
    size_t len);
size_t ngx_http_llm_text_quote(unsigned char *dst, const unsigned char *src,
    size_t len, int json);
int ngx_http_llm_text_token(const unsigned char *p, size_t len);
size_t ngx_http_llm_text_log(unsigned char *dst, const unsigned char *src,
    size_t len);

void ngx_http_llm_texts_init(ngx_http_llm_texts_t *t, const unsigned char *p,
    size_t len, int chat);
int ngx_http_llm_texts_next(ngx_http_llm_texts_t *t,
    const unsigned char **text, size_t *len);

long ngx_http_llm_text_array_len(const unsigned char *p, size_t len);
int ngx_http_llm_text_key_is(const unsigned char *p, size_t len,
    const char *name, size_t n);


#endif /* _NGX_HTTP_LLM_TEXT_H_INCLUDED_ */
