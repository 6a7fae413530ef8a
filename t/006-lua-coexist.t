# Our Lua 5.4 and Debian's LuaJIT-based lua module in one nginx.  The
# router opens liblua5.4.so.0 privately at configuration time and runs a
# chunk there; a symbol clash would crash or fail that check.  With a hook,
# its llm.set_header() shows in what the backend answers.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use LLMTest;

no_shuffle();

our $lua_mods = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
    . "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n";
our $ours = "load_module $ENV{TEST_NGINX_LLM_MODULE};\n";

add_block_preprocessor(sub {
    my $block = shift;
    my $hook = $block->with_hook
        ? "hook $FindBin::Bin/hooks/ctx.lua;" : '';
    $block->set_value("http_config", <<"_EOC_");
upstream pool_a { server 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; }
llm_model llama3-8b { upstream pool_a; $hook }
server { listen 127.0.0.1:$ENV{TEST_NGINX_BACKEND_PORT}; location / { return 200 "A\$http_x_from_hook\\n"; } }
_EOC_
    $block->set_value("config", <<'_EOC_');
location /v1/ { llm_router on; proxy_pass http://$llm_upstream; }
location = /lua { content_by_lua_block { ngx.say(_VERSION, " ", type(jit)) } }
_EOC_
    $block->set_value("request", [
        "GET /lua",
        "POST /v1/chat/completions\n{\"model\":\"llama3-8b\"}",
    ]);
    $block->set_value("response_body", ["Lua 5.1 table\n",
        $block->with_hook ? "Ayes\n" : "A\n"]);
});

run_tests();

__DATA__

=== TEST 1: the lua module loaded before ours
--- main_config eval
$::lua_mods . $::ours
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 2: the lua module loaded after ours
--- main_config eval
$::ours . $::lua_mods
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 3: both loaded, a Lua 5.4 hook of ours runs next to LuaJIT code
--- with_hook: 1
--- main_config eval
$::lua_mods . $::ours
--- no_error_log
[error]
[alert]
[emerg]
