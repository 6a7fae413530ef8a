# Routing rules and their precedence: exact, alias, glob, default.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an exact name routes to its upstream block
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model llama3-8b { upstream pool_a; }
llm_model qwen-7b { upstream pool_b; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Upstream $llm_upstream;
    add_header X-Model $llm_model;
}
--- request
POST /v1/chat/completions
{"messages":[{"role":"user","content":"hi"}],"model":"qwen-7b"}
--- response_headers
X-Upstream: pool_b
X-Model: qwen-7b
--- response_body
B
--- no_error_log
[error]



=== TEST 2: the model may come first or last in the body
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model llama3-8b { upstream pool_a; }
llm_model qwen-7b { upstream pool_b; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\",\"messages\":[]}",
 "POST /v1/chat/completions\n{\"messages\":[{\"content\":\"{\\\"model\\\":\\\"qwen-7b\\\"}\"}],\"stream\":false,\"model\":\"llama3-8b\"}"]
--- response_body eval
["A\n", "A\n"]
--- no_error_log
[error]



=== TEST 3: an exact name beats a glob that also matches
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model "qwen-*" { upstream pool_b; }
llm_model qwen-special { upstream pool_a; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"qwen-special\"}",
 "POST /v1/chat/completions\n{\"model\":\"qwen-other\"}"]
--- response_body eval
["A\n", "B\n"]
--- no_error_log
[error]



=== TEST 4: the longest matching glob wins, whatever the order
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model "qwen-*" { upstream pool_a; }
llm_model "qwen-coder-*" { upstream pool_b; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"qwen-coder-32b\"}",
 "POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}",
 "POST /v1/chat/completions\n{\"model\":\"qwen-\"}"]
--- response_body eval
["B\n", "A\n", "A\n"]
--- no_error_log
[error]



=== TEST 5: globs of equal length keep declaration order; '?' is one byte
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model "*-7b" { upstream pool_a; }
llm_model "qwe*" { upstream pool_b; }
llm_model "phi-?" { upstream pool_b; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"qwen-7b\"}",
 "POST /v1/chat/completions\n{\"model\":\"phi-3\"}",
 "POST /v1/chat/completions\n{\"model\":\"phi-3.5\"}"]
--- response_body eval
["A\n", "B\n", "{\"error\":{\"message\":\"the model \\\"phi-3.5\\\" does not exist\",\"type\":\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}\n"]
--- error_code eval
[200, 200, 404]



=== TEST 6: an alias routes like its model and sends the model's name
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; }
llm_alias gpt-4o-mini llama3-8b;
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Model $llm_model;
    add_header X-Target $llm_target_model;
}
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[]}
--- response_headers
X-Model: gpt-4o-mini
X-Target: llama3-8b
X-Mock-Instance: m1
--- response_body chomp
{"model":"llama3-8b","messages":[]}
--- no_error_log
[error]



=== TEST 7: an alias of a model with a target sends the target
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model llama3-8b { upstream pool_a; target meta-llama/Meta-Llama-3-8B-Instruct; }
llm_alias gpt-4o-mini llama3-8b;
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini"}
--- response_body chomp
{"model":"meta-llama/Meta-Llama-3-8B-Instruct"}
--- no_error_log
[error]



=== TEST 8: an alias may point at a name matched by a glob
--- http_config
upstream pool_b { server 127.0.0.1:$TEST_NGINX_MOCK2_PORT; }
llm_model "qwen-*" { upstream pool_b; }
llm_alias fast qwen-1.5b;
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"model":"fast","n":1}
--- response_headers
X-Mock-Instance: m2
--- response_body chomp
{"model":"qwen-1.5b","n":1}



=== TEST 9: llm_model default catches names nothing else matches
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
upstream pool_b { server 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; }
llm_model llama3-8b { upstream pool_a; }
llm_model default { upstream pool_b; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND2_PORT; location / { return 200 "B\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}",
 "POST /v1/chat/completions\n{\"model\":\"anything-else\"}"]
--- response_body eval
["A\n", "B\n"]
--- no_error_log
[error]



=== TEST 10: names are case-sensitive
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request
POST /v1/chat/completions
{"model":"LLAMA3-8B"}
--- error_code: 404
--- response_body_like: "code":"model_not_found"



=== TEST 11: a model name written with JSON escapes is decoded
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request
POST /v1/chat/completions
{"model":"ll\u0061ma3\u002d8b"}
--- response_body
A
--- no_error_log
[error]



=== TEST 12: llm_router is inherited and can be switched off below
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A $request_uri\n"; } }
--- config
llm_router on;
location /v1/ {
    proxy_pass http://$llm_upstream;
}
location /plain/ {
    llm_router off;
    proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
--- request eval
["POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}",
 "POST /plain/x\nnot json at all"]
--- response_body eval
["A /v1/chat/completions\n", "A /plain/x\n"]
--- no_error_log
[error]



=== TEST 13: access checks run before the body is read (deny)
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
--- config
location /v1/ {
    deny all;
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request
POST /v1/chat/completions
{"model":
--- error_code: 403
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"access is denied","type":"invalid_request_error","param":null,"code":"forbidden"}}
--- error_log
access forbidden by rule
--- no_error_log
llm router: 400



=== TEST 14: auth_request runs before routing: refused
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location / { return 200 "A\n"; }
    location /auth { if ($http_authorization = "Bearer good") { return 204; } return 401; }
}
--- config
location /v1/ {
    auth_request /_auth;
    llm_router on;
    proxy_pass http://$llm_upstream;
}
location = /_auth {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/auth;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
}
--- more_headers
Authorization: Bearer bad
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 401
--- response_body
{"error":{"message":"authentication is required","type":"invalid_request_error","param":null,"code":"unauthorized"}}
--- no_error_log
llm router:



=== TEST 15: auth_request runs before routing: allowed
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location / { return 200 "A\n"; }
    location /auth { if ($http_authorization = "Bearer good") { return 204; } return 401; }
}
--- config
location /v1/ {
    auth_request /_auth;
    llm_router on;
    proxy_pass http://$llm_upstream;
}
location = /_auth {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT/auth;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
}
--- more_headers
Authorization: Bearer good
--- request
POST /v1/chat/completions
{"model":"llama3-8b"}
--- error_code: 200
--- response_body
A
--- no_error_log
[error]



=== TEST 16: /v1/models lists configured names and aliases, not patterns
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
llm_model "qwen-*" { upstream pool_a; }
llm_model default { upstream pool_a; }
llm_model mistral-7b { upstream pool_a; }
llm_alias gpt-4o-mini llama3-8b;
--- config
location = /v1/models { llm_models; }
--- request
GET /v1/models
--- response_headers
Content-Type: application/json
--- response_body_like chomp
^\{"object":"list","data":\[\{"id":"llama3-8b","object":"model","created":\d+,"owned_by":"ngx_llm_router"\},\{"id":"mistral-7b","object":"model","created":\d+,"owned_by":"ngx_llm_router"\},\{"id":"gpt-4o-mini","object":"model","created":\d+,"owned_by":"ngx_llm_router"\}\]\}$
--- no_error_log
[error]



=== TEST 17: /v1/models answers 405 to POST
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; }
--- config
location = /v1/models { llm_models; }
--- request
POST /v1/models
{}
--- error_code: 405
--- response_body
{"error":{"message":"use GET to list models","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}



=== TEST 18: variables in an access log line
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama3-8b { upstream pool_a; target meta-llama-3; }
server { listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT; location / { return 200 "A\n"; } }
log_format llm 'llm-log model=$llm_model target=$llm_target_model upstream=$llm_upstream stream=$llm_stream error=$llm_error';
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    access_log logs/error.log llm;
}
--- request
POST /v1/chat/completions
{"model":"llama3-8b","stream":true}
--- response_body
A
--- error_log
llm-log model=llama3-8b target=meta-llama-3 upstream=pool_a stream=1 error=-
