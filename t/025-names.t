# Names from the body cannot inject headers, logs or JSON (issue 15, 5).
#
# "model" and "user" (which feeds $llm_session) are refused with 400
# invalid_request when, decoded, they hold a byte below 0x20 or 0x7f (raw or
# escaped: \u0000, \u000d\u000a) or are not valid UTF-8, or are longer than
# 256 bytes; escaped UTF-8 ("caf\u00e9") still routes.  So $llm_model and
# $llm_session in add_header / proxy_set_header cannot split a response or
# smuggle a header to the engine.  Every error body is valid JSON and valid
# UTF-8, and an engine's code and type only reach $llm_error and the
# normalised error when they are tokens.
#
# The backend (a server block) echoes the headers the router sent it; every
# model routes (llm_model default), so that a name that is not refused
# reaches it.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;
use JSON::PP ();

no_shuffle();

# the body decoded as JSON (UTF-8) and printed canonically in ASCII, or
# why it is not JSON
sub json_ok {
    my ($body) = @_;
    my $doc = eval { JSON::PP->new->utf8->decode($body) };
    return defined $doc ? JSON::PP->new->canonical->ascii->encode($doc) . "\n"
                        : "NOT JSON: $body";
}

add_block_preprocessor(sub {
    my $block = shift;
    my $default = $block->no_default ? '' : 'llm_model default { upstream pool; }';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
upstream engine { llm_engine vllm; server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
llm_model "caf\xc3\xa9" { upstream pool; target cafe-engine; }
llm_model e { upstream engine; }
$default
server {
    listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT};
    location / {
        default_type application/json;
        if (\$http_x_err = crlf) {
            return 429 '{"error":{"message":"slow down","type":"requests","param":null,"code":"x\\u000d\\u000aX-Injected: 1"}}';
        }
        if (\$http_x_err = vllm) {
            return 400 '{"object":"error","message":"bad \xff\xfe \\u0001 end","type":"T\\u000d\\u000aX-Injected: 2","param":null,"code":"c\\u000d\\u000aX-Injected: 3"}';
        }
        if (\$http_x_err = tokens) {
            return 400 '{"object":"error","message":"fine","type":"BadRequestError","code":"bad_thing"}';
        }
        return 200 'model=\$http_x_model session=\$http_x_session smuggled=\$http_x_smuggled\n';
    }
}
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_set_header X-Model \$llm_model;
    proxy_set_header X-Session \$llm_session;
    add_header X-Model \$llm_model always;
    add_header X-Session \$llm_session always;
    add_header X-Error \$llm_error always;
    proxy_pass http://\$llm_upstream;
}
_EOC_
    }
});

sub chat { my ($model, $extra) = @_; $extra //= '';
           return "POST /v1/chat/completions\n{\"model\":\"$model\"$extra,\"messages\":[]}" }

sub refused {
    my ($field, $why) = @_;
    return qq({"error":{"message":"the field \\"$field\\" $why","type":"invalid_request_error","param":"$field","code":"invalid_request"}}\n);
}

our $long = 'm' x 257;
our $max = 'm' x 256;

run_tests();

__DATA__

=== TEST 1: a raw CR LF in the model: 400, nothing split or smuggled
--- request eval
::chat("a\r\nX-Smuggled: 1")
--- error_code: 400
--- response_headers
!X-Model
!X-Smuggled
X-Error: invalid_request
--- response_body eval
::refused("model", "holds a control character")
--- error_log
llm router: 400 invalid_request: the field "model" holds a control character



=== TEST 2: an escaped CR LF (\u000d\u000a) in the model: 400, not proxied with it
--- request eval
::chat('a\u000d\u000aX-Smuggled: 1')
--- error_code: 400
--- response_headers
!X-Model
!X-Smuggled
--- response_body eval
::refused("model", "holds a control character")



=== TEST 3: an escaped NUL is not cut off: "a\u0000b" is refused, not routed as "a"
--- request eval
::chat('gpt\u0000evil')
--- error_code: 400
--- response_body eval
::refused("model", "holds a control character")



=== TEST 4: other escaped control characters (\n, \t, \u001f) too
--- request eval
[::chat('a\nb'), ::chat('a\tb'), ::chat('a\u001fb')]
--- error_code eval
[400, 400, 400]
--- response_body eval
[::refused("model", "holds a control character"),
 ::refused("model", "holds a control character"),
 ::refused("model", "holds a control character")]



=== TEST 5: 0x7f, raw and escaped
--- request eval
[::chat("a\x7fb"), ::chat('a\u007fb')]
--- error_code eval
[400, 400]
--- response_body eval
[::refused("model", "holds a control character"),
 ::refused("model", "holds a control character")]



=== TEST 6: invalid UTF-8 in the model: 400 with a valid JSON body
--- request eval
[::chat("\xff\xfe"), ::chat("a\xc3"), ::chat("\xed\xa0\x80"), ::chat('\ud800x')]
--- error_code eval
[400, 400, 400, 400]
--- response_body eval
[::refused("model", "is not valid UTF-8"), ::refused("model", "is not valid UTF-8"),
 ::refused("model", "is not valid UTF-8"), ::refused("model", "is not valid UTF-8")]
--- response_headers eval
["!X-Model", "!X-Model", "!X-Model", "!X-Model"]



=== TEST 7: a model of 257 bytes is refused, one of 256 routes
--- request eval
[::chat($::long), ::chat($::max)]
--- error_code eval
[400, 200]
--- response_body eval
[::refused("model", "is longer than 256 bytes"),
 "model=$::max session= smuggled=\n"]



=== TEST 8: escaped UTF-8 names still route, and reach headers as UTF-8
--- request eval
[::chat('caf\u00e9'), ::chat("caf\xc3\xa9"), ::chat('\ud83d\ude00')]
--- response_headers eval
["X-Model: caf\xc3\xa9", "X-Model: caf\xc3\xa9", "X-Model: \xf0\x9f\x98\x80"]
--- response_body eval
["model=caf\xc3\xa9 session= smuggled=\n",
 "model=caf\xc3\xa9 session= smuggled=\n",
 "model=\xf0\x9f\x98\x80 session= smuggled=\n"]



=== TEST 9: a model with a bad escape and a raw CR LF: invalid_json, and $llm_model stays empty
--- request eval
::chat("a\r\nX-Injected: 1\\x")
--- error_code: 400
--- response_headers
!X-Model
!X-Injected
--- response_body
{"error":{"message":"the field \"model\" is not a valid JSON string","type":"invalid_request_error","param":"model","code":"invalid_json"}}



=== TEST 10: the session ("user") with an escaped CR LF cannot smuggle a header to the engine
--- request eval
::chat('m', ',"user":"u\u000d\u000aX-Smuggled: 1"')
--- error_code: 400
--- response_headers
!X-Session
!X-Smuggled
--- response_body eval
::refused("user", "holds a control character")



=== TEST 11: the session: raw control bytes, invalid UTF-8, over 256 bytes (decoded or raw)
--- request eval
[::chat('m', ",\"user\":\"u\x01\""), ::chat('m', ",\"user\":\"\xff\""),
 ::chat('m', ",\"user\":\"$::long\""), ::chat('m', ',"user":"' . ('\u00e9' x 300) . '"')]
--- error_code eval
[400, 400, 400, 400]
--- response_body eval
[::refused("user", "holds a control character"), ::refused("user", "is not valid UTF-8"),
 ::refused("user", "is longer than 256 bytes"), ::refused("user", "is longer than 256 bytes")]



=== TEST 12: a good session goes on, escaped or not; a "user" that is not a string is ignored
--- request eval
[::chat('m', ',"user":"u-\u00e9"'), ::chat('m', ",\"user\":\"$::max\""), ::chat('m', ',"user":42')]
--- response_body eval
["model=m session=u-\xc3\xa9 smuggled=\n", "model=m session=$::max smuggled=\n",
 "model=m session= smuggled=\n"]



=== TEST 13: the 404 of an unknown model quotes its name as valid JSON
--- no_default: 1
--- request eval
[::chat('a\"b\\\\c'), ::chat("caf\xc3\xa9s")]
--- error_code eval
[404, 404]
--- response_body_filters eval
\&::json_ok
--- response_body eval
['{"error":{"code":"model_not_found","message":"the model \"a\"b\\\\c\" does not exist","param":"model","type":"invalid_request_error"}}' . "\n",
 '{"error":{"code":"model_not_found","message":"the model \"caf\u00e9s\" does not exist","param":"model","type":"invalid_request_error"}}' . "\n"]



=== TEST 14: {"model":"\xff\xfe"} without a default model: a 400 in valid JSON, not raw bytes in a 404
--- no_default: 1
--- request eval
::chat("\xff\xfe")
--- error_code: 400
--- response_body_filters eval
\&::json_ok
--- response_body
{"error":{"code":"invalid_request","message":"the field \"model\" is not valid UTF-8","param":"model","type":"invalid_request_error"}}



=== TEST 15: an engine error in OpenAI's shape with a CR LF in its code: $llm_error is not split
--- request eval
::chat('e')
--- more_headers
X-Err: crlf
--- error_code: 429
--- response_headers
X-Error: upstream_error
!X-Injected



=== TEST 16: a normalised engine error: a code and a type that are not tokens are replaced, the message made valid UTF-8
--- request eval
::chat('e')
--- more_headers
X-Err: vllm
--- error_code: 400
--- response_headers
X-Error: upstream_error
!X-Injected
--- response_body_filters eval
\&::json_ok
--- response_body
{"error":{"code":"upstream_error","message":"bad \ufffd\ufffd \u0001 end","param":null,"type":"invalid_request_error"}}



=== TEST 17: an engine's code and type that are tokens are kept
--- request eval
::chat('e')
--- more_headers
X-Err: tokens
--- error_code: 400
--- response_headers
X-Error: bad_thing
--- response_body
{"error":{"message":"fine","type":"BadRequestError","param":null,"code":"bad_thing"}}
