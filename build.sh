#!/usr/bin/env bash
#
# ngx_llm_router: build, demo, tests and benchmark.
#
#   ./build.sh          build build/ngx_http_llm_router_module.so
#   ./build.sh run      build, start mock engines and nginx on conf/demo.conf
#   ./build.sh test     build and run the whole test suite
#   ./build.sh bench    build and run the benchmark (bench/run.sh)
#   ./build.sh cost     build and count instructions per request (bench/cost.sh)
#   ./build.sh lint     build and run cppcheck and gcc -fanalyzer on the module
#   ./build.sh fuzz     build and run the libFuzzer targets (t/fuzz/)
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

# t/unit/NAME_test.c tests ngx_llm_router_module/ngx_http_llm_NAME.c alone,
# with the pure files named on its "/* unit-sources: ... */" line, if any
run_unit_tests() {
    local t name bin extra=() f libs=() cflags=()
    mkdir -p "$BUILD/unit"
    for t in "$ROOT"/t/unit/*_test.c; do
        [ -e "$t" ] || continue
        name=$(basename "$t" _test.c)
        bin=$BUILD/unit/${name}_test
        extra=()
        for f in $(sed -n 's|^/\* *unit-sources: *\(.*\)\*/.*|\1|p' "$t"); do
            extra+=("$ROOT/ngx_llm_router_module/$f")
        done
        # libraries, as the fuzz targets name them: /* unit-libs: -llua5.4 */
        libs=() cflags=()
        for f in $(sed -n 's|^/\* *unit-libs: *\(.*\)\*/.*|\1|p' "$t"); do
            libs+=("$f")
            [ "${f#-l}" != "$f" ] || continue
            cflags+=($(pkg-config --cflags "${f#-l}" 2>/dev/null || true))
        done
        gcc -std=gnu99 -O1 -g -Wall -Wextra -Werror \
            -fsanitize=address,undefined -fno-sanitize-recover=all \
            -I "$ROOT/ngx_llm_router_module" ${cflags[@]+"${cflags[@]}"} \
            -o "$bin" "$t" \
            "$ROOT/ngx_llm_router_module/ngx_http_llm_$name.c" \
            ${extra[@]+"${extra[@]}"} ${libs[@]+"${libs[@]}"} -lm ||
            die "cannot build unit test $t"
        "$bin" || die "unit test $name failed"
    done
}

# ./build.sh fuzz [NAME] [libFuzzer args...]: t/fuzz/NAME_fuzz.c are
# libFuzzer targets, built with clang into build/fuzz/NAME_fuzz with the
# module's .c files named on their "/* fuzz-sources: ... */" line (else
# ngx_http_llm_NAME.c) and the libraries on "/* fuzz-libs: ... */".
# Without libFuzzer args each target runs LLM_FUZZ_RUNS inputs (else the
# number on its "/* fuzz-runs: N */" line, else 50000; fixed seed) on a
# scratch copy of its seed corpus t/fuzz/corpus/NAME/: the
# quick step of the test command.  With args (-runs=, -max_total_time=,
# -jobs=, or a crash file to replay) the target's corpus grows in
# build/fuzz/corpus/NAME/.  Crash, leak and timeout files land in
# build/fuzz/crashes/NAME/; any of them makes the step fail.
run_fuzz() {
    local only="" t name bin src srcs libs lib cflags f rc=0 quick=1
    local work corpus crashes arg files=0 stale args=() runs t0=$SECONDS
    # the libraries the targets name (fuzz-libs) come with the build's
    need_packages clang libclang-rt-14-dev pkg-config "${build_deps[@]}"
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        only=$1
        shift
        [ -f "$ROOT/t/fuzz/${only}_fuzz.c" ] || die "no t/fuzz/${only}_fuzz.c"
    fi
    [ $# -gt 0 ] && quick=0
    for arg in "$@"; do
        # an input to replay, from where build.sh was started
        if [ "${arg#-}" = "$arg" ]; then
            files=1
            arg=$(realpath "$arg")
        fi
        args+=("$arg")
    done
    cd "$ROOT"
    mkdir -p "$BUILD/fuzz"
    for t in t/fuzz/*_fuzz.c; do
        [ -e "$t" ] || continue
        name=$(basename "$t" _fuzz.c)
        [ -z "$only" ] || [ "$only" = "$name" ] || continue
        bin=$BUILD/fuzz/${name}_fuzz

        srcs=() cflags=()
        for src in $(sed -n 's|.*/\* *fuzz-sources: *\(.*[^ ]\) *\*/.*|\1|p' \
                     "$t" | head -n 1); do
            if [ -f "ngx_llm_router_module/$src" ]; then
                srcs+=("ngx_llm_router_module/$src")
            else
                [ -f "$src" ] || die "$t: no fuzz source $src"
                srcs+=("$src")
            fi
        done
        src=ngx_llm_router_module/ngx_http_llm_$name.c
        [ ${#srcs[@]} -gt 0 ] || [ ! -f "$src" ] || srcs=("$src")
        read -r -a libs <<< "$(sed -n \
            's|.*/\* *fuzz-libs: *\(.*[^ ]\) *\*/.*|\1|p' "$t" | head -n 1)"
        for lib in "${libs[@]}"; do
            # -llua5.4: the headers pkg-config knows for lua5.4
            [ "${lib#-l}" != "$lib" ] || continue
            read -r -a f <<< "$(pkg-config --cflags "${lib#-l}" 2>/dev/null ||
                                pkg-config --cflags "lib${lib#-l}" 2>/dev/null)"
            cflags+=("${f[@]}")
        done

        # rebuilt when the target, a module file or this script is newer
        stale=0
        [ -x "$bin" ] || stale=1
        for src in "$t" "${srcs[@]}" ngx_llm_router_module/*.h build.sh; do
            [ "$src" -nt "$bin" ] && stale=1
        done
        if [ $stale = 1 ]; then
            say "fuzz: building $name"
            clang -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -Wall -Wextra -Wno-unused-parameter \
                -I ngx_llm_router_module "${cflags[@]}" -o "$bin" \
                "$t" "${srcs[@]}" "${libs[@]}" -lm ||
                die "cannot build fuzz target $t"
        fi

        crashes=$BUILD/fuzz/crashes/$name
        mkdir -p "$crashes"
        # a slow target may ask for fewer runs: /* fuzz-runs: 10000 */
        runs=$(sed -n 's|.*/\* *fuzz-runs: *\([0-9]*\) *\*/.*|\1|p' "$t" |
               head -n 1)
        runs=${LLM_FUZZ_RUNS:-${runs:-50000}}
        if [ $quick = 1 ]; then
            # the seeds on a scratch copy: the run adds inputs to it
            work=$(mktemp -d "$BUILD/fuzz/run.XXXXXX")
            if [ -d "t/fuzz/corpus/$name" ]; then
                cp -r "t/fuzz/corpus/$name/." "$work/"
            fi
            say "fuzz: $name, $runs runs"
            (cd "$BUILD/fuzz" && "$bin" -runs="$runs" \
                -seed=1 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
                -artifact_prefix="$crashes/" "$work" \
                >"$BUILD/fuzz/$name.log" 2>&1) || {
                tail -n 40 "$BUILD/fuzz/$name.log" >&2
                say "fuzz: $name failed (log $BUILD/fuzz/$name.log," \
                    "input in $crashes/)"
                rc=1
            }
            grep -h '^stat::number_of_executed_units' "$BUILD/fuzz/$name.log" |
                sed "s|^|build.sh: fuzz: $name: |" >&2 || true
            rm -rf "$work"
        else
            corpus=$BUILD/fuzz/corpus/$name
            mkdir -p "$corpus"
            if [ -d "t/fuzz/corpus/$name" ]; then
                cp -rn "t/fuzz/corpus/$name/." "$corpus/"
            fi
            if [ $files = 1 ]; then
                (cd "$BUILD/fuzz" &&
                 "$bin" -artifact_prefix="$crashes/" "${args[@]}") || rc=1
            else
                say "fuzz: $name $*; logs in $BUILD/fuzz"
                (cd "$BUILD/fuzz" && "$bin" -timeout=10 -rss_limit_mb=1024 \
                    -artifact_prefix="$crashes/" "${args[@]}" "$corpus") ||
                    rc=1
            fi
        fi
    done
    [ $rc = 0 ] || die "fuzzing found a crash, a leak or a timeout"
    [ $quick = 0 ] || say "fuzz: no crash, leak or timeout ($((SECONDS - t0))s)"
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
    say "fuzz targets"; run_fuzz
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
    fuzz) shift; run_fuzz "$@" ;;

    lint) build_module; run_lint ;;
    bench) build_module
           need_packages wrk python3 libnginx-mod-http-lua lua-cjson
           exec bash "$ROOT/bench/run.sh" "$MODULE" ;;
    cost) build_module; need_packages valgrind python3
          exec bash "$ROOT/bench/cost.sh" "$MODULE" ;;
    *) die "usage: ./build.sh [build|run|test|bench|cost|lint|fuzz]" ;;
esac
