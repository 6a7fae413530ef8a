#!/usr/bin/env bash
#
# ngx_llm_router: build, demo, tests and benchmark.
#
#   ./build.sh          build build/ngx_http_llm_router_module.so
#   ./build.sh run      build, start mock engines and nginx on conf/demo.conf
#   ./build.sh test     build and run the whole test suite
#   ./build.sh bench    build and run the benchmark (bench/run.sh)
#   ./build.sh cost     build and count instructions per request (bench/cost.sh)
#
# The module is built against Debian's nginx-dev tree with exactly the flags
# of the installed nginx (--with-compat), or against NGINX_SRC=/path/to/nginx
# (then NGINX_CONF_FLAGS may give extra configure flags).  Missing Debian
# packages are installed with apt-get when run as root.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$ROOT/build
MODULE=$BUILD/ngx_http_llm_router_module.so
CC_OPT=${LLM_CC_OPT:--O2 -g -Wall -Wextra -Wno-unused-parameter -Werror}
export PATH=$PATH:/usr/sbin:/sbin

say() { printf '%s\n' "build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# install the Debian packages that are missing
need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}; run as root or:" \
            "sudo apt-get install ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_deps=(gcc make nginx-core nginx-dev libcjson-dev liblua5.4-dev
            libpcre2-dev libssl-dev zlib1g-dev)
test_deps=(perl libtest-base-perl libtext-diff-perl libwww-perl python3
           curl libnginx-mod-http-lua)

build_module() {
    local src flags stamp
    need_packages "${build_deps[@]}"

    if [ -n "${NGINX_SRC:-}" ]; then
        src=$NGINX_SRC
        # a release tarball has ./configure, a git checkout auto/configure
        [ -x "$src/configure" ] || [ -x "$src/auto/configure" ] ||
            die "NGINX_SRC=$src has no configure"
        read -r -a flags <<< "--with-compat ${NGINX_CONF_FLAGS:-}"
    else
        [ -f /usr/share/nginx/src/conf_flags ] ||
            die "no /usr/share/nginx/src (install nginx-dev)"
        # shellcheck disable=SC1091
        . /usr/share/nginx/src/conf_flags
        flags=("${NGX_CONF_FLAGS[@]}")
        src=$BUILD/nginx-src
        if [ ! -x "$src/configure" ] ||
           [ /usr/share/nginx/src/conf_flags -nt "$src/configure" ]; then
            rm -rf "$src"
            mkdir -p "$BUILD"
            cp -a /usr/share/nginx/src "$src"
        fi
    fi

    stamp="$src/objs/.llm-configured"
    local want="${flags[*]} $CC_OPT $ROOT"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] ||
       [ "$ROOT/config" -nt "$stamp" ]; then
        say "configuring nginx in $src"
        local configure=./configure
        [ -x "$src/configure" ] || configure=auto/configure
        (cd "$src" && $configure "${flags[@]}" --with-cc-opt="$CC_OPT" \
            --add-dynamic-module="$ROOT" > "$BUILD/configure.log" 2>&1) || {
            tail -n 20 "$BUILD/configure.log" >&2
            die "configure failed (see $BUILD/configure.log)"
        }
        echo "$want" > "$stamp"
    fi

    (cd "$src" && make -s -f objs/Makefile modules) ||
        die "compilation failed"
    mkdir -p "$BUILD"
    # a new file, renamed into place: a running nginx keeps its mapping
    cp "$src/objs/ngx_http_llm_router_module.so" "$MODULE.tmp.$$"
    mv -f "$MODULE.tmp.$$" "$MODULE"
    say "built $MODULE"
}

# t/unit/NAME_test.c tests ngx_llm_router_module/ngx_http_llm_NAME.c alone
run_unit_tests() {
    local t name bin
    mkdir -p "$BUILD/unit"
    for t in "$ROOT"/t/unit/*_test.c; do
        [ -e "$t" ] || continue
        name=$(basename "$t" _test.c)
        bin=$BUILD/unit/${name}_test
        gcc -std=gnu99 -O1 -g -Wall -Wextra -Werror \
            -fsanitize=address,undefined -fno-sanitize-recover=all \
            -I "$ROOT/ngx_llm_router_module" -o "$bin" "$t" \
            "$ROOT/ngx_llm_router_module/ngx_http_llm_$name.c" -lm ||
            die "cannot build unit test $t"
        "$bin" || die "unit test $name failed"
    done
}

# static analysis of the module: cppcheck and gcc -fanalyzer, zero findings;
# a false positive is suppressed inline, with its reason, never here
run_lint() {
    local src flags incs log
    need_packages cppcheck
    src=${NGINX_SRC:-$BUILD/nginx-src}
    log=$BUILD/lint.log
    [ -f "$src/objs/Makefile" ] || die "no $src/objs/Makefile (build first)"

    # the flags and include paths of the module's own compilation
    flags=$(make -s --no-print-directory -C "$src" -f objs/Makefile \
            --eval='llm-cflags: ; @echo $(CFLAGS)' llm-cflags)
    incs=$(make -s --no-print-directory -C "$src" -f objs/Makefile \
           --eval='llm-incs: ; @echo $(ALL_INCS)' llm-incs)

    say "lint: cppcheck"
    # one configuration (the -D below), that of this build; luaconf.h
    # needs LLONG_MAX, which cppcheck does not take from <limits.h>
    # shellcheck disable=SC2086
    (cd "$src" && cppcheck --enable=warning,performance,portability \
        --inline-suppr --error-exitcode=1 --quiet -j "$(nproc)" --std=c99 \
        --library=posix -D__linux__ -D__GNUC__ -D__x86_64__ \
        -DLLONG_MAX=9223372036854775807LL -DLLONG_MIN='(-LLONG_MAX-1)' \
        $incs "$ROOT"/ngx_llm_router_module/*.c) > "$log" 2>&1 || {
        cat "$log" >&2
        die "cppcheck found problems (see $log)"
    }

    say "lint: gcc -fanalyzer"
    # shellcheck disable=SC2086
    (cd "$src" && printf '%s\0' "$ROOT"/ngx_llm_router_module/*.c |
        xargs -0 -n 1 -P "$(nproc)" gcc -c -fPIC $flags $incs \
            -fanalyzer -Werror -o /dev/null) > "$log" 2>&1 || {
        cat "$log" >&2
        die "gcc -fanalyzer found problems (see $log)"
    }
    say "lint: clean"
}

run_tests() {
    local status=0
    need_packages "${test_deps[@]}"
    cd "$ROOT"

    run_lint
    say "unit tests"
    run_unit_tests
    export TEST_NGINX_BINARY=${TEST_NGINX_BINARY:-$(command -v nginx)}
    export TEST_NGINX_LLM_MODULE=$MODULE

    say "mock engine self-check"
    bash mock/test_mock_engine.sh >"$BUILD/mock-selfcheck.log" 2>&1 || {
        cat "$BUILD/mock-selfcheck.log" >&2
        die "mock engine self-check failed"
    }

    # the real Test::Nginx when installed, else our runner in t/compat
    say "Test::Nginx suites"
    t/compat/prove-nginx -r t || status=$?
    return $status
}

run_demo() {
    need_packages python3 curl
    exec bash "$ROOT/conf/demo.sh" "$MODULE"
}

case "${1:-build}" in
    build) build_module ;;
    run|demo) build_module; run_demo ;;
    test) build_module; run_tests ;;
    lint) build_module; run_lint ;;
    bench) build_module
           need_packages wrk python3 libnginx-mod-http-lua lua-cjson
           exec bash "$ROOT/bench/run.sh" "$MODULE" ;;
    cost) build_module; need_packages valgrind python3
          exec bash "$ROOT/bench/cost.sh" "$MODULE" ;;
    *) die "usage: ./build.sh [build|run|test|bench|cost]" ;;
esac
