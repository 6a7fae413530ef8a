# Lua 5.4 hooks on the request: changes reach the engine (the mock echoes
# the body it got), an untouched body goes on byte for byte, reject, route,
# set_header, errors, limits and the sandbox.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

$ENV{TEST_NGINX_HOOKS} = "$FindBin::Bin/hooks";

start_mock("127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}=m1",
           "127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}=m2");

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    my $mhook = $block->model_hook ? "hook $ENV{TEST_NGINX_HOOKS}/" . $block->model_hook . ";" : '';
    my $lhook = $block->location_hook ? "llm_hook $ENV{TEST_NGINX_HOOKS}/" . $block->location_hook . ";" : '';
    my $extra = $block->location_extra // '';
    my $echo = $block->no_echo ? '' : 'proxy_set_header X-Mock-Echo 1;';
    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
upstream pool { server 127.0.0.1:$ENV{TEST_NGINX_MOCK1_PORT}; }
upstream pool2 { server 127.0.0.1:$ENV{TEST_NGINX_MOCK2_PORT}; }
llm_model m { upstream pool; target engine-m; $mhook }
llm_model other { upstream pool2; target engine-other; }
_EOC_
    }
    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
location /v1/ {
    llm_router on;
    proxy_pass http://\$llm_upstream;
    $echo
    $lhook
    $extra
}
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: a model's request hook changes the body the engine gets
--- model_hook: sysprompt.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- response_body chomp
{"model":"engine-m","messages":[{"content":"Be brief.","role":"system"},{"role":"user","content":"hi"}]}
--- response_headers
X-Mock-Req-Content-Length: 104



=== TEST 2: a hook that changes nothing: the original bytes, spacing and all
--- model_hook: noop.lua
--- request
POST /v1/chat/completions
{ "messages" : [ {"role":"user","content":"hi"} ],  "model":"m", "n": 1.50 }
--- response_body chomp
{ "messages" : [ {"role":"user","content":"hi"} ],  "model":"engine-m", "n": 1.50 }



=== TEST 3: a hook that adds a field: the members it did not touch keep their bytes
--- model_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","z":[],"a":{},"n":null,"big":12345678901234567,"huge":123456789012345678901234567890,"neg":-9223372036854775808,"f":0.1,"e":1e300,"two":2.0,"s":"\u00e9\ud83d\ude00\n\"/","arr":[1,[2,{}],null,true,false]}
--- response_body chomp
{"model":"engine-m","z":[],"a":{},"n":null,"big":12345678901234567,"huge":123456789012345678901234567890,"neg":-9223372036854775808,"f":0.1,"e":1e300,"two":2.0,"s":"\u00e9\ud83d\ude00\n\"/","arr":[1,[2,{}],null,true,false],"hooked":true}



=== TEST 4: ctx: model, target, upstream, engine, stream, headers, var(); set_header reaches the engine
--- model_hook: ctx.lua
--- more_headers
X-Test: hello
--- request
POST /v1/chat/completions
{"model":"m","stream":false}
--- response_body chomp
{"model":"engine-m","stream":false,"seen":{"engine":"","header":"hello","missing":true,"model":"m","stream":false,"target":"engine-m","upstream":"pool","var":"POST"}}
--- response_headers
X-Mock-Method: POST



=== TEST 5: llm.reject answers with the hook's status and code
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"forbidden"}]}
--- error_code: 403
--- response_body
{"error":{"message":"that is not allowed","type":"invalid_request_error","param":null,"code":"policy_violation"}}
--- error_log
rejected the request: 403 policy_violation



=== TEST 6: a pcall cannot catch llm.reject
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"pcall-reject"}]}
--- error_code: 451
--- response_body_like chomp
"code":"still_rejected"



=== TEST 7: llm.route sends the request to another model, under its target
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"route"}]}
--- response_body chomp
{"model":"engine-other","messages":[{"role":"user","content":"route"}]}
--- response_headers
X-Mock-Instance: m2
--- error_log
llm hook: model "m" routed to "other"



=== TEST 8: a returned table replaces the body
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"replace"}]}
--- response_body chomp
{"model":"engine-m","replaced":true}



=== TEST 9: a runtime error: 500 hook_error and a log line with file and line
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"error"}]}
--- error_code: 500
--- response_body
{"error":{"message":"a hook failed to process the request","type":"server_error","param":null,"code":"hook_error"}}
--- error_log eval
qr/llm hook: \S+guard\.lua request\(\) failed: \S+guard\.lua:\d+: boom/



=== TEST 10: a malformed return value is a hook error
--- model_hook: guard.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"bad-return"}]}
--- error_code: 500
--- error_log
it returned neither a table, nil nor false



=== TEST 11: llm_hook_on_error pass: the request goes on unchanged
--- model_hook: guard.lua
--- location_extra: llm_hook_on_error pass;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"error"}]}
--- response_body chomp
{"model":"engine-m","messages":[{"role":"user","content":"error"}]}
--- error_log
failed: 



=== TEST 12: the location's hook runs after the model's; keys of new objects come sorted
--- model_hook: sysprompt.lua
--- location_hook: touch.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- response_body chomp
{"model":"engine-m","messages":[{"content":"Be brief.","role":"system"}],"hooked":true}



=== TEST 13: an endless loop stops at the instruction limit
--- model_hook: limits.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"content":"loop"}]}
--- error_code: 500
--- error_log
request() failed: instruction limit



=== TEST 14: an endless loop inside pcall stops too
--- model_hook: limits.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"content":"pcall-loop"}]}
--- error_code: 500
--- error_log
request() failed: instruction limit



=== TEST 15: a memory bomb stops at the memory limit
--- model_hook: limits.lua
--- location_extra: llm_hook_limits instructions=100000000 time=5s memory=1m;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"content":"memory"}]}
--- error_code: 500
--- error_log
request() failed: memory limit



=== TEST 16: a memory bomb inside pcall stops too
--- model_hook: limits.lua
--- location_extra: llm_hook_limits instructions=100000000 time=5s memory=1m;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"content":"pcall-memory"}]}
--- error_code: 500
--- error_log
request() failed: memory limit



=== TEST 17: a long computation stops at the time limit
--- model_hook: limits.lua
--- location_extra: llm_hook_limits instructions=1000000000000 time=20ms;
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"content":"sleep"}]}
--- error_code: 500
--- error_log
request() failed: time limit



=== TEST 18: the sandbox: io, os, require, dofile, loadfile, bytecode, string.dump, debug, the string metatable, package, collectgarbage all fail; text load works
--- model_hook: escape.lua
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body_like chomp
"results":\{
--- response_body_unlike chomp
"(?!load_text)\w+":"ok"



=== TEST 19: the sandbox, value by value
--- model_hook: escape.lua
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body_like eval
qr/"results":\{"arraymeta":"blocked","bytecode":"blocked","collect":"blocked","ctxmeta":"blocked","debug":"blocked","docmeta":"blocked","dofile":"blocked","dump":"blocked","globals":"blocked","io":"blocked","load_text":"ok","loadfile":"blocked","os":"blocked","package":"blocked","require":"blocked","strmeta":"blocked"\}/



=== TEST 20: a syntax error fails nginx -t with the file and line
--- model_hook: syntax.lua
--- request
GET /
--- must_die
--- error_log eval
qr/llm hook: \S+syntax\.lua:3: unexpected symbol near 'then'/



=== TEST 21: a hook file must return a table of functions
--- model_hook: notable.lua
--- request
GET /
--- must_die
--- error_log
does not return a table



=== TEST 22: a missing hook file fails nginx -t
--- model_hook: nowhere.lua
--- request
GET /
--- must_die
--- error_log
cannot open hook



=== TEST 23: a response hook changes the answer; the model is restored first; Content-Length fits
--- model_hook: answer.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":3}
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+","object":"chat.completion","created":\d+,"model":"m","system_fingerprint":"m1","choices":\[\{"index":0,"message":\{"role":"assistant","content":"TOK0 TOK1 TOK2 "\},"finish_reason":"length"\}\],"usage":\{"prompt_tokens":0,"completion_tokens":3,"total_tokens":3\},"hooked":"m"\}$
--- response_headers_like
Content-Length: \d+



=== TEST 24: a response hook that rejects: its status and code
--- model_hook: answer.lua
--- no_echo: 1
--- more_headers
X-Reject: 1
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":3}
--- error_code: 502
--- response_body
{"error":{"message":"the answer broke policy","type":"server_error","param":null,"code":"answer_rejected"}}



=== TEST 25: chunk hooks: events changed and dropped, the model restored, [DONE] kept
--- model_hook: answer.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"max_tokens":3}
--- response_body_like eval
qr/^data: \{[^\n]*"model":"m"[^\n]*"role":"assistant"[^\n]*\n\ndata: \{[^\n]*"model":"m"[^\n]*"content":"TOK0 "[^\n]*\n\ndata: \{[^\n]*"content":"TOK2 "[^\n]*\n\ndata: \{[^\n]*"finish_reason":"length"[^\n]*\n\ndata: \[DONE\]\n\n$/



=== TEST 26: a chunk hook that fails ends the stream with an error event and [DONE]
--- model_hook: answer.lua
--- no_echo: 1
--- more_headers
X-Fail: 1
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"max_tokens":3}
--- response_body_like eval
qr/^data: [^\n]*"role"[^\n]*\n\ndata: [^\n]*"TOK0 "[^\n]*\n\ndata: \{"error":\{"message":"a hook failed to process the request","type":"server_error","param":null,"code":"hook_error"\}\}\n\ndata: \[DONE\]\n\n$/
--- error_log eval
qr/chunk\(\) failed: \S+answer\.lua:\d+: chunk boom/



=== TEST 27: llm.json_encode and json_decode against a reference, every special byte at every offset; bad JSON refused
--- model_hook: jsonfuzz.lua
--- location_extra: llm_hook_limits time=20s;
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"model":"engine-m","fuzz":"ok 3300"}



=== TEST 28: each hook file has its own environment: globals and library changes stay in it
--- model_hook: env_a.lua
--- location_hook: env_b.lua
--- request
POST /v1/chat/completions
{"model":"m"}
--- response_body chomp
{"model":"engine-m","a_sees":"from a","b_sees":"nil","b_stream":false,"b_upper":"X"}



=== TEST 29: a request hook on a streamed request: the engine gets the change, the client the stream
--- model_hook: sysprompt.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"hi"}]}
--- response_body_like eval
qr/^(data: \{[^\n]*"model":"m"[^\n]*\n\n){4}data: \[DONE\]\n\n$/



=== TEST 30: the same with the mock's echo: the body sent has the system message and stream true
--- model_hook: sysprompt.lua
--- location_hook: env_b.lua
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[]}
--- response_body chomp
{"model":"engine-m","stream":true,"messages":[{"content":"Be brief.","role":"system"}],"b_sees":"nil","b_stream":true,"b_upper":"X"}



=== TEST 31: round trip through llm.json_encode and json_decode: order, empty arrays and objects, null, big integers, floats, unicode
--- model_hook: touchall.lua
--- request
POST /v1/chat/completions
{"model":"m","z":[],"a":{},"n":null,"big":12345678901234567,"huge":123456789012345678901234567890,"neg":-9223372036854775808,"f":0.1,"e":1e300,"two":2.0,"s":"\u00e9\ud83d\ude00\n\"/","arr":[1,[2,{}],null,true,false], "sp" : [ 1 , 2 ]}
--- response_body chomp
{"model":"engine-m","z":[],"a":{},"n":null,"big":12345678901234567,"huge":123456789012345678901234567890,"neg":-9223372036854775808,"f":0.1,"e":1e+300,"two":2.0,"s":"é😀\n\"/","arr":[1,[2,{}],null,true,false],"sp":[1,2],"hooked":true}



=== TEST 32: members read but equal keep their bytes, changed ones are encoded, removed ones go
--- model_hook: lazy.lua
--- request
POST /v1/chat/completions
{"model":"m","drop_me":1,"messages":[{"role":"user","content":"x"}],"temperature": 0.50,"extra" : true}
--- response_body chomp
{"model":"engine-m","messages":[{"role":"user","content":"changed"}],"temperature": 0.50,"extra" : true,"count":4}



=== TEST 33: string members: left, changed in place, assigned back, escaped: only the change is encoded
--- model_hook: strings.lua
--- request
POST /v1/chat/completions
{"model":"m","same":"keep me","swap":"wxyz","again":"x y","esc":"\u0041"}
--- response_body chomp
{"model":"engine-m","same":"keep me","swap":"abcd","again":"x y","esc":"\u0041","seen":"keep me/A"}



=== TEST 34: after the router's edits (target, clamp, drop, set) the hook sees the body as edited
The hook gets the members of the edited body without scanning it again:
a replaced value, a dropped member, members added at the end, and the
others moved.
--- http_config
upstream pool { llm_engine vllm; server 127.0.0.1:$TEST_NGINX_MOCK1_PORT; }
llm_model m {
    upstream pool;
    target   engine-m;
    clamp    max_tokens 100;
    drop     seed logit_bias;
    set      temperature 0.7;
    set      top_p 1;
    stream_usage on;
    hook     $TEST_NGINX_HOOKS/members.lua;
}
--- request eval
["POST /v1/chat/completions\n{\"seed\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"m\",\"max_tokens\":500,\"logit_bias\":{},\"top_p\":0.5,\"user\":\"u\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"seed\":1,\"stream\":false,\"n\":2}",
 "POST /v1/chat/completions\n{\"logit_bias\":{\"1\":2},\"model\":\"m\"}"]
--- response_body eval
["{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"engine-m\",\"max_tokens\":100,\"top_p\":0.5,\"user\":\"u\",\"temperature\":0.7,\"seen\":\"max_tokens=100,messages=table,model=engine-m,temperature=0.7,top_p=0.5,user=u\"}",
 "{\"model\":\"engine-m\",\"stream\":false,\"n\":2,\"temperature\":0.7,\"top_p\":1,\"seen\":\"model=engine-m,n=2,stream=false,temperature=0.7,top_p=1\"}",
 "{\"model\":\"engine-m\",\"temperature\":0.7,\"top_p\":1,\"seen\":\"model=engine-m,temperature=0.7,top_p=1\"}"]
--- no_error_log
[error]



=== TEST 35: an engine answer that is not JSON fails the response hook that cannot read it: 500 hook_error, logged
--- model_hook: answer.lua
--- no_echo: 1
--- more_headers
X-Mock-Malformed: 1
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 500
--- response_body_like chomp
"code":"hook_error"
--- error_log
response() failed: not called, the document is not JSON



=== TEST 36: a document kept for a later call: what its call read stays, the rest is refused, its metatable is protected
--- model_hook: keep.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"first"}]}
--- response_body_like chomp
^\{"id":"chatcmpl-m1-\d+","object":"chat.completion",.*"model":"m",
--- error_log eval
[qr/kept model engine-m/,
 qr/read: .*a document can be read only during the call it was given to/,
 qr/encode: a document can be read only during the call it was given to/,
 qr/pairs: .*a document can be read only during the call it was given to/,
 qr/metatable: false/,
 qr/setmetatable: cannot change a protected metatable/,
 qr/resp object chat.completion/]



=== TEST 37: a hook that returns many values: the first counts (nil: the document as the hook left it)
--- model_hook: many.lua
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- response_body chomp
{"model":"engine-m","messages":[],"many":1}
--- no_error_log
[error]
[alert]



=== TEST 38: the thread that loaded a hook is out of its reach: it can neither close nor resume it
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"main"}
--- response_body chomp
{"model":"engine-m","what":"survived"}
--- error_log eval
[qr/close main: false .*cannot close a normal coroutine/,
 qr/resume main: false cannot resume non-suspended coroutine/,
 qr/status main: normal/]
--- no_error_log
[alert]
[crit]



=== TEST 39: a hook's coroutine kept from an aborted call is dead to the next call
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"keep-loop\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"resume-kept\"}"]
--- error_code eval
[500, 200]
--- response_body_like eval
["\"code\":\"hook_error\"",
 "^\\{\"model\":\"engine-m\",\"what\":\"resumed\",\"resume\":\"false cannot resume (dead|non-suspended) coroutine\"\\}\$"]
--- timeout: 10



=== TEST 40: a coroutine a hook made and kept runs under the limits of every call that resumes it
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"nested-loop\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"resume-kept\"}"]
--- error_code eval
[500, 500]
--- response_body_like eval
["\"code\":\"hook_error\"", "\"code\":\"hook_error\""]
--- timeout: 10



=== TEST 41: setmetatable refuses a __gc metamethod (a finalizer runs beyond every limit); the rest works as in Lua
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"gc"}
--- response_body chomp
{"model":"engine-m","what":"no finalizer"}
--- error_log eval
[qr/gc: false .*__gc metamethods are not allowed in hooks/,
 qr/index: true table: /, qr/none: true table: /,
 qr/bad: false .*nil or table expected/]



=== TEST 42: a member a hook nests deeper than the limit (1024 levels, the scanner's): 500 hook_error, logged, no crash
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"deep","n":1024}
--- error_code: 500
--- response_body_like chomp
"code":"hook_error"
--- error_log eval
qr/request\(\) failed: .*nested too deep/



=== TEST 43: a document nested up to the limit is decoded and encoded whole (the hook's own member too)
--- model_hook: threads.lua
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"deep\",\"n\":1023}",
"POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"return\",\"deep\":"
. ("[" x 1023) . ("]" x 1023) . "}"]
--- response_body eval
["{\"model\":\"engine-m\",\"what\":\"deep\",\"n\":1023,\"deep\":"
. ("[" x 1022) . "{}" . ("]" x 1022) . "}",
"{\"model\":\"engine-m\",\"what\":\"return\",\"deep\":"
. ("[" x 1023) . ("]" x 1023) . ",\"x\":1}"]



=== TEST 44: an endless pcall(tostring) loop whose __tostring never ends stops at the instruction limit
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","what":"pcall-tostring"}
--- error_code: 500
--- error_log
request() failed: instruction limit
--- timeout: 10



=== TEST 45: a coroutine stopped by an error inside __tostring is not closed: its endless __close never runs
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","what":"close-dead"}
--- error_code: 500
--- error_log
request() failed: instruction limit
--- timeout: 10



=== TEST 46: the same through coroutine.wrap
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","what":"wrap-dead"}
--- error_code: 500
--- error_log
request() failed: instruction limit
--- timeout: 10



=== TEST 47: a call stopped where it can yield is closed; an endless __close there is stopped too, and the next call works
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"yield-close\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"return\"}"]
--- error_code eval
[500, 200]
--- response_body_like eval
["\"code\":\"hook_error\"", "\"x\":1\\}\$"]
--- timeout: 10



=== TEST 48: the encoder reads a table's __name raw: the metatable's own metatable runs nothing
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"name"}
--- response_body chomp
{"model":"engine-m","what":"name","odd":[1]}
--- no_error_log
name index ran



=== TEST 49: the table a hook file returns is read raw: its __index runs neither at load nor when a function is gone (the hook then fails: never skipped silently)
--- model_hook: rawtable.lua
--- no_echo: 1
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 500
--- response_body_like chomp
"code":"hook_error"
--- error_log
response() failed: the function is gone from the table the file returned
--- no_error_log
module index ran
response ran



=== TEST 50: xpcall's handler runs after the error unwound: an endless handler of an abort stops at the limit
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request
POST /v1/chat/completions
{"model":"m","what":"xpcall-loop"}
--- error_code: 500
--- error_log
request() failed: instruction limit
--- timeout: 10



=== TEST 51: xpcall otherwise as in Lua: the handler's value is the error; results and arguments pass
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"xpcall"}
--- response_body chomp
{"model":"engine-m","what":"xpcall","xpcall":["false","handled: boom",2,"true",3,"two",3]}



=== TEST 52: the metatables of big numbers and decoded objects are protected; a forged "object" metatable is a plain table
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"metatables"}
--- response_body chomp
{"model":"engine-m","what":"metatables","metas":{"big":"123456789012345678901234","forged":"{}","number":"false","object":"false","order":"{\"b\":1,\"a\":2}","set":false}}



=== TEST 53: string.rep of an empty string is empty at once, whatever the count
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"rep"}
--- response_body chomp
{"model":"engine-m","what":"rep","rep":["","","ab,ab,ab",true]}
--- timeout: 10



=== TEST 54: a table of 2^40 shared leaves: encoding stops at the memory limit, in the hook and after it
--- model_hook: threads.lua
--- location_extra: llm_hook_limits memory=4m;
--- request
POST /v1/chat/completions
{"model":"m","what":"wide"}
--- error_code: 500
--- error_log eval
[qr/wide encode: false llm\.json_encode: out of memory/,
 qr/request\(\) failed: out of memory/]
--- timeout: 20



=== TEST 55: the decoder's buffer is given back when Lua runs out of memory after it (valgrind sees any leak)
--- model_hook: threads.lua
--- location_extra: llm_hook_limits memory=4m;
--- request
POST /v1/chat/completions
{"model":"m","what":"decode-at-cap"}
--- error_code: 500
--- error_log
request() failed: memory limit
--- timeout: 20



=== TEST 56: the whole state has a ceiling (state=): a hook that keeps 700 KB per call fails once the state would pass 2m
--- model_hook: threads.lua
--- location_extra: llm_hook_limits memory=2m state=2m;
--- request eval
[("POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"hoard\"}") x 2]
--- error_code eval
[200, 500]
--- response_body_like eval
["\"hoard\":1\\}", "\"code\":\"hook_error\""]



=== TEST 57: making a coroutine is charged a count of instructions: a loop of short ones stops after about budget / 2000 rounds
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=100000 time=5s;
--- request eval
["POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"many\"}",
 "POST /v1/chat/completions\n{\"model\":\"m\",\"what\":\"made\"}"]
--- error_code eval
[500, 200]
--- response_body_like eval
["\"code\":\"hook_error\"", "\"made\":([1-4]\\d|50|51)\\}"]



=== TEST 58: llm.array refuses a document or an object (their metatables are not the hooks'); arrays and plain tables it marks
--- model_hook: threads.lua
--- request
POST /v1/chat/completions
{"model":"m","what":"array-doc"}
--- response_body chomp
{"model":"engine-m","what":"array-doc","arr":[],"arr2":[1]}
--- error_log eval
[qr/array doc: false .*llm\.array: the table has a metatable/,
 qr/array object: false .*llm\.array: the table has a metatable/]



=== TEST 59: after an abort no function runs: 20000 pending __close that are table.sort (C, uncounted) are skipped
--- model_hook: threads.lua
--- location_extra: llm_hook_limits instructions=1000000 time=60s;
--- request
POST /v1/chat/completions
{"model":"m","what":"c-close"}
--- error_code: 500
--- error_log
request() failed: instruction limit
--- timeout: 10



=== TEST 60: coroutine.close inside __close inside coroutine.close… stops at 100 levels
--- model_hook: threads.lua
--- location_extra: llm_hook_limits time=10s;
--- request
POST /v1/chat/completions
{"model":"m","what":"close-chain"}
--- response_body chomp
{"model":"engine-m","what":"chained"}
--- error_log eval
qr/chain: true false .*coroutine\.close nested too deep/
