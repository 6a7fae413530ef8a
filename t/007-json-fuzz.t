# Random JSON documents (fixed seed): every one must reach the engine byte
# for byte except the rewritten model value, wherever the model stands and
# whatever whitespace, escapes, numbers and nesting surround it; every
# truncation of one must be a clean 400 invalid_json.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use JSON::PP ();

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

srand(20261123);

my @strings = ('', 'plain', 'a\\/b', 'q\\"uote', 'back\\\\slash\\\\',
               'nl\\n\\t\\r', '\\u00e9\\ud83d\\ude00', "\xc3\xa9\xe2\x82\xac",
               '{\\"not\\":1}', '\\"model\\":\\"x\\"', 'model', '}]');
my @numbers = ('0', '-0', '12345678901234567890', '3.25', '-1e+300', '6.02E23',
               '1e-7', '-0.0');

sub ws { join '', map { (' ', "\n", "\t", "\r", '')[int rand 5] } 1 .. int rand 3 }

sub value {
    my $depth = shift;
    my $k = int rand($depth > 3 ? 4 : 6);
    return '"' . $strings[rand @strings] . '"' if $k == 0;
    return $numbers[rand @numbers] if $k == 1;
    return (qw(true false null))[rand 3] if $k == 2;
    return '"' . $strings[rand @strings] . '"' if $k == 3;
    my @items = map { value($depth + 1) } 1 .. int rand 4;
    return '[' . ws() . join(ws() . ',' . ws(), @items) . ws() . ']' if $k == 4;
    my $i = 0;
    return '{' . ws() . join(',', map { ws() . '"k' . $i++ . '"' . ws() . ':'
                                        . ws() . $_ . ws() } @items) . '}';
}

sub document {
    my $model = shift;
    my @members = map { '"f' . $_ . '"' . ws() . ':' . ws() . value(0) }
                  1 .. int rand 6;
    splice @members, int rand(@members + 1), 0,
           '"model"' . ws() . ':' . ws() . "\"$model\"";
    return '{' . ws() . join(ws() . ',' . ws(), @members) . ws() . '}';
}

our (@requests, @bodies, @codes);

for (1 .. 40) {
    my $seed = int rand 1e9;
    srand($seed);
    my $sent = document('fz-model');
    srand($seed);
    my $got = document('fz-target');
    # the generator itself must only make valid JSON
    JSON::PP->new->decode($sent);
    push @requests, "POST /v1/chat/completions\n$sent";
    push @bodies, $got;
    push @codes, 200;
}

our (@bad_requests, @bad_codes, @bad_bodies);

for (1 .. 40) {
    my $doc = document('fz-model');
    my $cut = 1 + int rand(length($doc) - 1);
    push @bad_requests, "POST /v1/chat/completions\n" . substr($doc, 0, $cut);
    push @bad_codes, 400;
    push @bad_bodies, qr/"code":"invalid_json"/;
}

run_tests();

__DATA__

=== TEST 1: random documents are forwarded exactly, model rewritten
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; keepalive 4; }
llm_model fz-model { upstream pool_a; target fz-target; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
}
--- more_headers
X-Mock-Echo: 1
--- request eval
\@::requests
--- error_code eval
\@::codes
--- response_body eval
\@::bodies
--- no_error_log
[error]



=== TEST 2: every truncation of a document is invalid_json, never a crash
--- http_config
upstream pool_a { server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model fz-model { upstream pool_a; }
--- config
location /v1/ {
    llm_router on;
    proxy_pass http://$llm_upstream;
}
--- request eval
\@::bad_requests
--- error_code eval
\@::bad_codes
--- response_body_like eval
\@::bad_bodies
--- no_error_log
[error]
[alert]
