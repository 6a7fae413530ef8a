# How the body arrives (memory, temp file, chunked, HTTP/2, 1 MiB) and how
# responses leave (streaming, upstream keepalive).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();

our $big = '{"messages":[{"role":"user","content":"' . ("x" x 1048576)
    . '"}],"model":"llama3-8b"}';
our $big_sent = '{"messages":[{"role":"user","content":"' . ("x" x 1048576)
    . '"}],"model":"served"}';

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool_a { server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; keepalive 4; }
llm_model llama3-8b { upstream pool_a; target served; }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
location /v1/ {
    llm_router on;
    client_max_body_size 4m;
    proxy_pass http://$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: a body bigger than client_body_buffer_size goes through a temp file
--- config
location /v1/ {
    llm_router on;
    client_body_buffer_size 1k;
    proxy_pass http://$llm_upstream;
}
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"' . ("y" x 8000) . '"}],"model":"llama3-8b"}'
--- response_body eval
'{"messages":[{"role":"user","content":"' . ("y" x 8000) . '"}],"model":"served"}'
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[error]



=== TEST 2: an unchanged temp-file body is forwarded from the file as is
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; }
--- config
location /v1/ {
    llm_router on;
    client_body_buffer_size 1k;
    proxy_pass http://$llm_upstream;
}
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n" . '{"model":"llama3-8b","messages":[{"role":"user","content":"' . ("z" x 5000) . '"}]}'
--- response_body eval
'{"model":"llama3-8b","messages":[{"role":"user","content":"' . ("z" x 5000) . '"}]}'
--- no_error_log
[error]



=== TEST 3: a chunked client body goes upstream with a Content-Length
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
X-Mock-Echo: 1\r
Connection: close\r
\r
7\r
{\"model\r
e\r
\":\"llama3-8b\",\r
c\r
\"messages\":[\r
2\r
]}\r
0\r
\r
"
--- response_headers
X-Mock-Req-Content-Length: 32
X-Mock-Req-Transfer-Encoding: none
--- response_body chomp
{"model":"served","messages":[]}
--- no_error_log
[error]



=== TEST 4: a 1 MiB body with the model after the messages
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n$::big"
--- response_headers eval
"X-Mock-Request-Length: " . length($::big_sent)
--- response_body eval
$::big_sent
--- timeout: 10
--- no_error_log
[error]



=== TEST 5: HTTP/2 requests are routed and rewritten
The real Test::Nginx writes "http2 on;", which nginx < 1.25.1 does not know:
it skips there; our runner uses "listen ... http2".
--- http2
--- skip_eval: 3: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"model":"llama3-8b","messages":[]}
--- response_body chomp
{"model":"served","messages":[]}
--- no_error_log
[error]



=== TEST 6: HTTP/2 with a body larger than one DATA frame
--- http2
--- skip_eval: 3: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n" . '{"messages":[{"role":"user","content":"' . ("h" x 70000) . '"}],"model":"llama3-8b"}'
--- response_body eval
'{"messages":[{"role":"user","content":"' . ("h" x 70000) . '"}],"model":"served"}'
--- timeout: 10
--- no_error_log
[error]



=== TEST 7: streaming passes every event through to [DONE], the model name restored
--- request
POST /v1/chat/completions
{"model":"llama3-8b","stream":true,"messages":[]}
--- more_headers
X-Mock-Tokens: 3
--- response_headers
Content-Type: text/event-stream
X-Mock-Instance: m1
--- response_body_like chomp
\Adata: \{[^\n]*"model":"llama3-8b"[^\n]*"delta":\{"role":"assistant","content":""\}[^\n]*\n\ndata: [^\n]*"content":"tok0 "[^\n]*\n\ndata: [^\n]*"content":"tok1 "[^\n]*\n\ndata: [^\n]*"content":"tok2 "[^\n]*\n\ndata: [^\n]*"finish_reason":"stop"[^\n]*\n\ndata: \[DONE\]\n\n\z
--- no_error_log
[error]



=== TEST 8: a paced stream arrives complete, with usage when asked
--- request
POST /v1/chat/completions
{"model":"llama3-8b","stream":true,"stream_options":{"include_usage":true}}
--- more_headers
X-Mock-Tokens: 5
X-Mock-Pace-Ms: 40
--- response_body_like chomp
"usage":\{"prompt_tokens":\d+,"completion_tokens":5,"total_tokens":\d+\}\}\n\ndata: \[DONE\]\n\n$
--- no_error_log
[error]



=== TEST 9: upstream keepalive connections are reused
The mock engine counts the requests it has served on each connection.
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}"]
--- response_headers eval
["X-Mock-Conn-Requests: 1", "X-Mock-Conn-Requests: 2"]
--- response_body_like eval
["\"object\":\"chat.completion\"", "\"object\":\"chat.completion\""]
--- no_error_log
[error]



=== TEST 10: the mock echo proves the engine saw one request per call
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/embeddings
{"input":["a","b"],"model":"llama3-8b"}
--- response_headers
X-Mock-Path: /v1/embeddings
X-Mock-Method: POST
--- response_body chomp
{"input":["a","b"],"model":"served"}



=== TEST 11: after an internal redirect the request is not routed twice
A dead pool's 502 goes to a second routed location; the edited body must be
sent as it was, and the variables keep the first routing.
--- http_config
upstream pool_dead { server 127.0.0.1:1; }
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_dead; target served; drop x; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    error_page 502 = @spare;
}
location @spare {
    llm_router on;
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT;
    add_header X-Model $llm_model;
    add_header X-Target $llm_target_model;
}
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"x":1,"model":"llama3-8b"}
--- response_headers
X-Model: llama3-8b
X-Target: served
X-Mock-Path: /v1/chat/completions
--- response_body chomp
{"model":"served"}
--- error_log
connect() failed (111: Connection refused)
--- no_error_log
llm router: 404
