# Active health checks (llm_check), the shared zone, fallbacks, 503 and
# the status endpoint.  Mock engine 1 and 2 are the peers; 3 answers slowly
# to give the checks time to run; the port of mock 4 accepts connections
# and never answers.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use IO::Socket::INET;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3");

# a peer that accepts connections (in the kernel's backlog) but never answers
our $silent = IO::Socket::INET->new(Listen => 16, ReuseAddr => 1,
                                    LocalAddr => '127.0.0.1',
                                    LocalPort => $ENV{TEST_NGINX_MOCK4_PORT})
    or die "cannot listen on $ENV{TEST_NGINX_MOCK4_PORT}: $!";

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine llamacpp;
    llm_check  interval=100ms timeout=100ms fall=2 rise=2;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT};
}
llm_model m { upstream pool_a; }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    add_header X-Error \$llm_error always;
    add_header X-Upstream \$llm_upstream always;
}
location = /llm/status { llm_router_status; }
location = /wait {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 700;
}
location = /m2/control {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/control;
}
location = /m2/reset {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/reset;
}
location = /m2/stats {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/stats;
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: a peer answering 503 (llama.cpp loading) gets no traffic
--- request eval
["POST /m2/reset\n{}",
 "POST /m2/control\n{\"health_status\":503}",
 "GET /wait",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "GET /m2/stats"]
--- response_body_like eval
["", "health_status", "ok",
 "\"system_fingerprint\":\"m1\"", "\"system_fingerprint\":\"m1\"",
 "\"system_fingerprint\":\"m1\"", "\"system_fingerprint\":\"m1\"",
 "\"requests\":0,"]
--- no_error_log
[alert]
[crit]



=== TEST 2: the status endpoint shows both peers, the failing one down
--- request eval
["POST /m2/control\n{\"health_status\":503}",
 "GET /wait",
 "GET /llm/status"]
--- response_body_like eval
["health_status", "ok",
 qr/^\{"zone":"llm","upstreams":\[\{"name":"pool_a","engine":"llamacpp","balance":"round_robin","check":\{"interval_ms":100,"timeout_ms":100,"fall":2,"rise":2,"uri":"\/health"\},"peers":\[\{"name":"127\.0\.0\.1:\d+","up":true,"configured_down":false,"in_flight":\d+,"failed_tries":\d+,"fails":0,"successes":\d+,"checks":\d+,"last_check_ms":\d{13},"latency_ms":\d+,"last_error":null,"metrics":null\},\{"name":"127\.0\.0\.1:\d+","up":false,"configured_down":false,"in_flight":\d+,"failed_tries":\d+,"fails":\d+,"successes":0,"checks":\d+,"last_check_ms":\d{13},"latency_ms":\d+,"last_error":"status 503","metrics":null\}\]\}\]\}$/]
--- response_headers eval
["", "", "Content-Type: application/json"]



=== TEST 3: a peer that recovers is back after "rise" good checks
--- request eval
["POST /m2/control\n{\"health_status\":503}",
 "GET /wait",
 "POST /m2/control\n{\"health_status\":200}",
 "GET /wait",
 "GET /llm/status"]
--- response_body_like eval
["health_status", "ok", "health_status", "ok",
 qr/"name":"127\.0\.0\.1:\d+","up":true.*"name":"127\.0\.0\.1:\d+","up":true,"configured_down":false,"in_flight":\d+,"failed_tries":\d+,"fails":0,"successes":[2-9]/]



=== TEST 4: a check that gets no answer times out; a refused one fails
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=100ms timeout=80ms fall=1 rise=1;
    server 127.0.0.1:$TEST_NGINX_MOCK4_PORT;
    server 127.0.0.1:1;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
llm_model m { upstream pool_a; }
--- request eval
["GET /wait", "GET /llm/status",
 "POST /v1/chat/completions\n{\"model\":\"m\"}"]
--- response_body_like eval
["ok",
 qr/"up":false,[^}]*"last_error":"timed out","metrics":null\},\{"name":"127\.0\.0\.1:1","up":false,[^}]*"last_error":"connect failed","metrics":null\},\{[^}]*"up":true/,
 "\"system_fingerprint\":\"m1\""]
--- no_error_log
[alert]



=== TEST 5: no healthy peer and no fallback: 503 with Retry-After
The auth_request to the slow mock gives the checks time before routing.
--- http_config
llm_router_zone llm 1m;
upstream pool_dead {
    llm_check interval=1500ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:1;
}
llm_model m { upstream pool_dead; }
--- config
location /v1/ {
    auth_request /wait;
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Error $llm_error always;
    add_header X-Upstream $llm_upstream always;
}
location = /wait {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 700;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
}
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 503
--- response_headers
Retry-After: 2
X-Error: no_healthy_upstream
X-Upstream: pool_dead
--- response_body
{"error":{"message":"no healthy engine can serve the model \"m\" now","type":"server_error","param":null,"code":"no_healthy_upstream"}}
--- error_log
peer 127.0.0.1:1 of upstream "pool_dead" is down: connect failed
llm router: 503 no_healthy_upstream



=== TEST 6: the fallback model serves when the model's peers are down
--- http_config
llm_router_zone llm 1m;
upstream pool_dead {
    llm_check interval=100ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:1;
}
upstream pool_b { server 127.0.0.1:$TEST_NGINX_MOCK2_PORT; }
llm_model big { upstream pool_dead; fallback small; }
llm_model small { upstream pool_b; target small-served; }
--- config
location /v1/ {
    auth_request /wait;
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Upstream $llm_upstream always;
    add_header X-Target $llm_target_model always;
}
location = /wait {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 700;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
}
--- more_headers
X-Mock-Echo: 1
--- request
POST /v1/chat/completions
{"model":"big","n":1}
--- response_headers
X-Upstream: pool_b
X-Target: small-served
X-Mock-Instance: m2
--- response_body chomp
{"model":"small-served","n":1}
--- error_log
llm router: model "big" falls back to "small": no healthy peer in upstream "pool_dead"
--- no_error_log
[error]



=== TEST 7: a peer answering 503 (still loading) is logged down once, with the reason
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine llamacpp;
    llm_check interval=100ms timeout=100ms fall=2 rise=2;
    server 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
}
llm_model m { upstream pool_a; }
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location = /health { return 503 '{"error":{"code":503,"message":"Loading model"}}'; }
}
--- config
location = /wait {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK3_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 700;
}
--- request
GET /wait
--- grep_error_log eval: qr/llm router: peer \S+ of upstream "pool_a" is (?:up|down: [\w ]+)/
--- grep_error_log_out eval
qr/\Allm router: peer 127\.0\.0\.1:\d+ of upstream "pool_a" is down: status 503\n\z/
--- no_error_log
[alert]



=== TEST 8: fallbacks chain past another dead upstream, to an alias
--- http_config
llm_router_zone llm 1m;
upstream pool_dead {
    llm_check interval=100ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:1;
}
upstream pool_dead2 {
    llm_check interval=100ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:2;
}
upstream pool_b { server 127.0.0.1:$TEST_NGINX_MOCK2_PORT; }
llm_model big { upstream pool_dead; fallback medium; }
llm_model medium { upstream pool_dead2; fallback cheap; }
llm_model small { upstream pool_b; }
llm_alias cheap small;
--- more_headers
X-Mock-Echo: 1
--- request eval
["GET /wait", "POST /v1/chat/completions\n{\"model\":\"big\"}"]
--- response_body eval
["{\"status\":\"ok\"}", "{\"model\":\"small\"}"]



=== TEST 9: a peer marked down in the configuration stays down
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=100ms timeout=100ms;
    server 127.0.0.1:$TEST_NGINX_MOCK2_PORT down;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
llm_model m { upstream pool_a; }
--- request eval
["POST /m2/reset\n{}", "GET /wait",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "GET /llm/status"]
--- response_body_like eval
["", "ok", "\"system_fingerprint\":\"m1\"", "\"system_fingerprint\":\"m1\"",
 qr/"up":false,"configured_down":true,.*"up":true,"configured_down":false/]



=== TEST 10: a fallback loop is refused at nginx -t
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model x { upstream a; fallback y; }
llm_model y { upstream a; fallback x; }
--- config
--- request
GET /
--- must_die
--- error_log eval
qr/the fallbacks of llm_model "x" make a loop, in \S+nginx\.conf:\d+/



=== TEST 11: a fallback to nothing is refused at nginx -t
--- http_config
upstream a { server 127.0.0.1:1; }
llm_model x { upstream a; fallback nowhere; }
--- config
--- request
GET /
--- must_die
--- error_log
fallback "nowhere" of llm_model "x" matches no llm_model



=== TEST 12: llm_check needs llm_router_zone
--- http_config
upstream a { llm_check; server 127.0.0.1:1; }
llm_model x { upstream a; }
--- config
--- request
GET /
--- must_die
--- error_log eval
qr/llm_check in upstream "a" needs "llm_router_zone", in \S+nginx\.conf:\d+/



=== TEST 13: bad llm_check parameters and engines are refused
--- http_config
llm_router_zone llm 1m;
upstream a { llm_check interval=1s timeout=2s; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
"llm_check" directive has a timeout longer than its interval



=== TEST 14: an unknown engine is refused
--- http_config
upstream a { llm_engine gpt; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
unknown engine "gpt", use vllm, llamacpp, sglang, tgi, ollama or openai



=== TEST 15: a balancing directive after llm_check would drop the checks
--- http_config
llm_router_zone llm 1m;
upstream a { llm_check; least_conn; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
the llm_* directives of upstream "a" must follow its balancing directive



=== TEST 16: least_conn before llm_check keeps both
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    least_conn;
    llm_check interval=100ms timeout=100ms fall=1 rise=1;
    server 127.0.0.1:1;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
    keepalive 2;
}
llm_model m { upstream pool_a; }
--- request eval
["GET /wait",
 "POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\"}"]
--- response_body_like eval
["ok", "\"system_fingerprint\":\"m1\"", "\"system_fingerprint\":\"m1\""]
--- no_error_log
no live upstreams



=== TEST 17: requests in flight are counted per peer and come back to 0
An SSI page includes a slow request to pool_a and, while it runs, the
status; a failed try and its retry are released too.
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
upstream pool_retry {
    llm_engine vllm;
    server 127.0.0.1:1;
    server 127.0.0.1:$TEST_NGINX_MOCK2_PORT;
}
llm_model m { upstream pool_a; }
llm_model r { upstream pool_retry; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_next_upstream error non_idempotent;
}
location = /page {
    ssi on;
    default_type text/html;
    return 200 '<!--# include virtual="/slow" -->|<!--# include virtual="/llm/status" -->';
}
location = /slow {
    proxy_pass http://pool_a/health;
    proxy_set_header X-Mock-Delay-Ms 500;
}
location = /llm/status { llm_router_status; }
--- request eval
["POST /v1/chat/completions\n{\"model\":\"r\"}",
 "GET /page",
 "GET /llm/status"]
--- response_body_like eval
["\"system_fingerprint\":\"m2\"",
 qr/^\{"status":"ok"\}\|\{"zone":"llm","upstreams":\[\{"name":"pool_a",[^]]*"in_flight":1,.*"name":"pool_retry",.*"name":"127\.0\.0\.1:1",[^}]*"in_flight":0,[^}]*\},\{[^}]*"in_flight":0,/,
 qr/"name":"pool_a",[^]]*"in_flight":0,.*"name":"pool_retry".*"name":"127\.0\.0\.1:1","up":true,"configured_down":false,"in_flight":0,"failed_tries":1,.*"in_flight":0,"failed_tries":0,/]
--- no_error_log
[alert]



=== TEST 18: a zone too small for the peers says so at start
--- http_config eval
"llm_router_zone llm 32k;\nupstream big {\n    llm_engine vllm;\n"
. join('', map { "    server 127.0.0.1:$_;\n" } 20000 .. 20299) . "}\n"
--- config
--- request
GET /
--- must_die
--- error_log
llm_router_zone "llm" is too small for 300 peers



=== TEST 19: a short interval alone is valid: the timeout follows it
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=300ms;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- config
location = /llm/status { llm_router_status; }
--- request
GET /llm/status
--- response_body_like: "check":\{"interval_ms":300,"timeout_ms":300,"fall":3,"rise":2,"uri":"/health"\}
--- no_error_log
[emerg]
