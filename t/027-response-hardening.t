# The response side cannot be skipped or corrupted: what a response or
# chunk hook must see and cannot (an answer over llm_response_buffer_size,
# an event over llm_event_max_size, a compressed answer) fails closed
# unless llm_hook_on_error is pass; the engine is not asked for a
# compressed answer; a stream the router may extend loses the engine's
# Content-Length; Responses and Messages streams end by their own last
# event, and a cut one ends with that API's error event; the time to the
# first token is found whatever spaces the engine writes.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1", '--tokens', 3);

no_shuffle();

# an event over the default llm_event_max_size (32k), served as a file
use File::Temp qw(tempdir);
our $files = tempdir(CLEANUP => 1);
open my $fh, '>', "$files/big" or die $!;
print $fh 'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}' . "\n\n"
    . 'data: {"choices":[{"index":0,"delta":{"content":"' . ('x' x 40000)
    . '"}}]}' . "\n\ndata: [DONE]\n\n";
close $fh;

add_block_preprocessor(sub {
    my $block = shift;
    my $extra = $block->location_extra // '';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream back {
    llm_engine openai;
    server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
}
llm_model m { upstream pool; }
llm_model t { upstream pool; target engine-t; }
llm_model h { upstream pool; hook $FindBin::Bin/hooks/seen.lua; }
llm_model b { upstream back; }
llm_model bt { upstream back; target engine-bt; }
llm_model bh { upstream back; hook $FindBin::Bin/hooks/seen.lua; }
log_format audit escape=json 'AUDIT {"model":"\$llm_model","status":"\$status","ttft":"\$llm_ttft","events":"\$llm_stream_events","error":"\$llm_error"}';
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location /gzip/ {
        gzip on;
        gzip_min_length 1;
        gzip_types application/json text/event-stream;
        add_header X-AE "\$http_accept_encoding";
        add_header X-Seen "\$http_x_after";
        default_type application/json;
        return 200 '{"id":"x","model":"engine-bt","choices":[{"index":0,"message":{"role":"assistant","content":"a gzip-able answer, a gzip-able answer, a gzip-able answer"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}';
    }
    location /always-gzip/ {
        add_header Content-Encoding gzip;
        default_type application/json;
        return 200 '{"id":"x","model":"engine-bt","choices":[]}';
    }
    location /sse-length/ {
        default_type text/event-stream;
        return 200 'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\\n\\n';
    }
    location /sse-big/ {
        proxy_method GET;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}/files/big;
    }
    location /files/ {
        alias $::files/;
        default_type text/event-stream;
    }
    location / {
        return 404;
    }
}
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_read_timeout 500ms;
    access_log logs/error.log audit;
    $extra
}
location /gzip/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_http_version 1.1;
    $extra
}
location /always-gzip/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    $extra
}
location /sse-length/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_http_version 1.1;
    proxy_buffering off;
    $extra
}
location /sse-big/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_http_version 1.1;
    proxy_buffering off;
    $extra
}
_EOC_
    }
});

our $chat = '"messages":[{"role":"user","content":"hello world!"}]';

run_tests();

__DATA__

=== TEST 1: a response hook sees an answer under llm_response_buffer_size (its model left as it is)
--- request eval
"POST /v1/chat/completions\n{\"model\":\"h\",$::chat}"
--- response_body_like chomp
"model":"h",.*"seen":true
--- no_error_log
[error]



=== TEST 2: an answer over 1 MiB (the default) with a response hook: 502, the hook cannot see it
--- more_headers
X-Mock-Tokens: 200000
--- request eval
"POST /v1/chat/completions\n{\"model\":\"h\",$::chat}"
--- error_code: 502
--- response_body
{"error":{"message":"the engine's answer is over llm_response_buffer_size, the response hook cannot see it","type":"server_error","param":null,"code":"response_too_large"}}
--- wait: 0.2
--- error_log eval
[qr/\[error\] .*llm router: the engine's answer is over llm_response_buffer_size/,
 qr/AUDIT \{"model":"h","status":"502",.*"error":"response_too_large"\}/]



=== TEST 3: the same answer under llm_hook_on_error pass: passed on unseen, logged
--- location_extra
llm_hook_on_error pass;
--- more_headers
X-Mock-Tokens: 200000
--- request eval
"POST /v1/chat/completions\n{\"model\":\"h\",$::chat}"
--- response_body_like eval
qr/^\{"id":"chatcmpl-m1-\d+".* tok199999 "/s
--- response_body_unlike: "seen"
--- error_log eval
qr/\[error\] .*the answer is over llm_response_buffer_size \(1048576 bytes\), passed on without the response hook \(llm_hook_on_error pass\)/



=== TEST 4: llm_response_buffer_size makes the limit smaller
--- location_extra
llm_response_buffer_size 1k;
--- more_headers
X-Mock-Tokens: 300
--- request eval
"POST /v1/chat/completions\n{\"model\":\"h\",$::chat}"
--- error_code: 502
--- response_body_like: "code":"response_too_large"



=== TEST 5: with no hook an answer over the limit passes as it is (the model not restored, logged)
--- location_extra
llm_response_buffer_size 1k;
--- more_headers
X-Mock-Tokens: 300
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",$::chat}"
--- response_body_like: "model":"engine-t"
--- error_log
the answer is over 1024 bytes, passed on as the engine sent it
--- no_error_log
[error]



=== TEST 6: a size under 1k is refused at nginx -t
--- config
location /v1/ { llm_router on; llm_event_max_size 100; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_event_max_size" directive must be at least 1k in \S+nginx\.conf:\d+/



=== TEST 7: a size that is not a size is refused at nginx -t
--- config
location /v1/ { llm_router on; llm_response_buffer_size lots; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_response_buffer_size" directive invalid value in \S+nginx\.conf:\d+/



=== TEST 8: an event over 32k (the default) with a chunk hook: the stream ends with an error event
--- request eval
"POST /sse-big/\n{\"model\":\"bh\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"seen":true[^\n]*\n\ndata: \{"error":\{"message":"an event of the engine's stream is over llm_event_max_size, the chunk hook cannot see it","type":"server_error","param":null,"code":"response_too_large"\}\}\n\ndata: \[DONE\]\n\n$/
--- error_log eval
qr/\[error\] .*an event of the engine's stream is over llm_event_max_size, the chunk hook cannot see it \(32768 bytes\)/



=== TEST 9: the same event under llm_hook_on_error pass: passed on unseen, logged
--- location_extra
llm_hook_on_error pass;
--- request eval
"POST /sse-big/\n{\"model\":\"bh\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"seen":true[^\n]*\n\ndata: \{"choices":\[\{"index":0,"delta":\{"content":"x{40000}"\}\}\]\}\n\ndata: \[DONE\]\n\n$/
--- error_log eval
qr/\[error\] .*an event over llm_event_max_size \(32768 bytes\) passed on without the chunk hook \(llm_hook_on_error pass\)/



=== TEST 10: llm_event_max_size makes the limit larger: the hook sees the event
--- location_extra
llm_event_max_size 64k;
--- request eval
"POST /sse-big/\n{\"model\":\"bh\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"seen":true[^\n]*\n\ndata: \{[^\n]*x{40000}[^\n]*"seen":true[^\n]*\n\ndata: \[DONE\]\n\n$/
--- no_error_log
[error]



=== TEST 11: the client's Accept-Encoding is not passed on (the other headers are): the answer comes uncompressed, model restored
--- more_headers
Accept-Encoding: gzip
X-After: kept
--- request eval
"POST /gzip/\n{\"model\":\"bt\",$::chat}"
--- response_headers
!Content-Encoding
!X-AE
X-Seen: kept
--- response_body_like: ^\{"id":"x","model":"bt",.*"usage":\{"prompt_tokens":1,"completion_tokens":2\}\}$
--- no_error_log
[error]



=== TEST 12: a compressed answer a response hook must read is refused: 502
--- request eval
"POST /always-gzip/\n{\"model\":\"bh\",$::chat}"
--- error_code: 502
--- response_headers
!Content-Encoding
--- response_body
{"error":{"message":"the engine's answer is compressed (Content-Encoding), the hooks cannot read it","type":"server_error","param":null,"code":"compressed_response"}}
--- error_log eval
qr/\[error\] .*the engine's answer is compressed \(Content-Encoding\), the hooks cannot read it, the client gets 502 compressed_response/



=== TEST 13: under llm_hook_on_error pass it passes untouched, logged
--- location_extra
llm_hook_on_error pass;
--- request eval
"POST /always-gzip/\n{\"model\":\"bh\",$::chat}"
--- response_headers
Content-Encoding: gzip
--- response_body chomp
{"id":"x","model":"engine-bt","choices":[]}
--- error_log eval
qr/\[error\] .*the engine's answer is compressed \(Content-Encoding: gzip\), passed on as it is without the hooks/



=== TEST 14: with nothing that must read it, a compressed answer passes untouched (not restored)
--- request eval
"POST /always-gzip/\n{\"model\":\"bt\",$::chat}"
--- response_headers
Content-Encoding: gzip
--- response_body chomp
{"id":"x","model":"engine-bt","choices":[]}
--- no_error_log
[error]



=== TEST 15: a stream with the engine's Content-Length and no [DONE]: the error event added, the connection still usable
--- pipelined_requests eval
["POST /sse-length/\n{\"model\":\"b\",\"stream\":true,$::chat}",
 "POST /sse-length/\n{\"model\":\"b\",\"stream\":true,$::chat}"]
--- response_body_like eval
[qr/^data: \{"choices":\[\{"index":0,"delta":\{"content":"a"\}\}\]\}\n\ndata: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/,
 qr/^data: \{"choices":\[\{"index":0,"delta":\{"content":"a"\}\}\]\}\n\ndata: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/]



=== TEST 16: a whole Responses stream ends with response.completed: nothing added, no error
--- request eval
"POST /v1/responses\n{\"model\":\"m\",\"stream\":true,\"input\":\"hello\"}"
--- response_body_like eval
qr/^event: response\.created\n.*(event: response\.output_text\.delta\n[^\n]*\n\n){3}event: response\.output_text\.done\n[^\n]*\n\nevent: response\.completed\ndata: \{"type":"response\.completed"[^\n]*\n\n$/s
--- response_body_unlike: \[DONE\]|"error"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"\d+","events":"6","error":""\}/
--- no_error_log
[error]



=== TEST 17: a Responses stream cut short ends with the Responses error event, no [DONE]
--- more_headers
X-Mock-Close-After: 1
--- request eval
"POST /v1/responses\n{\"model\":\"m\",\"stream\":true,\"input\":\"hello\"}"
--- response_body_like eval
qr/^event: response\.created\n[^\n]*\n\nevent: response\.output_text\.delta\n[^\n]*\n\nevent: error\ndata: \{"type":"error","code":"stream_interrupted","message":"the engine closed the stream before its end","param":null,"sequence_number":2\}\n\n$/
--- wait: 0.2
--- error_log eval
[qr/\[error\] .*the engine closed the stream before its end after 2 events, the client gets an error event(?! and)/,
 qr/AUDIT \{"model":"m","status":"200",.*"error":"stream_interrupted"\}/]



=== TEST 18: the same with events rewritten (model restored), the engine stalling: the timeout as a Responses error
--- more_headers
X-Mock-Stall-After: 2
--- request eval
"POST /v1/responses\n{\"model\":\"t\",\"stream\":true,\"input\":\"hello\"}"
--- response_body_like eval
qr/^event: response\.created\n[^\n]*\n\n(event: response\.output_text\.delta\n[^\n]*\n\n){2}event: error\ndata: \{"type":"error","code":"upstream_timeout","message":"the engine stopped sending in the middle of the stream","param":null,"sequence_number":3\}\n\n$/



=== TEST 19: a whole Responses stream with events rewritten: nothing added
--- request eval
"POST /v1/responses\n{\"model\":\"t\",\"stream\":true,\"input\":\"hello\"}"
--- response_body_like eval
qr/event: response\.completed\ndata: \{"type":"response\.completed"[^\n]*\n\n$/
--- response_body_unlike: \[DONE\]|"type":"error"
--- no_error_log
[error]



=== TEST 20: a whole Messages stream ends with message_stop: nothing added, no error
--- request eval
"POST /v1/messages\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^event: message_start\n.*(event: content_block_delta\n[^\n]*\n\n){3}.*event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/s
--- response_body_unlike: \[DONE\]|"error"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"\d+","events":"8","error":""\}/
--- no_error_log
[error]



=== TEST 21: a Messages stream cut short ends with the Messages error event, no [DONE]
--- more_headers
X-Mock-Close-After: 2
--- request eval
"POST /v1/messages\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^event: message_start\n[^\n]*\n\nevent: content_block_start\n[^\n]*\n\n(event: content_block_delta\n[^\n]*\n\n){2}event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"the engine closed the stream before its end"\}\}\n\n$/



=== TEST 22: a Messages stream with a chunk hook, CRLF lines and 7-byte pieces: whole, nothing added
--- more_headers
X-Mock-Sse-Crlf: 1
X-Mock-Stream-Split: 1
--- request eval
"POST /v1/messages\n{\"model\":\"h\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/event: message_stop\r\ndata: \{"type":"message_stop","seen":true\}\r\n\r\n$/
--- response_body_unlike: "type":"error"
--- no_error_log
[error]



=== TEST 23: a Messages stream that stalls, with the chunk hook: the timeout as a Messages error
--- more_headers
X-Mock-Stall-After: 1
--- request eval
"POST /v1/messages\n{\"model\":\"h\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/(event: content_block_delta\n[^\n]*\n\n){1}event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"the engine stopped sending in the middle of the stream"\}\}\n\n$/



=== TEST 24: the time to the first token with Python's separators ("content": "tok0 ")
--- more_headers
X-Mock-Spaced: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like: "delta": \{"content": "tok0 "\}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"\d+","events":"5","error":""\}/



=== TEST 25: the same on a completions stream ("text": "tok0 ")
--- more_headers
X-Mock-Spaced: 1
--- request eval
"POST /v1/completions\n{\"model\":\"m\",\"stream\":true,\"prompt\":\"x\"}"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"\d+","events":"4","error":""\}/



=== TEST 26: the same on a Responses stream with Python's separators
--- more_headers
X-Mock-Spaced: 1
--- request eval
"POST /v1/responses\n{\"model\":\"m\",\"stream\":true,\"input\":\"x\"}"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"\d+","events":"6","error":""\}/
--- no_error_log
[error]



=== TEST 27: the same on a Messages stream, events rewritten
--- more_headers
X-Mock-Spaced: 1
--- request eval
"POST /v1/messages\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"t","status":"200","ttft":"\d+","events":"8","error":""\}/
--- no_error_log
[error]



=== TEST 28: a stream with no content at all has no time to first token
--- more_headers
X-Mock-Tokens: 0
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","status":"200","ttft":"","events":"2","error":""\}/
