# The response side: usage and time to first token read into variables,
# the model name restored, stream_options.include_usage added and its
# event dropped, a stream the engine breaks off ended with an error event
# and [DONE], and engine errors in OpenAI's shape.  The audit log line is
# written into error.log, where --- error_log finds it.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1", '--tokens', 4);

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $extra = $block->location_extra // '';
    my $alog = 'access_log logs/error.log audit;';
    my $audit = '';
    if ($block->audit_conf) {
        # the shipped example, writing into error.log
        open my $fh, '<', "$FindBin::Bin/../conf/audit-log.conf" or die $!;
        $audit = do { local $/; <$fh> };
        $audit =~ s{access_log \S+}{access_log logs/error.log};
        $alog = '';
    }
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream errs {
    llm_engine openai;
    server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
}
llm_model m { upstream pool; }
llm_model t { upstream pool; target "engine-name"; }
llm_model su { upstream pool; target engine-su; stream_usage on; }
llm_model e { upstream errs; }
llm_model et { upstream errs; target "engine-et"; }
$audit
log_format audit escape=json 'AUDIT {"model":"\$llm_model","target":"\$llm_target_model","upstream":"\$llm_upstream","engine":"\$llm_engine","peer":"\$llm_peer","status":"\$status","stream":"\$llm_stream","prompt":"\$llm_prompt_tokens","completion":"\$llm_completion_tokens","total":"\$llm_total_tokens","ttft":"\$llm_ttft","events":"\$llm_stream_events","error":"\$llm_error"}';
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location /v1/upper {
        default_type "Application/JSON; charset=utf-8";
        return 200 '{"id":"x","model":"engine-et","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}';
    }
    location / {
        default_type application/json;
        if (\$http_x_err = html) { return 503; }
        if (\$http_x_err = vllm) {
            return 400 '{"object":"error","message":"bad thing","type":"BadRequestError","param":null,"code":400}';
        }
        if (\$http_x_err = tgi) {
            return 422 '{"error":"Input validation error","error_type":"validation"}';
        }
        if (\$http_x_err = llamacpp) {
            return 200 '{"choices":[{"index":0,"message":{"role":"assistant","content":"a \\\\\\\"usage\\\\\\\": {\\\\\\\"prompt_tokens\\\\\\\":99} b"}}],"created":1,"model":"engine-et","object":"chat.completion","usage":{"completion_tokens":5,"prompt_tokens":6,"total_tokens":11},"id":"chatcmpl-x","timings":{"note":"a \\\\\\\"usage\\\\\\\": {\\\\\\\"prompt_tokens\\\\\\\":99}","prompt_n":6,"predicted_n":5,"usage":1}}';
        }
        if (\$http_x_err = last) {
            return 200 '{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"a longer answer, so that the scan of the answer goes past its first piece"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5},"model":"engine-et"}';
        }
        if (\$http_x_err = numbers) {
            return 200 '{"id":"x","model":"e","choices":[],"usage":{"prompt_tokens":7.0,"completion_tokens":3e1,"total_tokens":-5,"extra":{"prompt_tokens":9}},"tail":[1]}';
        }
        if (\$http_x_err = broken) {
            return 200 '{"id":"x" , "model" : "engine-et","choices":[{"index":0,,],"usage":{"prompt_tokens":4,"completion_tokens":1}';
        }
        if (\$http_x_err = cut) {
            return 200 '{"id":"x","choices":[{"model":"engine-et"}],"usage":{"prompt_tokens":4,"completion_tokens":';
        }
        if (\$http_x_err = openai) {
            return 429 '{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}';
        }
        return 200 '{"id":"x","model":"e","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}';
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
    $alog
    $extra
}
_EOC_
    }
});

our $chat = '"messages":[{"role":"user","content":"hello world!"}]';

run_tests();

__DATA__

=== TEST 1: non-streamed: usage in the variables, the body as the engine sent it
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",$::chat}"
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+".*"model":"m",.*"usage":\{"prompt_tokens":4,"completion_tokens":4,"total_tokens":8\}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m","target":"m","upstream":"pool","engine":"vllm","peer":"127\.0\.0\.1:\d+","status":"200","stream":"0","prompt":"4","completion":"4","total":"8","ttft":"\d+","events":"","error":""\}/



=== TEST 2: non-streamed with a target: the model is restored, Content-Length fits
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",$::chat}"
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+".*"model":"t",.*"usage":\{"prompt_tokens":4,
--- response_headers_like
Content-Length: \d+
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"t","target":"engine-name",.*"prompt":"4","completion":"4","total":"8"/



=== TEST 3: llm_restore_model off: the engine's name reaches the client
--- location_extra: llm_restore_model off;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",$::chat}"
--- response_body_like chomp
"model":"engine-name"



=== TEST 4: streamed: events pass, usage asked by the client is read and kept
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"role":"assistant"[^\n]*\n\n(data: \{[^\n]*"content":"tok\d "[^\n]*\n\n){4}data: \{[^\n]*"finish_reason":"stop"[^\n]*\n\ndata: \{[^\n]*"choices":\[\],[^\n]*"usage":\{"prompt_tokens":4,"completion_tokens":4,"total_tokens":8\}\}\n\ndata: \[DONE\]\n\n$/
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"m",.*"stream":"1","prompt":"4","completion":"4","total":"8","ttft":"\d+","events":"7","error":""\}/



=== TEST 5: streamed with a target: the model is restored in every event
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){6}data: \[DONE\]\n\n$/
--- response_body_unlike
engine-name



=== TEST 6: stream_usage: the engine is asked for usage, the client does not see it
--- request eval
"POST /v1/chat/completions\n{\"model\":\"su\",\"stream\":true,$::chat}"
--- more_headers
X-Mock-Echo: 0
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"su"[^\n]*\n\n){6}data: \[DONE\]\n\n$/
--- response_body_unlike
usage
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"su","target":"engine-su",.*"prompt":"4","completion":"4","total":"8",.*"events":"7"/



=== TEST 7: stream_usage adds stream_options to the body sent
--- location_extra: llm_stream_usage on;
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true}"
--- response_body chomp
{"model":"m","stream":true,"stream_options":{"include_usage":true}}



=== TEST 8: stream_usage merges into the client's stream_options
--- location_extra: llm_stream_usage on;
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false,\"x\":1}}"
--- response_body chomp
{"model":"m","stream":true,"stream_options":{"x":1,"include_usage":true}}



=== TEST 9: stream_usage leaves a client who asked for usage alone, and its usage event
--- location_extra: llm_stream_usage on;
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}"
--- response_body_like chomp
"choices":\[\],.*"usage":\{"prompt_tokens":4,



=== TEST 10: stream_usage does nothing to a request that does not stream
--- location_extra: llm_stream_usage on;
--- more_headers
X-Mock-Echo: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\"}"
--- response_body chomp
{"model":"m"}



=== TEST 11: CRLF lines, heartbeats and 7-byte pieces: the same events, usage and restored model
--- more_headers
X-Mock-Sse-Crlf: 1
X-Mock-Heartbeat: 1
X-Mock-Stream-Split: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}"
--- response_body_like eval
qr/^(: ping\r\n\r\ndata: \{[^\r\n]*"model":"t"[^\r\n]*\r\n\r\n){7}: ping\r\n\r\ndata: \[DONE\]\r\n\r\n$/
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"t",.*"prompt":"4","completion":"4","total":"8",.*"events":"7"/



=== TEST 12: the engine closes in the middle of a stream: an error event and [DONE]
--- more_headers
X-Mock-Close-After: 2
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"role"[^\n]*\n\n(data: \{[^\n]*"content"[^\n]*\n\n){2}data: \{"error":\{"message":"the engine closed the stream before its end","type":"server_error","param":null,"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/
--- wait: 0.2
--- error_log eval
[qr/llm router: the engine closed the stream before its end after 3 events/,
 qr/AUDIT \{"model":"m",.*"error":"stream_interrupted"\}/]



=== TEST 13: the same, with the model restored (events copied)
--- more_headers
X-Mock-Close-After: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 14: the engine stalls in the middle of a stream: the read timeout ends it the same way
--- more_headers
X-Mock-Stall-After: 2
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^data: \{[^\n]*"role"[^\n]*\n\n(data: \{[^\n]*"content"[^\n]*\n\n){2}data: \{"error":\{"message":"the engine stopped sending in the middle of the stream","type":"server_error","param":null,"code":"upstream_timeout"\}\}\n\ndata: \[DONE\]\n\n$/
--- wait: 0.2
--- error_log eval
[qr/upstream timed out/,
 qr/AUDIT \{"model":"m",.*"error":"upstream_timeout"\}/]



=== TEST 15: the same stall, with the model restored
--- more_headers
X-Mock-Stall-After: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"upstream_timeout"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 16: an engine error in OpenAI's shape passes as it is
--- more_headers
X-Err: openai
--- request
POST /v1/chat/completions
{"model":"e"}
--- error_code: 429
--- response_body chomp
{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"e",.*"status":"429",.*"error":"rate_limit_exceeded"\}/



=== TEST 17: vLLM's error shape is rewritten into OpenAI's
--- more_headers
X-Err: vllm
--- request
POST /v1/chat/completions
{"model":"e"}
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"bad thing","type":"BadRequestError","param":null,"code":"upstream_error"}}
--- error_log
engine error 400 rewritten as upstream_error: "bad thing"



=== TEST 18: TGI's and Ollama's {"error": "..."} too
--- more_headers
X-Err: tgi
--- request
POST /v1/chat/completions
{"model":"e"}
--- error_code: 422
--- response_body
{"error":{"message":"Input validation error","type":"validation","param":null,"code":"upstream_error"}}



=== TEST 19: an engine's HTML error page becomes an OpenAI error
--- more_headers
X-Err: html
--- request
POST /v1/chat/completions
{"model":"e"}
--- error_code: 503
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"the engine answered with status 503","type":"server_error","param":null,"code":"upstream_error"}}



=== TEST 20: usage read from a short answer of another engine (no total_tokens)
--- request
POST /v1/chat/completions
{"model":"e"}
--- response_body chomp
{"id":"x","model":"e","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"e",.*"engine":"openai",.*"prompt":"7","completion":"3","total":"10"/



=== TEST 21: with proxy_buffering on, a broken stream ends the same way
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_read_timeout 500ms;
}
--- more_headers
X-Mock-Close-After: 2
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){3}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 22: over HTTP/1.0 the engine's close ends the body: without [DONE] it is a broken stream
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_buffering off;
}
--- more_headers
X-Mock-Close-After: 2
--- request eval
"POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"m"[^\n]*\n\n){3}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 23: over HTTP/1.0, a whole stream ends as it is
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){6}data: \[DONE\]\n\n$/
--- no_error_log
[error]



=== TEST 24: the JSON audit line of conf/audit-log.conf
--- audit_conf: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}"
--- response_body_like
data: \[DONE\]
--- wait: 0.2
--- error_log eval
qr/\{"time":"[^"]+","request_id":"[0-9a-f]{32}","client":"127\.0\.0\.1","uri":"\/v1\/chat\/completions","status":"200","model":"t","target":"engine-name","upstream":"pool","engine":"vllm","peer":"127\.0\.0\.1:\d+","stream":"1","prompt_tokens":"4","completion_tokens":"4","total_tokens":"8","ttft_ms":"\d+","events":"7","duration_s":"[\d.]+","upstream_time_s":"[\d.]+","error":""\}/



=== TEST 25: over HTTP/2: a stream with the model restored and usage dropped, then [DONE]
--- http2
--- skip_eval: 2: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"POST /v1/chat/completions\n{\"model\":\"su\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"su"[^\n]*\n\n){6}data: \[DONE\]\n\n$/



=== TEST 26: over HTTP/2: an engine that breaks the stream off: the error event and [DONE]
--- http2
--- skip_eval: 2: $Test::Nginx::Util::VERSION && $Test::Nginx::Util::NginxVersion < 1.025001
--- more_headers
X-Mock-Close-After: 1
--- request eval
"POST /v1/chat/completions\n{\"model\":\"t\",\"stream\":true,$::chat}"
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"t"[^\n]*\n\n){2}data: \{"error":\{[^\n]*"code":"stream_interrupted"\}\}\n\ndata: \[DONE\]\n\n$/



=== TEST 27: usage counts written 7.0 and 3e1 are read; a negative total is not
The total is then the sum, and a nested "prompt_tokens" is not the usage's.
--- request
POST /v1/chat/completions
{"model":"e"}
--- more_headers
X-Err: numbers
--- response_body chomp
{"id":"x","model":"e","choices":[],"usage":{"prompt_tokens":7.0,"completion_tokens":3e1,"total_tokens":-5,"extra":{"prompt_tokens":9}},"tail":[1]}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"e",.*"prompt":"7","completion":"30","total":"37"/



=== TEST 28: an answer over 1 MB goes out whole; its usage is read from the tail
--- request
POST /v1/chat/completions
{"model":"t","messages":[{"role":"user","content":"hi"}]}
--- more_headers
X-Mock-Tokens: 220000
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+".*"model":"engine-name",.*"content":"tok0 tok1 .* tok219999 ".*"usage":\{"prompt_tokens":\d+,"completion_tokens":220000,"total_tokens":\d+\}\}$
--- wait: 0.2
--- error_log eval
[qr/AUDIT \{"model":"t",.*"completion":"220000"/,
 qr/the answer is over 1048576 bytes, passed on as the engine sent it/]



=== TEST 29: llama.cpp's order (model after choices, "timings" after usage): model restored, usage read
A "usage" written inside a string, before or after the real one, is not the usage.
--- request
POST /v1/chat/completions
{"model":"et"}
--- more_headers
X-Err: llamacpp
--- response_body chomp
{"choices":[{"index":0,"message":{"role":"assistant","content":"a \"usage\": {\"prompt_tokens\":99} b"}}],"created":1,"model":"et","object":"chat.completion","usage":{"completion_tokens":5,"prompt_tokens":6,"total_tokens":11},"id":"chatcmpl-x","timings":{"note":"a \"usage\": {\"prompt_tokens\":99}","prompt_n":6,"predicted_n":5,"usage":1}}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"et",.*"prompt":"6","completion":"5","total":"11"/



=== TEST 30: the model as the last member of a long answer: restored, usage read
--- request
POST /v1/chat/completions
{"model":"et"}
--- more_headers
X-Err: last
--- response_body chomp
{"id":"chatcmpl-x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"a longer answer, so that the scan of the answer goes past its first piece"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5},"model":"et"}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"et",.*"prompt":"2","completion":"3","total":"5"/



=== TEST 31: the model name goes back as the client wrote it, escapes included
--- request
POST /v1/chat/completions
{"model":"\u0074","messages":[{"role":"user","content":"hi"}]}
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+","object":"chat.completion","created":\d+,"model":"\\u0074",
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"t","target":"engine-name"/



=== TEST 32: a content type in capitals is JSON all the same: model restored, usage read
--- request
POST /v1/upper
{"model":"et"}
--- response_headers
Content-Type: Application/JSON; charset=utf-8
--- response_body chomp
{"id":"x","model":"et","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"et",.*"prompt":"1","completion":"2","total":"3"/



=== TEST 33: an answer broken after its model: the model restored, the rest as it came, the usage read
--- request
POST /v1/chat/completions
{"model":"et"}
--- more_headers
X-Err: broken
--- response_body chomp
{"id":"x" , "model" : "et","choices":[{"index":0,,],"usage":{"prompt_tokens":4,"completion_tokens":1}
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"et",.*"prompt":"4","completion":"1","total":"5"/



=== TEST 34: an answer cut short: a nested "model" is not the model, a usage object cut off is not read
--- request
POST /v1/chat/completions
{"model":"et"}
--- more_headers
X-Err: cut
--- response_body chomp
{"id":"x","choices":[{"model":"engine-et"}],"usage":{"prompt_tokens":4,"completion_tokens":
--- wait: 0.2
--- error_log eval
qr/AUDIT \{"model":"et",.*"prompt":"","completion":"","total":""/
