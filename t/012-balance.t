# Balancing policies (llm_balance): which peer serves, with loads from the
# shared zone.  A mirror subrequest keeps a slow request in flight while an
# SSI page makes quick ones, one after the other; the mock engine's stats
# say which peer each went to and how many requests each got.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}=m3");

no_shuffle();

our $quick4 = '<!--# include virtual="/quick" wait="yes" -->' x 4;

add_block_preprocessor(sub {
    my $block = shift;
    my $policy = $block->policy // 'least_conn';
    my $extra = $block->upstream_extra // '';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool {
    llm_balance $policy;
    llm_engine vllm;
    $extra
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT};
}
llm_model m { upstream pool; }
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    default_type text/html;
    location = /page { return 200 '$::quick4'; }
}
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
}
location = /page {
    mirror /slow;
    ssi on;
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}/page;
}
location = /slow {
    internal;
    proxy_pass http://pool/health;
    proxy_set_header X-Mock-Delay-Ms 800;
}
location = /quick { proxy_pass http://pool/mock/stats; }
location = /reset1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/reset; }
location = /reset2 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/reset; }
location = /stats1 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/mock/stats; }
location = /stats2 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/stats; }
location = /control2 { proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}/mock/control; }
location = /wait {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK3_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 400;
}
location = /llm/status { llm_router_status; }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: least_conn sends every quick request to the peer not holding the slow one
--- request
GET /page
--- response_body_like chomp
^\{"name":"(m[12])"[^}]*\}\}?\{"name":"\1"[^}]*\}\}?\{"name":"\1"[^}]*\}\}?\{"name":"\1"[^}]*\}\}?$
--- no_error_log
[error]



=== TEST 2: round robin, in the same situation, alternates (the contrast)
--- policy: round_robin
--- request
GET /page
--- response_body_like chomp
^\{"name":"(m[12])"[^}]*\}\}?\{"name":"(?!\1)m[12]"
--- no_error_log
[error]



=== TEST 3: least_conn with weights, all idle: 3 to 1
--- upstream_extra
--- http_config
llm_router_zone llm 1m;
upstream pool {
    llm_balance least_conn;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT weight=3;
    server 127.0.0.1:$TEST_NGINX_MOCK2_PORT;
}
llm_model m { upstream pool; }
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 ("POST /v1/chat/completions\n{\"model\":\"m\"}") x 8,
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 8,
 "\"requests\":6,", "\"requests\":2,"]



=== TEST 4: least_load sends to the engine with the shorter queue
m2 reports 10 waiting requests; m1 none.
--- policy: least_load
--- upstream_extra: llm_scrape interval=100ms;
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 "POST /control2\n{\"waiting\":10}",
 "GET /wait",
 ("POST /v1/chat/completions\n{\"model\":\"m\"}") x 4,
 "GET /stats1", "GET /stats2",
 "POST /control2\n{\"waiting\":0}"]
--- response_body_like eval
["reset", "reset", "waiting", "ok", ("chat.completion") x 4,
 "\"requests\":4,", "\"requests\":0,", "waiting"]



=== TEST 5: least_load without fresh metrics falls back to least_conn
The metrics URI does not exist: both peers are idle, so both serve.
--- policy: least_load
--- upstream_extra: llm_scrape interval=100ms uri=/nothing;
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}", "GET /wait",
 ("POST /v1/chat/completions\n{\"model\":\"m\"}") x 4,
 "GET /stats1", "GET /stats2", "GET /llm/status"]
--- response_body_like eval
["reset", "reset", "ok", ("chat.completion") x 4,
 "\"requests\":2,", "\"requests\":2,",
 qr/"balance":"least_load".*"stale":true.*"stale":true/]



=== TEST 6: random_two spreads the requests over both peers
--- policy: random_two
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 ("POST /v1/chat/completions\n{\"model\":\"m\"}") x 24,
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 24,
 qr/"requests":(?:[1-9]|1\d|2[0-3]),/, qr/"requests":(?:[1-9]|1\d|2[0-3]),/]



=== TEST 7: least_conn never picks a peer the checks marked down
--- upstream_extra: llm_check interval=100ms timeout=100ms fall=1;
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 "POST /control2\n{\"health_status\":503}", "GET /wait",
 ("POST /v1/chat/completions\n{\"model\":\"m\"}") x 4,
 "GET /stats2", "POST /control2\n{\"health_status\":200}"]
--- response_body_like eval
["reset", "reset", "health_status", "ok", ("chat.completion") x 4,
 "\"requests\":0,", "health_status"]



=== TEST 8: a policy after keepalive is refused
--- http_config
llm_router_zone llm 1m;
upstream pool { keepalive 4; llm_balance least_conn; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
"llm_balance" directive must come before other balancing directives and keepalive



=== TEST 9: an unknown policy is refused
--- http_config
llm_router_zone llm 1m;
upstream pool { llm_balance fastest; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
unknown balancing policy "fastest", use round_robin, least_conn, least_load, random_two, session or prefix



=== TEST 10: a policy needs llm_router_zone
--- http_config
upstream pool { llm_balance least_conn; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
llm_balance in upstream "pool" needs "llm_router_zone"



=== TEST 11: session: one user's requests all go to one peer
--- policy: session
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 ("POST /v1/chat/completions\n{\"model\":\"m\",\"user\":\"alice\"}") x 8,
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 8,
 "\"requests\":[08],", "\"requests\":[08],"]



=== TEST 12: session: many users spread over both peers
--- policy: session
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 (map { "POST /v1/chat/completions\n{\"model\":\"m\",\"user\":\"user-$_\"}" } 1 .. 16),
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 16,
 qr/"requests":(?:[1-9]|1[0-5]),/, qr/"requests":(?:[1-9]|1[0-5]),/]



=== TEST 13: session keyed by a header
--- policy: session key=$http_x_session_id
--- more_headers
X-Session-Id: s-42
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 (map { "POST /v1/chat/completions\n{\"model\":\"m\",\"user\":\"u$_\"}" } 1 .. 6),
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 6,
 "\"requests\":[06],", "\"requests\":[06],"]



=== TEST 14: prefix: the same system prompt meets the same engine
--- policy: prefix length=80
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 (map { "POST /v1/chat/completions\n{\"messages\":[{\"role\":\"system\",\"content\":\"You are the support assistant of ACME; answer briefly.\"},{\"role\":\"user\",\"content\":\"question $_\"}],\"model\":\"m\"}" } 1 .. 6),
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 6,
 "\"requests\":[06],", "\"requests\":[06],"]



=== TEST 15: prefix: different prompts spread
--- policy: prefix length=64
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 (map { "POST /v1/chat/completions\n{\"messages\":[{\"role\":\"system\",\"content\":\"assistant number $_ of many\"}],\"model\":\"m\"}" } 1 .. 16),
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", ("chat.completion") x 16,
 qr/"requests":(?:[1-9]|1[0-5]),/, qr/"requests":(?:[1-9]|1[0-5]),/]



=== TEST 16: $llm_peer names the peer that served
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    add_header X-Peer $llm_peer;
    add_header X-Session $llm_session;
}
--- request
POST /v1/chat/completions
{"model":"m","user":"bob"}
--- response_headers_like
X-Peer: 127\.0\.0\.1:\d+
X-Session: bob



=== TEST 17: bad session parameters are refused
--- http_config
llm_router_zone llm 1m;
upstream pool { llm_balance session factor=0.5; server 127.0.0.1:1; }
--- config
--- request
GET /
--- must_die
--- error_log
invalid parameter "factor=0.5"



=== TEST 18: prefix: the load bound spills a busy prefix to another peer
The routed request mirrors a slow request with the same prompt (same ring
key); with factor=1 the two cannot share a peer.
--- policy: prefix length=64 factor=1
--- config
location /v1/ {
    llm_router on;
    mirror /slow-same-prompt;
    proxy_pass http://$llm_upstream;
}
location = /slow-same-prompt {
    internal;
    proxy_pass http://pool/health;
    proxy_set_header X-Mock-Delay-Ms 300;
}
location = /reset1 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/reset; }
location = /reset2 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/reset; }
location = /stats1 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/stats; }
location = /stats2 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/stats; }
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 "POST /v1/chat/completions\n{\"messages\":[{\"role\":\"system\",\"content\":\"shared system prompt for the bound test\"}],\"model\":\"m\"}",
 "GET /stats1", "GET /stats2"]
--- response_body_like eval
["reset", "reset", "chat.completion",
 qr/"by_path":\{"\/(?:health|v1\/chat\/completions)":1\}\}/,
 qr/"by_path":\{"\/(?:health|v1\/chat\/completions)":1\}\}/]



=== TEST 19: prefix: without the bound both stay on the prefix's peer
--- policy: prefix length=64 factor=100
--- config
location /v1/ {
    llm_router on;
    mirror /slow-same-prompt;
    proxy_pass http://$llm_upstream;
}
location = /slow-same-prompt {
    internal;
    proxy_pass http://pool/health;
    proxy_set_header X-Mock-Delay-Ms 300;
}
location = /reset1 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/reset; }
location = /reset2 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/reset; }
location = /stats { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/mock/stats; }
location = /stats2 { proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK2_PORT/mock/stats; }
--- request eval
["POST /reset1\n{}", "POST /reset2\n{}",
 "POST /v1/chat/completions\n{\"messages\":[{\"role\":\"system\",\"content\":\"shared system prompt for the bound test\"}],\"model\":\"m\"}",
 "GET /stats", "GET /stats2"]
--- response_body_like eval
["reset", "reset", "chat.completion",
 qr/"by_path":\{(?:\}|"\/[^"]+":1,"\/[^"]+":1\})\}/,
 qr/"by_path":\{(?:\}|"\/[^"]+":1,"\/[^"]+":1\})\}/]
