# llm_router_metrics: Prometheus text, checked by a strict parser of the
# exposition format (t/lib/PromText.pm); counters equal the requests sent
# and only go up from one scrape to the next.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use PromText ();

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1", '--tokens', 4);

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    $::last = undef;    # counters only go up within one nginx run
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
llm_router_zone llm 1m;
upstream pool {
    llm_engine vllm;
    llm_scrape interval=100ms;
    server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT};
}
upstream dead {
    server 127.0.0.1:1;
}
llm_model m { upstream pool; }
llm_model "q\\"uote" { upstream pool; }
llm_model d { upstream dead; }
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
}
location = /metrics { llm_router_metrics; }
location = /wait {
    proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}/health;
    proxy_set_header X-Mock-Delay-Ms 300;
}
_EOC_
    }
});

our $chat = '"messages":[{"role":"user","content":"hello world!"}]';
our $last;

# Applied to every response of a block: a metrics text is parsed strictly
# and summed up in a few lines; another body passes unchanged.
sub summary {
    my $text = shift;
    return $text if $text !~ /^# HELP/;
    my ($f, $errs) = PromText::parse($text);
    return "invalid:\n" . join("\n", @$errs) . "\n" if @$errs;
    my @errs = $last ? PromText::monotonic($last, $f) : ();
    return "not monotonic:\n" . join("\n", @errs) . "\n" if @errs;
    $last = $f;
    my $out = '';
    my $v = sub { PromText::value($f, @_) // 'none' };
    for my $m ('m', 'd', 'q"uote') {
        my %l = (model => $m, upstream => $m eq 'd' ? 'dead' : 'pool');
        $out .= "$m:";
        $out .= " $_=" . $v->('llm_requests_total', { %l, status => $_ })
            for qw(2xx 4xx 5xx);
        $out .= " in_flight=" . $v->('llm_requests_in_flight', \%l);
        $out .= " duration=" . $v->('llm_request_duration_seconds_count', \%l);
        $out .= " ttft=" . $v->('llm_time_to_first_token_seconds_count', \%l);
        $out .= " prompt=" . $v->('llm_prompt_tokens_total', \%l);
        $out .= " completion=" . $v->('llm_completion_tokens_total', \%l);
        $out .= " aborts=" . $v->('llm_stream_aborts_total', \%l);
        $out .= " failures=" . $v->('llm_stream_failures_total', \%l);
        $out .= "\n";
    }
    my %p = (upstream => 'pool',
             peer => "127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}");
    $out .= "peer: up=" . $v->('llm_peer_up', \%p)
          . " in_flight=" . $v->('llm_peer_in_flight', \%p)
          . " running=" . $v->('llm_peer_engine_requests_running', \%p)
          . " waiting=" . $v->('llm_peer_engine_requests_waiting', \%p)
          . "\n";
    return $out;
}

run_tests();

__DATA__

=== TEST 1: an idle router: valid text, every model at zero
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body_filters eval
\&::summary
--- response_body_like eval
qr/^m: 2xx=0 4xx=0 5xx=0 in_flight=0 duration=0 ttft=0 prompt=0 completion=0 aborts=0 failures=0
d: 2xx=0 4xx=0 5xx=0 in_flight=0 duration=0 ttft=0 prompt=0 completion=0 aborts=0 failures=0
q"uote: 2xx=0 4xx=0 5xx=0 in_flight=0 duration=0 ttft=0 prompt=0 completion=0 aborts=0 failures=0
peer: up=1 in_flight=0 running=(?:NaN|0) waiting=(?:NaN|0)
\z/



=== TEST 2: counters equal the requests sent, tokens the engines' usage; two scrapes, both valid, counters only go up
An unknown model (404) is nobody's; a dead upstream answers 502; a
stream broken by the engine and one the client leaves are counted.
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",$::chat}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}",
 "POST /v1/chat/completions\n{\"model\":\"nope\"}",
 "POST /v1/chat/completions\n{\"model\":\"d\"}",
 "GET /wait",
 "GET /metrics",
 "POST /v1/chat/completions\n{\"model\":\"m\",$::chat}",
 "POST /v1/chat/completions\n{\"model\":\"q\\\"uote\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},$::chat}",
 "GET /wait",
 "GET /metrics"]
--- more_headers eval
[("") x 8, "X-Mock-Close-After: 1", "", ""]
--- error_code eval
[200, 200, 404, 502, 200, 200, 200, 200, 200, 200, 200]
--- response_body_filters eval
\&::summary
--- response_body_like eval
["chat.completion", "DONE", "model_not_found", "upstream_unreachable", "ok",
 qr/^m: 2xx=2 4xx=0 5xx=0 in_flight=0 duration=2 ttft=2 prompt=8 completion=8 aborts=0 failures=0
d: 2xx=0 4xx=0 5xx=1 in_flight=0 duration=1 ttft=0 prompt=0 completion=0 aborts=0 failures=0
q"uote: 2xx=0 4xx=0 5xx=0 in_flight=0 duration=0 ttft=0 prompt=0 completion=0 aborts=0 failures=0
peer: up=1 in_flight=0 running=0 waiting=0
$/,
 "chat.completion", "chat.completion", "stream_interrupted", "ok",
 qr/^m: 2xx=4 4xx=0 5xx=0 in_flight=0 duration=4 ttft=4 prompt=12 completion=12 aborts=0 failures=1
d: 2xx=0 4xx=0 5xx=1 in_flight=0 duration=1 ttft=0 prompt=0 completion=0 aborts=0 failures=0
q"uote: 2xx=1 4xx=0 5xx=0 in_flight=0 duration=1 ttft=1 prompt=0 completion=4 aborts=0 failures=0
peer: up=1 in_flight=0 running=0 waiting=0
$/]



=== TEST 3: a client that leaves a stream is counted as an abort
A mirror reads the first event (the role, no content: no time to first
token) and gives up while the engine paces.
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
}
location = /page {
    mirror /leave;
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK1_PORT/health;
    proxy_set_header X-Mock-Delay-Ms 400;
}
location = /leave {
    internal;
    proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/v1/chat/completions;
    proxy_method POST;
    proxy_set_body '{"model":"m","stream":true}';
    proxy_set_header X-Mock-Pace-Ms 1000;
    proxy_read_timeout 100ms;
}
location = /metrics { llm_router_metrics; }
--- request eval
["GET /page", "GET /metrics"]
--- response_body_filters eval
\&::summary
--- response_body_like eval
["ok", qr/^m: 2xx=1 4xx=0 5xx=0 in_flight=0 duration=1 ttft=0 prompt=0 completion=0 aborts=1 failures=0\n/]



=== TEST 4: llm_router_metrics without llm_router_zone fails the configuration test
--- http_config
llm_model m { upstream pool; }
upstream pool { server 127.0.0.1:1; }
--- config
location = /metrics { llm_router_metrics; }
--- must_die
--- error_log
"llm_router_metrics" in
needs "llm_router_zone"



=== TEST 5: variants of one model on one upstream share one series, and the text stays valid
--- http_config
llm_router_zone llm 1m;
upstream pool { llm_engine vllm; server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model m { upstream pool; max_context 100; }
llm_model m { upstream pool; max_context 1000; }
llm_model d { upstream pool; }
llm_model "q\"uote" { upstream pool; }
--- config
location /v1/ { llm_router on; proxy_pass http://$llm_upstream; }
location = /metrics { llm_router_metrics; }
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":10}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"max_tokens\":500}",
 "GET /metrics"]
--- response_body_filters eval
\&::summary
--- response_body_like eval
["chat.completion", "chat.completion",
 qr/^m: 2xx=2 4xx=0 5xx=0 in_flight=0 duration=2 ttft=2 prompt=0 completion=8 aborts=0 failures=0\n/]
