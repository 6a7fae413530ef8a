# The response path against a hostile engine: answers written byte by
# byte, cut, lying about their length, with usage counts past any limit,
# error messages with line ends and bytes that are not UTF-8
# (t/lib/raw_engine.py answers with the raw bytes a request asks for).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use MIME::Base64 qw(encode_base64);

{
    local $ENV{TEST_NGINX_MOCK} = "$FindBin::Bin/lib/raw_engine.py";
    start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=raw");
}
start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2", '--tokens', 3);

no_shuffle();

# X-Raw: the engine's whole answer
sub raw { 'X-Raw: ' . encode_base64(join('', @_), '') }

sub json_answer {
    my ($body, $length) = @_;
    $length //= length $body;
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    . "Content-Length: $length\r\nConnection: close\r\n\r\n$body";
}

sub sse_answer {
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    . "Connection: close\r\n\r\n" . join('', @_);
}

add_block_preprocessor(sub {
    my $block = shift;
    my $extra = $block->location_extra // '';
    my $timeout = $extra =~ /proxy_read_timeout/ ? '' : 'proxy_read_timeout 2s;';
    $timeout .= ' proxy_buffering off;' if $extra !~ /proxy_buffering/;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream raw {
    llm_engine openai;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream pool {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT};
}
llm_model r { upstream raw; }
llm_model ma { upstream pool; hook $FindBin::Bin/hooks/answer.lua; }
llm_model rt { upstream raw; target engine-rt; }
llm_model rh { upstream raw; hook $FindBin::Bin/hooks/seen.lua; }
llm_model rah { upstream raw; hook $FindBin::Bin/hooks/answer.lua; }
log_format audit escape=json 'AUDIT {"model":"\$llm_model","status":"\$status","prompt":"\$llm_prompt_tokens","completion":"\$llm_completion_tokens","total":"\$llm_total_tokens","events":"\$llm_stream_events","error":"\$llm_error","engine_bytes":"\$upstream_response_length"}';
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    proxy_http_version 1.1;
    $timeout
    access_log logs/error.log audit;
    $extra
}
_EOC_
    }
});

our $chat = '"messages":[{"role":"user","content":"hi"}]';

run_tests();

__DATA__

=== TEST 1: usage counts whose sum is past a 64-bit integer: the total stops at its top
--- request eval
"POST /v1/chat/completions\n{\"model\":\"r\",$::chat}"
--- more_headers eval
::raw(::json_answer('{"id":"x","model":"r","choices":[],"usage":{"prompt_tokens":9e18,"completion_tokens":9e18}}'))
--- response_body_like chomp
"prompt_tokens":9e18
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"r",.*"prompt":"9000000000000000000","completion":"9000000000000000000","total":"9223372036854775807"/



=== TEST 2: a held answer (model restored) the engine cuts before its Content-Length: 502 in OpenAI's shape
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rt\",$::chat}"
--- more_headers eval
::raw(::json_answer('{"id":"x","model":"engine-rt","choices":[]', 500))
--- error_code: 502
--- response_body_like chomp
^\{"error":\{"message":"the engine closed the connection before the end of its answer","type":"server_error","param":null,"code":"upstream_error"\}\}$
--- error_log
the client gets 502 upstream_error



=== TEST 3: an engine's 400 whose message holds CR LF and bytes not UTF-8: the log line stays one line
--- request eval
"POST /v1/chat/completions\n{\"model\":\"r\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
      . '{"message":"bad\r\n2026/01/01 00:00:00 [emerg] 1#1: forged ' . "\xff\xfe" . '","code":"x\r\ny","type":"t y"}')
--- error_code: 400
--- response_body_like chomp
^\{"error":\{"message":"bad\\u000d\\u000a2026/01/01 00:00:00 \[emerg\] 1#1: forged [^"]+","type":"invalid_request_error","param":null,"code":"upstream_error"\}\}$
--- error_log
engine error 400 rewritten as upstream_error: bad\x0D\x0A2026/01/01
--- no_error_log eval
qr/^2026\/01\/01 00:00:00 \[emerg\]/



=== TEST 4: a stream with its model restored, written one byte at a time with CRLF line ends
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rt\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"model\":\"engine-rt\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n",
                   ": beat\r\n\r\n",
                   "event: x\r\ndata: {\"model\":\"engine-rt\",\"choices\":[]}\r\n\r\n",
                   "data: [DONE]\r\n\r\n"))
. "\nX-Raw-Split: 1"
--- response_body eval
"data: {\"model\":\"rt\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n: beat\r\n\r\nevent: x\r\ndata: {\"model\":\"rt\",\"choices\":[]}\r\n\r\ndata: [DONE]\r\n\r\n"
--- no_error_log
[error]



=== TEST 5: a stream cut in the middle of an event, byte by byte: the held bytes, then the error event
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rt\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"model\":\"engine-rt\",\"choices\":[]}\n\n",
                   "data: {\"model\":\"engine-rt\",\"cho"))
. "\nX-Raw-Split: 1"
--- response_body_like eval
qr/^data: \{"model":"rt","choices":\[\]\}\n\ndata: \{"model":"engine-rt","cho(\n\n)?data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 6: a held JSON answer of exactly llm_response_buffer_size bytes gets its model restored
--- location_extra
llm_response_buffer_size 1k;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rt\",$::chat}"
--- more_headers eval
my $head = '{"id":"x","model":"engine-rt","choices":[],"pad":"';
::raw(::json_answer($head . ('p' x (1024 - length($head) - 2)) . '"}'))
--- response_body_like chomp
^\{"id":"x","model":"rt","choices":\[\],"pad":"p+"\}$



=== TEST 7: Content-Encoding "GZIP, identity" counts as compressed: a response hook refuses it
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rh\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: GZIP, identity\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
--- error_code: 502
--- response_body_like chomp
"code":"compressed_response"



=== TEST 8: an engine's error cut before its Content-Length: 502 in OpenAI's shape, not an empty reply
--- request eval
"POST /v1/chat/completions\n{\"model\":\"r\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 400\r\nConnection: close\r\n\r\n{\"error\":")
--- error_code: 502
--- response_body_like chomp
^\{"error":\{"message":"the engine closed the connection before the end of its answer","type":"server_error","param":null,"code":"upstream_error"\}\}$
--- error_log
the client gets 502 upstream_error



=== TEST 9: a held answer the engine stops sending: 502 once proxy_read_timeout is over
--- location_extra
proxy_read_timeout 300ms;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rh\",$::chat}"
--- more_headers eval
::raw(::json_answer('{"id":"x","model":"rh","choices":[]', 500)) . "\nX-Raw-Wait-Ms: 1500"
--- error_code: 502
--- response_body_like chomp
^\{"error":\{"message":"the engine stopped sending in the middle of its answer","type":"server_error","param":null,"code":"upstream_error"\}\}$



=== TEST 10: a chunk hook that fails ends the engine's stream too: the router stops reading it (proxy_buffering off)
--- request eval
"POST /v1/chat/completions\n{\"model\":\"ma\",\"stream\":true,$::chat}"
--- more_headers
X-Fail: 1
X-Mock-Tokens: 3000
X-Mock-Pace-Ms: 1
--- response_body_like eval
qr/^data: [^\n]*\n\ndata: [^\n]*"TOK0 "[^\n]*\n\ndata: \{"error":\{[^\n]*"code":"hook_error"\}\}\n\ndata: \[DONE\]\n\n$/
--- wait: 0.3
--- error_log eval
qr/AUDIT \{"model":"ma",.*"error":"hook_error","engine_bytes":"\d{1,5}"\}/



=== TEST 11: the same with proxy_buffering on
--- location_extra
proxy_buffering on;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"ma\",\"stream\":true,$::chat}"
--- more_headers
X-Fail: 1
X-Mock-Tokens: 3000
X-Mock-Pace-Ms: 1
--- response_body_like eval
qr/^data: [^\n]*\n\ndata: [^\n]*"TOK0 "[^\n]*\n\ndata: \{"error":\{[^\n]*"code":"hook_error"\}\}\n\ndata: \[DONE\]\n\n$/
--- wait: 0.3
--- error_log eval
qr/AUDIT \{"model":"ma",.*"error":"hook_error","engine_bytes":"\d{1,5}"\}/



=== TEST 12: an event whose JSON is cut into two data lines does not pass the chunk hook unseen
Clients join the lines with "\n" and read the JSON; the hook would not see it.
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rah\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"}}]}\n\n",
                   "data: {\"choices\":[{\"index\":0,\"delta\":\ndata: {\"content\":\"secret\"}}]}\n\n",
                   "data: [DONE]\n\n"))
--- response_body_like eval
qr/^data: \{"choices":\[\{"index":0,"delta":\{"content":"ONE"\}\}\]\}\n\ndata: \{"error":\{[^\n]*"code":"unsupported_event"\}\}\n\ndata: \[DONE\]\n\n$/
--- error_log
more than one data line, the chunk hook cannot see it



=== TEST 13: with llm_hook_on_error pass that event goes on, logged
--- location_extra
llm_hook_on_error pass;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rah\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"choices\":[{\"index\":0,\"delta\":\ndata: {\"content\":\"secret\"}}]}\n\n",
                   "data: [DONE]\n\n"))
--- response_body eval
"data: {\"choices\":[{\"index\":0,\"delta\":\ndata: {\"content\":\"secret\"}}]}\n\ndata: [DONE]\n\n"
--- error_log
passed on without the chunk hook (llm_hook_on_error pass)



=== TEST 14: an event with more members than the router reads still goes through the chunk hook
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rah\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,\"k16\":16,\"k17\":17,\"k18\":18,\"k19\":19,\"k20\":20,\"k21\":21,\"k22\":22,\"k23\":23,\"k24\":24,\"k25\":25,\"k26\":26,\"k27\":27,\"k28\":28,\"k29\":29,\"k30\":30,\"k31\":31,\"k32\":32,\"k33\":33,\"k34\":34,\"k35\":35,\"k36\":36,\"k37\":37,\"k38\":38,\"k39\":39,\"k40\":40,\"k41\":41,\"k42\":42,\"k43\":43,\"k44\":44,\"k45\":45,\"k46\":46,\"k47\":47,\"k48\":48,\"k49\":49,\"k50\":50,\"k51\":51,\"k52\":52,\"k53\":53,\"k54\":54,\"k55\":55,\"k56\":56,\"k57\":57,\"k58\":58,\"k59\":59,\"k60\":60,\"k61\":61,\"k62\":62,\"k63\":63,\"k64\":64,\"k65\":65,\"k66\":66,\"k67\":67,\"k68\":68,\"k69\":69,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"secret\"}}]}\n\n",
                   "data: [DONE]\n\n"))
--- response_body_like eval
qr/^data: \{"k0":0,.*"choices":\[\{"index":0,"delta":\{"content":"SECRET"\}\}\]\}\n\ndata: \[DONE\]\n\n$/
--- no_error_log
[error]



=== TEST 15: an event that is not JSON does not pass the chunk hook unseen: the hook cannot run, the stream ends
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rah\",\"stream\":true,$::chat}"
--- more_headers eval
::raw(::sse_answer("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"secret\"}}]\n\n",
                   "data: [DONE]\n\n"))
--- response_body_like eval
qr/^data: \{"error":\{[^\n]*"code":"hook_error"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 16: an answer that is neither JSON nor an event stream does not pass a response hook unseen
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rh\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\nConnection: close\r\n\r\n"
      . '{"id":"x","model":"rh","choices":[],"a":1}')
--- error_code: 502
--- response_body_like chomp
^\{"error":\{"message":"the engine's answer is neither JSON nor an event stream \(Content-Type\), the hooks cannot read it","type":"server_error","param":null,"code":"unexpected_content_type"\}\}$
--- error_log
the client gets 502 unexpected_content_type



=== TEST 17: nor a chunk hook, with no Content-Type at all
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rah\",\"stream\":true,$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
      . "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"secret\"}}]}\n\ndata: [DONE]\n\n")
--- error_code: 502
--- response_body_like chomp
"code":"unexpected_content_type"



=== TEST 18: with llm_hook_on_error pass it goes on, logged
--- location_extra
llm_hook_on_error pass;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rh\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nplain {}\n")
--- response_body
plain {}
--- error_log eval
qr/neither JSON nor an event stream \(Content-Type: "text\/plain"\), passed on without the hooks \(llm_hook_on_error pass\)/



=== TEST 19: without hooks it passes as it is
--- request eval
"POST /v1/chat/completions\n{\"model\":\"r\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nplain {}\n")
--- response_body
plain {}
--- no_error_log
[error]



=== TEST 20: an empty answer with no Content-Type hides nothing from a response hook: it passes
--- request eval
"POST /v1/chat/completions\n{\"model\":\"rh\",$::chat}"
--- more_headers eval
::raw("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
--- response_body chomp
--- no_error_log
[error]
