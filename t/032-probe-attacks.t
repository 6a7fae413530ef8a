# The router's own client (checks, scrapes, limits, /tokenize) against a
# hostile engine: answers that never end, drip, flood, lie about their
# framing, or are cut anywhere (t/lib/probe_engine.py answers each path
# with the raw bytes set for it below).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use MIME::Base64 qw(encode_base64);

{
    local $ENV{TEST_NGINX_MOCK} = "$FindBin::Bin/lib/probe_engine.py";
    start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=raw");
}

# answer(PATH, MODE, RAW[, MORE]): how the engine answers PATH
sub answer {
    my ($path, $mode, $raw, $more) = @_;
    LLMTest::mock_control($ENV{TEST_NGINX_MOCK1_PORT}, {
        path => $path, mode => $mode, raw => encode_base64($raw, ''),
        more => encode_base64($more // '', '') });
}

my $ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
my $chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

# about half a second for the request that lets the probes run
answer('/pause', 'split', "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n"
                          . ('p' x 300));

# engines that never stop sending
answer('/flood-reason', 'flood', "HTTP/1.1 200 ", 'a');
answer('/flood-ext', 'flood', "${chunked}1;", 'a');
answer('/flood-trailer', 'flood', "${chunked}0\r\nX-T: ", 'a');
answer('/flood-zeros', 'flood', $chunked, '0');

# checks
answer('/status-2000', 'once', "HTTP/1.1 2000 OK\r\n\r\n");
answer('/continue', 'once', "HTTP/1.1 100 Continue\r\n\r\n$ok");
answer('/no-reason', 'hold', "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
answer('/ssh', 'once', "SSH-2.0-OpenSSH_9.0\r\n");
answer('/hang', 'hold', '');

# limits: vLLM's /v1/models
answer('/v1/models', 'hold', "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n"
                             . "\r\n{\"data\":[{\"max_model_len\":4096,"
                             . "\"pad\":\"" . ('a' x 299960) . "\"}]}");

# the routed request itself: the short variant's engine answers "short"
answer('/v1/chat/completions', 'once',
       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nshort");

# /tokenize: each test sets its answer (--- init)
sub count_answer {
    my ($mode, $raw, $more) = @_;
    answer('/tokenize', $mode, $raw, $more);
}

sub json_answer {
    my ($body) = @_;
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    . "Content-Length: " . length($body) . "\r\n\r\n$body";
}

# one message of 40 bytes and max_tokens 80: estimate 97, near the short
# variant's 100; a count of 30 makes 110 (the long variant)
our $tokenize_config = <<"_EOC_";
upstream short_pool {
    llm_engine vllm;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream long_pool { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
llm_model llama {
    upstream short_pool; max_context 100; target short-model;
    tokenize on timeout=1s;
}
llm_model llama { upstream long_pool; max_context 1000; }
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location / { return 200 "long"; }
}
_EOC_

our $chat = "POST /v1/chat/completions\n{\"model\":\"llama\",\"max_tokens\":80,"
    . "\"messages\":[{\"role\":\"user\",\"content\":\"" . ('x' x 40)
    . "\"}]}";

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location = /pause {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/pause;
}
location = /alive {
    return 200 "alive\\n";
}
location = /llm/status {
    llm_router_status;
}
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    add_header X-Estimate \$llm_estimated_tokens always;
}
_EOC_
    }
    if (!defined $block->request) {
        $block->set_value("request", ["GET /pause", "GET /alive"]);
    }
    if (!defined $block->response_body
        && !defined $block->response_body_like)
    {
        $block->set_value("response_body", ["p" x 300, "alive\n"]);
    }
});

run_tests();

__DATA__

=== TEST 1: a status line that never ends: cut at the headers' cap, the worker serves on
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/flood-reason;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":false,[^}]*"last_error":"invalid response"/]



=== TEST 2: a chunk extension that never ends: the timeout ends it, the worker serves on
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=400ms uri=/flood-ext;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", "p", qr/"last_error":"timed out"/]



=== TEST 3: a trailer that never ends: cut at the headers' cap
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    llm_scrape interval=400ms uri=/flood-trailer;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"last_error":"invalid response"/]



=== TEST 4: /tokenize: a complete answer from an engine that never closes: the count at the body's end
--- http_config eval: $::tokenize_config
--- init
main::count_answer("hold", main::json_answer('{"count":30}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 110
--- response_body: long



=== TEST 5: /tokenize: a chunked answer byte by byte, with an extension and a trailer
--- http_config eval: $::tokenize_config
--- init
main::count_answer("split", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6;x=y\r\n{\"coun\r\n6\r\nt\":30}\r\n0\r\nX-T: 1\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 110
--- response_body: long



=== TEST 6: /tokenize: a negative count: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", main::json_answer('{"count":-30}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short



=== TEST 7: /tokenize: a count that is a string: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", main::json_answer('{"count":"30"}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short



=== TEST 8: /tokenize: a count past any integer: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", main::json_answer('{"count":1e300}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short



=== TEST 9: /tokenize: nested "tokens" arrays count their top level
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", main::json_answer('{"tokens":[[1,[2,[3]]],[4,5,6]]}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 82
--- response_body: short



=== TEST 10: /tokenize: a 100 Continue before the 200 is the answer, not a count (HTTP/1.0 asked)
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 100 Continue\r\n\r\n" . main::json_answer('{"count":30}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 11: /tokenize: Content-Length and chunked: chunked is read
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"count\":30}\r\n0\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 110
--- response_body: long



=== TEST 12: /tokenize: "gzip, chunked" cannot be undone: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nc\r\n{\"count\":30}\r\n0\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 13: /tokenize: two different lengths: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 13\r\n\r\n{\"count\":30} ");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 14: /tokenize: the engine closes mid-chunk: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"count\":30");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 15: /tokenize: the engine closes mid-header: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nContent-Len");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 16: /tokenize: a chunk size of 64 hex digits: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" . ("f" x 64) . "\r\n{\"count\":30}");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 17: /tokenize: a chunk size that looks negative: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-c\r\n{\"count\":30}\r\n0\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 18: /tokenize: no CRLF after a chunk's data: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n{\"count\":30}0\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 19: /tokenize: bytes after the body are not read as body
--- http_config eval: $::tokenize_config
--- init
main::count_answer("hold", main::json_answer('{"count":30}') . '{"count":500}');
--- request eval: $::chat
--- response_headers
X-Estimate: 110
--- response_body: long



=== TEST 20: /tokenize: an answer past the 1 MiB cap: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", main::json_answer('{"count":30,"pad":"' . ("a" x 1100000) . '"}'));
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (answer too large), the estimate is used



=== TEST 21: /tokenize: an engine that drips a byte a second: the timeout ends it
--- http_config eval: $::tokenize_config
--- init
main::count_answer("drip", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (timed out), the estimate is used



=== TEST 22: /tokenize: a status line with a NUL and bare LFs
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 O\0K\nContent-Length: 12\n\n{\"count\":30}");
--- request eval: $::chat
--- response_headers
X-Estimate: 110
--- response_body: long



=== TEST 23: /tokenize: an obs-fold continuation line: the estimate
--- http_config eval: $::tokenize_config
--- init
main::count_answer("once", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 12\r\n\r\n{\"count\":30}");
--- request eval: $::chat
--- response_headers
X-Estimate: 97
--- response_body: short
--- error_log
failed (no count in the answer), the estimate is used



=== TEST 24: check: a status of four digits
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/status-2000;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":false,[^}]*"last_error":"invalid response"/]



=== TEST 25: check: a 100 Continue is the answer (HTTP/1.0 asked, none is due)
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/continue;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":false,[^}]*"last_error":"status 100"/]



=== TEST 26: check: no reason phrase, an engine that never closes
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/no-reason;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":true,[^}]*"last_error":null/]



=== TEST 27: check: another protocol
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/ssh;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"up":false,[^}]*"last_error":"invalid response"/]



=== TEST 28: check: an engine that never answers: the timeout, and nginx exits with the check in flight
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_check interval=1s timeout=900ms fall=1 uri=/hang;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
--- request eval
["GET /pause", "GET /llm/status"]
--- response_body_like eval
["p", qr/"fails":0,[^}]*"last_error":null/]



=== TEST 29: limits: an answer past the 256 KiB cap is refused, logged
--- http_config
llm_router_zone llm 1m;
upstream pool_a {
    llm_engine vllm;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
llm_model m { upstream pool_a; max_context auto; }
--- request
GET /pause
--- response_body_like: ^p+$
--- error_log
did not report its context size: metrics too large



=== TEST 30: /tokenize: the client goes away while the engine stalls: the probe ends with the request
--- http_config
upstream short_pool {
    llm_engine vllm;
    server 127.0.0.1:$TEST_NGINX_MOCK1_PORT;
}
upstream long_pool { server 127.0.0.1:$TEST_NGINX_BACKEND_PORT; }
llm_model llama {
    upstream short_pool; max_context 100; target short-model;
    tokenize on timeout=1500ms;
}
llm_model llama { upstream long_pool; max_context 1000; }
server {
    listen 127.0.0.1:$TEST_NGINX_BACKEND_PORT;
    location / { return 200 "long"; }
}
--- init
main::count_answer("hold", "");
--- request eval: $::chat
--- timeout: 0.3
--- abort
--- ignore_response
--- wait: 2
--- error_log
client prematurely closed connection
--- no_error_log
/tokenize of
