# Issue 15, section 1: what a client sends can never make a request hook
# not run.  Each shipped hook (lua/) gets each body that once made the Lua
# side refuse a document the router accepted (numbers beyond a double,
# nesting past the old Lua limit, escapes JSON does not know, long numbers,
# keys written with escapes, repeated keys), once where llm_hook_on_error is
# fail (/v1/) and once where it is pass (/pass/v1/): both times the hook
# runs, blocks what it blocks and edits what it edits.  A body nested past
# the one depth limit is refused before any hook.  Then: a hook that cannot
# run fails the request (or passes it, logged, under pass), and what
# llm.reject() and llm.set_header() accept.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

$ENV{TEST_NGINX_LUA_LIB} = "$FindBin::Bin/../lua";
$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1");

no_shuffle();

# what each hook is given to find, and what it does with it
our %Text = (
    'prompt_guard.lua'    => 'ignore previous instructions',
    'pii_redact.lua'      => 'write to bob@example.com',
    'system_prompt.lua'   => 'hi',
    'model_allowlist.lua' => 'hi',
);

our %Expect = (
    'prompt_guard.lua'    => [400, qr/"code":"prompt_rejected"/],
    'pii_redact.lua'      => [200, qr/^(?!.*bob\@example\.com).*\[EMAIL\]/],
    'system_prompt.lua'   => [200, qr/^\{"model":"m","messages":\[\{"content":"SYS-PROMPT","role":"system"\},/],
    'model_allowlist.lua' => [403, qr/"code":"model_not_allowed"/],
);

# the limit of nesting, shared by the router's scanner and the hooks
our $Limit = 1024;

sub deep { my ($n, $inner) = @_; ('[' x $n) . ($inner // '') . (']' x $n) }

# a chat body whose one message has the hook's text, written by $content
# (a sprintf format for the text), with $extra in the message and $top at
# the top level
sub chat {
    my ($hook, $content, $extra, $top) = @_;
    my $text = sprintf($content // '"%s"', $Text{$hook});
    return '{"model":"m","messages":[{"role":"user","content":' . $text
           . ($extra // '') . '}]' . ($top // '') . '}';
}

add_block_preprocessor(sub {
    my $block = shift;
    my $hook = $block->hook // 'prompt_guard.lua';
    my $file = $block->own_hook ? "$ENV{TEST_NGINX_HOOKS}/" . $block->own_hook
                                : "$ENV{TEST_NGINX_LUA_LIB}/$hook";

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; }
llm_model m { upstream pool; }
_EOC_
    }

    if (!defined $block->config) {
        my $extra = $block->location_extra // '';
        $extra .= "\n    proxy_set_header X-Mock-Echo 1;" if !$block->no_echo;
        # a prompt 1000 deep takes valgrind longer than the default 50ms
        $extra .= "\n    llm_hook_limits time=10s;"
            if $ENV{TEST_NGINX_USE_VALGRIND} && $extra !~ /llm_hook_limits/;
        $block->set_value("config", <<"_EOC_");
set \$llm_deny_list "ignore previous instructions";
set \$llm_system_prompt "SYS-PROMPT";
location /v1/ {
    llm_router on;
    llm_hook $file;
    proxy_pass http://\$llm_upstream;
    $extra
}
location /pass/v1/ {
    rewrite ^/pass(/.*)\$ \$1 break;
    llm_router on;
    llm_hook $file;
    llm_hook_on_error pass;
    proxy_pass http://\$llm_upstream;
    $extra
}
_EOC_
    }

    # --- doc: one body, sent to both locations, the hook's outcome expected
    if (defined(my $doc = $block->doc)) {
        my ($code, $like) = @{ $Expect{$hook} };
        $block->set_value("request", [
            "POST /v1/chat/completions\n$doc",
            "POST /pass/v1/chat/completions\n$doc" ]);
        $block->set_value("error_code", [$code, $code]);
        $block->set_value("response_body_like", [$like, $like]);
        $block->set_value("no_error_log", "[error]\nnot called")
            if !defined $block->no_error_log;
    }
});

run_tests();

__DATA__

=== TEST 1: prompt_guard: a repeated key with 1e400, nested in the message it reads
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', undef, ',"x":{"a":1,"a":1e400}')



=== TEST 2: pii_redact: a repeated key with 1e400, nested in the message it reads
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', undef, ',"x":{"a":1,"a":1e400}')



=== TEST 3: system_prompt: a repeated key with 1e400, nested in the message it moves
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', undef, ',"x":{"a":1,"a":1e400}')



=== TEST 4: prompt_guard: numbers beyond a double in the message: 1e400, -1e400, 1e-400
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', undef, ',"n":[1e400,-1e400,1e-400,1E+999999999999]')



=== TEST 5: pii_redact: numbers beyond a double are written back as they came
--- hook: pii_redact.lua
--- request eval
["POST /v1/chat/completions\n" . main::chat('pii_redact.lua', undef, ',"n":[1e400,-1e400,1e-400,-0,0.5]'),
 "POST /pass/v1/chat/completions\n" . main::chat('pii_redact.lua', undef, ',"n":[1e400,-1e400,1e-400,-0,0.5]')]
--- response_body eval
['{"model":"m","messages":[{"role":"user","content":"write to [EMAIL]","n":[1e400,-1e400,1e-400,0,0.5]}]}',
 '{"model":"m","messages":[{"role":"user","content":"write to [EMAIL]","n":[1e400,-1e400,1e-400,0,0.5]}]}']
--- no_error_log
[error]



=== TEST 6: system_prompt: numbers beyond a double in the messages it moves
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', undef, ',"n":[1e400,-1e400,1e-400]')



=== TEST 7: prompt_guard: a prompt nested 1000 deep is still read
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', main::deep(1000, '"%s"'))



=== TEST 8: pii_redact: a prompt nested 1000 deep is still redacted
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', main::deep(1000, '"%s"'))



=== TEST 9: prompt_guard: a member nested up to the limit in the message (the body 1024 deep) is decoded; one more level is 400 before any hook
--- hook: prompt_guard.lua
--- request eval
["POST /v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, ',"x":' . main::deep($main::Limit - 3)),
 "POST /pass/v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, ',"x":' . main::deep($main::Limit - 3)),
 "POST /v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, ',"x":' . main::deep($main::Limit - 2)),
 "POST /pass/v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, ',"x":' . main::deep($main::Limit - 2))]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
['"code":"prompt_rejected"', '"code":"prompt_rejected"',
 '"code":"invalid_json".*nesting too deep|nesting too deep.*"code":"invalid_json"',
 '"code":"invalid_json".*nesting too deep|nesting too deep.*"code":"invalid_json"']
--- no_error_log
[error]
not called



=== TEST 10: pii_redact: a member nested up to the limit in the message
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', undef, ',"x":' . main::deep($main::Limit - 3))



=== TEST 11: system_prompt: a member nested up to the limit in the message
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', undef, ',"x":' . main::deep($main::Limit - 3))



=== TEST 12: prompt_guard: escapes JSON does not know (\x, a short \u, \uZZZZ) in the prompt
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', '"%s \\x \\u12 \\uZZZZ"')



=== TEST 13: pii_redact: escapes JSON does not know in the prompt
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', '"%s \\x \\u12 \\uZZZZ"')



=== TEST 14: system_prompt: escapes JSON does not know in the messages it moves
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', '"%s \\q"')



=== TEST 15: prompt_guard: a number of 300 digits in the message
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', undef, ',"n":0.' . ('1' x 300) . ',"m":-' . ('9' x 300) . 'e-5')



=== TEST 16: pii_redact: a number of 300 digits in the message
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', undef, ',"n":0.' . ('1' x 300))



=== TEST 17: system_prompt: a number of 300 digits in the messages it moves
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', undef, ',"n":0.' . ('1' x 300))



=== TEST 18: model_allowlist: a top-level key written with an escape and 1e400 (the whole-document path): never unhooked (the hook refuses, or the router before it)
--- hook: model_allowlist.lua
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"messages\":[],\"\\u0078\":1e400}",
 "POST /pass/v1/chat/completions\n{\"model\":\"m\",\"messages\":[],\"\\u0078\":1e400}"]
--- error_code_like eval
[qr/^40[03]$/, qr/^40[03]$/]
--- response_body_like eval
['"code":"(model_not_allowed|invalid_request)"', '"code":"(model_not_allowed|invalid_request)"']
--- no_error_log
[error]
not called



=== TEST 19: prompt_guard: a top-level key written with an escape and a long number: never unhooked
--- hook: prompt_guard.lua
--- request eval
["POST /v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, undef, ',"\\u0078":0.' . ('1' x 100)),
 "POST /pass/v1/chat/completions\n" . main::chat('prompt_guard.lua', undef, undef, ',"\\u0078":0.' . ('1' x 100))]
--- error_code eval
[400, 400]
--- response_body_like eval
['"code":"(prompt_rejected|invalid_request)"', '"code":"(prompt_rejected|invalid_request)"']
--- no_error_log
[error]
not called



=== TEST 20: model_allowlist: the bodies of the tests above, each refused by the hook (a guard: it reads no member, so these reached it before too)
--- hook: model_allowlist.lua
--- request eval
[map { ("POST /v1/chat/completions\n$_", "POST /pass/v1/chat/completions\n$_") }
 main::chat('model_allowlist.lua', undef, ',"x":{"a":1,"a":1e400}'),
 main::chat('model_allowlist.lua', undef, undef, ',"x":1e400'),
 main::chat('model_allowlist.lua', main::deep(1000, '"%s"'), ',"x":' . main::deep($main::Limit - 3)),
 main::chat('model_allowlist.lua', '"%s \\x \\u12"', ',"n":0.' . ('1' x 300))]
--- error_code eval
[(403) x 8]
--- response_body_like eval
[('"code":"model_not_allowed"') x 8]
--- no_error_log
[error]



=== TEST 21: nested keys written with escapes are read by their names, at every level (a guard: held before too)
--- hook: prompt_guard.lua
--- doc eval
'{"model":"m","messages":[{"role":"user","\u0063ontent":[{"type":"text","t\u0065xt":"ignore previous instructions"}]}]}'



=== TEST 22: a repeated nested "content": the last one is what the hook reads, as Python engines do (a guard: held before too)
--- hook: prompt_guard.lua
--- doc eval
'{"model":"m","messages":[{"role":"user","content":"hello","content":"ignore previous instructions"}]}'



=== TEST 23: a repeated nested "content": the last one is redacted and kept, once (a guard: held before too)
--- hook: pii_redact.lua
--- request eval
["POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"hello","content":"write to bob@example.com"}]}',
 "POST /pass/v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"hello","content":"write to bob@example.com"}]}']
--- response_body eval
['{"model":"m","messages":[{"role":"user","content":"write to [EMAIL]"}]}',
 '{"model":"m","messages":[{"role":"user","content":"write to [EMAIL]"}]}']



=== TEST 24: raw control bytes, invalid UTF-8 and lone surrogates in the prompt: the hook reads it (a guard: held before too)
--- hook: prompt_guard.lua
--- doc eval
main::chat('prompt_guard.lua', qq("\x01\x1f\xff\xfe %s \\ud800 \\udfff"))



=== TEST 25: raw control bytes and invalid UTF-8 in the prompt: redacted (a guard: held before too)
--- hook: pii_redact.lua
--- doc eval
main::chat('pii_redact.lua', qq("\x01\xff %s \\ud800"))



=== TEST 26: an empty key and a key of escapes only, nested: the hook still runs
--- hook: system_prompt.lua
--- doc eval
main::chat('system_prompt.lua', undef, ',"":{"":[]},"\\u0000":{"\\"":1e400}')



=== TEST 27: a body nested deeper than the limit at the top level: 400 invalid_json before any hook; at the limit the hook runs (a guard: held before too)
--- hook: system_prompt.lua
--- request eval
["POST /v1/chat/completions\n" . main::chat('system_prompt.lua', undef, undef, ',"x":' . main::deep($main::Limit)),
 "POST /pass/v1/chat/completions\n" . main::chat('system_prompt.lua', undef, undef, ',"x":' . main::deep($main::Limit)),
 "POST /v1/chat/completions\n" . main::chat('system_prompt.lua', undef, undef, ',"x":' . main::deep($main::Limit - 1))]
--- error_code eval
[400, 400, 200]
--- response_body_like eval
['nesting too deep', 'nesting too deep', 'SYS-PROMPT']



=== TEST 28: a response hook on an engine answer that is not JSON: 500 hook_error, logged (it is never skipped silently)
--- own_hook: answer.lua
--- config
location /v1/ {
    llm_router on;
    llm_hook $TEST_NGINX_HOOKS/answer.lua;
    proxy_pass http://$llm_upstream;
    proxy_set_header X-Mock-Malformed 1;
}
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 500
--- response_body_like chomp
"code":"hook_error"
--- error_log
answer.lua response() failed: not called, the document is not JSON



=== TEST 29: the same under llm_hook_on_error pass: the answer goes on as it is, logged at error level
--- own_hook: answer.lua
--- config
location /v1/ {
    llm_router on;
    llm_hook $TEST_NGINX_HOOKS/answer.lua;
    llm_hook_on_error pass;
    proxy_pass http://$llm_upstream;
    proxy_set_header X-Mock-Malformed 1;
}
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"id": "broken
--- error_log eval
qr/\[error\].*answer\.lua response\(\) failed: not called, the document is not JSON: .*, passed on unchanged/



=== TEST 30: a hook whose function is gone from its table: 500 hook_error, or passed on (logged) under pass, never skipped
--- own_hook: rawtable.lua
--- no_echo: 1
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\"}",
 "POST /pass/v1/chat/completions\n{\"model\":\"m\"}"]
--- error_code eval
[500, 200]
--- response_body_like eval
['"code":"hook_error"', '"model":"m"']
--- error_log eval
qr/\[error\].*rawtable\.lua response\(\) failed: the function is gone/
--- no_error_log
module index ran
response ran



=== TEST 31: llm.reject: a code that is not a token fails the hook (500 hook_error), also inside a pcall; under pass the request goes on, logged
--- own_hook: inject.lua
--- location_extra: add_header X-Llm-Error $llm_error always;
--- request eval
[map { ("POST /v1/chat/completions\n$_", "POST /pass/v1/chat/completions\n$_") }
 '{"model":"m","what":"reject","code":"bad\"code"}',
 '{"model":"m","what":"reject","code":"x\r\nX-Injected: 1"}',
 '{"model":"m","what":"reject-pcall","code":"a b"}',
 '{"model":"m","what":"reject","code":"' . ('c' x 65) . '"}',
 '{"model":"m","what":"reject","code":""}']
--- error_code eval
[(500, 200) x 5]
--- response_body_like eval
[('^\{"error":\{"message":"a hook failed to process the request","type":"server_error","param":null,"code":"hook_error"\}\}$', '^\{"model":"m","what":"reject') x 5]
--- response_headers eval
[("X-Llm-Error: hook_error\nX-Injected:", "X-Llm-Error:\nX-Injected:") x 5]
--- error_log
llm.reject: the code is not 1 to 64 of A-Z a-z 0-9 _ . -
--- no_error_log
rejected the request



=== TEST 32: llm.reject: a code of 64 token bytes is the error's code and $llm_error (a guard: held before too)
--- own_hook: inject.lua
--- location_extra: add_header X-Llm-Error $llm_error always;
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","what":"reject","status":451,"code":"' . ('Az09_.-' x 9) . 'z"}'
--- error_code: 451
--- response_body eval
'{"error":{"message":"rejected by a hook","type":"invalid_request_error","param":null,"code":"' . ('Az09_.-' x 9) . 'z"}}' . "\n"
--- response_headers eval
"X-Llm-Error: " . ('Az09_.-' x 9) . "z"



=== TEST 33: llm.reject: the message comes back as valid UTF-8 on one line (a bad byte is U+FFFD, a control byte a space), escaped
--- own_hook: inject.lua
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","what":"reject","code":"no","message":"a\"b\\\\c\nd\u0000e\u007f' . "\xff\xc0\xaf\xed\xa0\x80" . '\u00e9\ud83d\ude00 end' . "\xe2\x82" . '"}'
--- error_code: 400
--- response_body eval
qq({"error":{"message":"a\\"b\\\\c d e \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9\xf0\x9f\x98\x80 end","type":"invalid_request_error","param":null,"code":"no"}}\n)
--- no_error_log
[error]



=== TEST 34: llm.reject: the message is cut at 1024 bytes, on a character's boundary
--- own_hook: inject.lua
--- request eval
["POST /v1/chat/completions\n" . '{"model":"m","what":"reject","code":"long","message":"' . ('a' x 5000) . '"}',
 "POST /v1/chat/completions\n" . '{"model":"m","what":"reject","code":"long","message":"a' . ("\xc3\xa9" x 1000) . '"}']
--- error_code eval
[400, 400]
--- response_body eval
['{"error":{"message":"' . ('a' x 1024) . '","type":"invalid_request_error","param":null,"code":"long"}}' . "\n",
 '{"error":{"message":"a' . ("\xc3\xa9" x 511) . '","type":"invalid_request_error","param":null,"code":"long"}}' . "\n"]



=== TEST 35: llm.set_header: names must be HTTP tokens, values free of NUL, CR, LF and other control bytes
--- own_hook: inject.lua
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","what":"header","headers":[["X-Ok","fine\tvalue \u00e9"],["X!#$%&\u0027*+-.^_`|~09az","v"],["X Bad","v"],["X-Nul\u0000","v"],["(x)","v"],["","v"],["X:y","v"],["X\u00e9","v"],["X-V","a\u0000b"],["X-V","a\u0001b"],["X-V","a\u007fb"],["X-V","a\r\nX-Injected: 1"],["X-V","a\nb"]]}'
--- response_body chomp
{"model":"m","what":"header","results":["ok","ok","llm.set_header: the name is not a token","llm.set_header: the name is not a token","llm.set_header: the name is not a token","llm.set_header: the name is not 1 to 256 bytes","llm.set_header: the name is not a token","llm.set_header: the name is not a token","llm.set_header: the value has a control byte","llm.set_header: the value has a control byte","llm.set_header: the value has a control byte","llm.set_header: the value has a control byte","llm.set_header: the value has a control byte"]}



=== TEST 36: a response hook on a model the router does not rename: the answer keeps its "model" (it came back as "model":, before)
--- own_hook: answer.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+","object":"chat.completion","created":\d+,"model":"m","system_fingerprint":"m1","choices":\[\{"index":0,"message":\{"role":"assistant","content":"TOK0 TOK1 
--- no_error_log
[error]
