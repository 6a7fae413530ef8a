# Bad input and failing engines: OpenAI-shaped JSON errors, never HTML.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool_a { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
llm_model llama3-8b { upstream pool_a; clamp max_tokens 100; }
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location / { return 200 "A\\n"; }
}
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Error $llm_error always;
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: a truncated body is invalid_json, logged once with the reason
--- request
POST /v1/chat/completions
{"model":"llama3-8b","messages":[
--- error_code: 400
--- response_headers
Content-Type: application/json
X-Error: invalid_json
--- response_body
{"error":{"message":"the request body is not valid JSON: unexpected end of data at byte 33","type":"invalid_request_error","param":null,"code":"invalid_json"}}
--- error_log
llm router: 400 invalid_json: the request body is not valid JSON
--- no_error_log
[error]



=== TEST 2: trailing data after the object is invalid_json
--- request
POST /v1/chat/completions
{"model":"llama3-8b"} {"model":"x"}
--- error_code: 400
--- response_body_like: "code":"invalid_json"
--- response_body_like: trailing data after the document



=== TEST 3: a bad literal deep inside is invalid_json
--- request
POST /v1/chat/completions
{"messages":[{"role":"user","content":"x","extra":[1,2,tru]}],"model":"llama3-8b"}
--- error_code: 400
--- response_body_like: "message":"the request body is not valid JSON: invalid literal at byte 58"



=== TEST 4: bad numbers and missing commas are invalid_json
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"n\":01}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\" \"n\":1}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"t\":1.}",
 "POST /v1/chat/completions\n{\"model\":\"llama3-8b\",}"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
["invalid_json", "invalid_json", "invalid_json", "invalid_json"]



=== TEST 5: an empty body is invalid_json
--- request
POST /v1/chat/completions
--- error_code: 400
--- response_body_like: "code":"invalid_json"



=== TEST 6: a JSON array or string is not a request object
--- request eval
["POST /v1/chat/completions\n[{\"model\":\"llama3-8b\"}]",
 "POST /v1/chat/completions\n\"llama3-8b\""]
--- error_code eval
[400, 400]
--- response_body eval
["{\"error\":{\"message\":\"the request body must be a JSON object\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_request\"}}\n",
 "{\"error\":{\"message\":\"the request body must be a JSON object\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_request\"}}\n"]



=== TEST 7: no model is model_required, an empty one too
--- request eval
["POST /v1/chat/completions\n{\"messages\":[]}",
 "POST /v1/chat/completions\n{\"model\":\"\"}"]
--- error_code eval
[400, 400]
--- response_body eval
["{\"error\":{\"message\":\"you must provide a model parameter\",\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_required\"}}\n",
 "{\"error\":{\"message\":\"you must provide a model parameter\",\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_required\"}}\n"]



=== TEST 8: a model that is not a string is invalid_request
--- request
POST /v1/chat/completions
{"model":["llama3-8b"]}
--- error_code: 400
--- response_body
{"error":{"message":"the field \"model\" must be a string","type":"invalid_request_error","param":"model","code":"invalid_request"}}



=== TEST 9: stream must be a boolean
--- request
POST /v1/chat/completions
{"model":"llama3-8b","stream":"yes"}
--- error_code: 400
--- response_body
{"error":{"message":"the field \"stream\" must be a boolean","type":"invalid_request_error","param":"stream","code":"invalid_request"}}



=== TEST 10: a duplicated model field is refused (no smuggling)
--- request
POST /v1/chat/completions
{"model":"llama3-8b","messages":[],"model":"other"}
--- error_code: 400
--- response_body
{"error":{"message":"the field \"model\" appears 2 times","type":"invalid_request_error","param":"model","code":"invalid_request"}}



=== TEST 11: a clamped field of the wrong type is invalid_request
--- request
POST /v1/chat/completions
{"model":"llama3-8b","max_tokens":"lots"}
--- error_code: 400
--- response_body
{"error":{"message":"the field \"max_tokens\" must be a number","type":"invalid_request_error","param":null,"code":"invalid_request"}}



=== TEST 12: an unknown model is 404 model_not_found
--- request
POST /v1/chat/completions
{"model":"gpt-17"}
--- error_code: 404
--- response_headers
X-Error: model_not_found
--- response_body
{"error":{"message":"the model \"gpt-17\" does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}
--- error_log
llm router: 404 model_not_found



=== TEST 13: GET on a routed endpoint is 405 with Allow
--- request
GET /v1/chat/completions
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body
{"error":{"message":"method GET is not allowed, use POST","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}



=== TEST 14: nesting deeper than 1024 levels is refused, not a crash
--- request eval
"POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"x\":" . ("[" x 2000) . ("]" x 2000) . "}"
--- error_code: 400
--- response_body_like: nesting too deep



=== TEST 15: nginx's own 413 (Content-Length over the limit) is JSON
--- config
location /v1/ {
    client_max_body_size 16;
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request
POST /v1/chat/completions
{"model":"llama3-8b","messages":[]}
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"the request body is larger than client_max_body_size","type":"invalid_request_error","param":null,"code":"request_too_large"}}
--- error_log
client intended to send too large body



=== TEST 16: a chunked body over the limit is a JSON 413 too
--- config
location /v1/ {
    client_max_body_size 16;
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
10\r
{\"model\":\"llama3\r
13\r
-8b\",\"messages\":[]}\r
0\r
\r
"
--- error_code: 413
--- response_body_like: "code":"request_too_large"
--- error_log
client intended to send too large chunked body



=== TEST 17: a broken chunked body is a JSON 400
--- raw_request eval
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
zz\r
{\"model\":\"llama3-8b\"}\r
0\r
\r
"
--- error_code: 400
--- response_body_like: ^\{"error":\{"message":"the request could not be parsed","type":"invalid_request_error","param":null,"code":"invalid_request"\}\}
--- error_log
client sent invalid chunked body



=== TEST 18: an engine that refuses connections gives a JSON 502
--- http_config
upstream pool_dead { server 127.0.0.1:1; }
llm_model llama3-8b { upstream pool_dead; }
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 502
--- response_headers
Content-Type: application/json
X-Error: upstream_unreachable
--- response_body
{"error":{"message":"the engine could not be reached or sent an invalid response","type":"server_error","param":null,"code":"upstream_unreachable"}}
--- error_log
connect() failed (111: Connection refused)



=== TEST 19: an engine that does not answer in time gives a JSON 504
--- http_config
upstream pool_slow { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_slow; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_read_timeout 300ms;
}
--- more_headers
X-Mock-Hang: 1
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 504
--- response_body
{"error":{"message":"the engine did not answer in time","type":"server_error","param":null,"code":"upstream_timeout"}}
--- error_log
upstream timed out



=== TEST 20: engine errors in OpenAI shape pass through untouched
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; }
--- more_headers
X-Mock-Status: 429
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 429
--- response_headers
X-Mock-Instance: m1
--- response_body_like: "code":\s*"mock_error"
--- no_error_log
[error]
