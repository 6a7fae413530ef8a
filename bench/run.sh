#!/usr/bin/env bash
#
# ngx_llm_router benchmark: the router's overhead against plain proxy_pass.
#
#   bash bench/run.sh [/path/to/ngx_http_llm_router_module.so]
#   ./build.sh bench
#
# Starts, on loopback ports chosen at random, a fixed-reply nginx backend,
# the mock engine (streaming case) and a front nginx with a plain server
# and a router server (bench/front.conf.in); checks both fronts with curl;
# then runs wrk against plain and router in turn, round after round, and
# prints a Markdown table (also written to bench/results.md).  See
# bench/README.md for the knobs (BENCH_* environment variables).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
MODULE=${1:-$ROOT/build/ngx_http_llm_router_module.so}
export PATH=$PATH:/usr/sbin:/sbin
NGINX=${NGINX:-$(command -v nginx || true)}
WRK=${WRK:-$(command -v wrk || true)}
PYTHON=${PYTHON:-python3}

DURATION=${BENCH_DURATION:-8}          # seconds per wrk run
ROUNDS=${BENCH_ROUNDS:-3}              # plain/router pairs per case
WARMUP=${BENCH_WARMUP:-2}              # seconds, per front and case
THREADS=${BENCH_THREADS:-1}            # wrk -t
CONNECTIONS=${BENCH_CONNECTIONS:-32}   # wrk -c
CASES=${BENCH_CASES:-1k 16k 256k stream}
BODY_BUFFER=${BENCH_BODY_BUFFER:-16k}  # client_body_buffer_size
MAX_BODY=${BENCH_MAX_BODY:-2m}         # client_max_body_size
SENDFILE=${BENCH_SENDFILE:-on}
STREAM_TOKENS=${BENCH_STREAM_TOKENS:-16}
MAX_ERRORS=${BENCH_MAX_ERRORS:-5}      # tolerated non-2xx + socket errors
PIN=${BENCH_PIN:-auto}                 # auto | on | off: CPU pinning
STRICT=${BENCH_STRICT:-0}              # 1: exit 3 when a target is missed
OUT=${BENCH_OUT:-$BENCH/results.md}
# BENCH_HOOK=1: the router location runs a trivial Lua request hook
# (bench/trivial_hook.lua)
ROUTER_HOOK=
[ "${BENCH_HOOK:-0}" = 1 ] && ROUTER_HOOK="llm_hook $BENCH/trivial_hook.lua;"
KEEP=${BENCH_KEEP:-0}                  # 1: keep the temporary directory
# auto | on | off: also measure an OpenResty-style Lua router (Debian's
# libnginx-mod-http-lua and lua-cjson; bench/reference.conf.in)
REFERENCE=${BENCH_REFERENCE:-auto}

MODEL=bench-model
STREAM_MODEL=bench-stream
TARGET=bench-target-model

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# -- arguments and tools --------------------------------------------------

[ -f "$MODULE" ] || die "no module at $MODULE (run ./build.sh first)"
MODULE=$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE")
[ -n "$NGINX" ] && [ -x "$NGINX" ] || die "nginx not found (set NGINX=)"
[ -n "$WRK" ] || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

for v in DURATION ROUNDS WARMUP THREADS CONNECTIONS STREAM_TOKENS \
         MAX_ERRORS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be an integer: ${!v}"
done
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] ||
    die "BENCH_DURATION and BENCH_ROUNDS must be at least 1"
[ "$CONNECTIONS" -ge "$THREADS" ] ||
    die "BENCH_CONNECTIONS must be at least BENCH_THREADS"
for c in $CASES; do
    case $c in 1k|16k|256k|stream) ;;
        *) die "unknown case \"$c\" in BENCH_CASES (1k 16k 256k stream)" ;;
    esac
done

CORES=$(nproc)
case $PIN in
    auto) [ "$CORES" -ge 2 ] && command -v taskset >/dev/null &&
              PIN=on || PIN=off ;;
    on) command -v taskset >/dev/null || die "BENCH_PIN=on needs taskset" ;;
    off) ;;
    *) die "BENCH_PIN must be auto, on or off" ;;
esac
case $REFERENCE in auto|on|off) ;;
    *) die "BENCH_REFERENCE must be auto, on or off" ;;
esac

# With pinning the front nginx (the thing measured) has CPU 0 to itself;
# wrk, the backend and the mock engine share the others.
if [ "$PIN" = on ]; then
    FRONT_CPUS=(taskset -c 0)
    REST_CPUS=(taskset -c "1-$((CORES - 1))")
else
    FRONT_CPUS=()
    REST_CPUS=()
fi

# -- cleanup: everything started here is stopped on exit --------------------

WORK=$(mktemp -d /tmp/llm-bench.XXXXXX)
chmod 755 "$WORK"                     # nginx workers run as nobody
pids=()
wrk_pid=

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    [ -n "$wrk_pid" ] && stop_pid "$wrk_pid"
    for p in "${pids[@]}"; do stop_pid "$p"; done
    if [ "$KEEP" = 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] &&
                              [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; }; then
        say "files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- ports, bodies, configuration ------------------------------------------

# nginx maps the module file: a rebuild that rewrites it in place (cp)
# would crash the running workers, so the bench loads a private copy.
cp "$MODULE" "$WORK/ngx_http_llm_router_module.so"
MODULE_ID="$(basename "$MODULE") sha256 $(sha256sum "$WORK/ngx_http_llm_router_module.so" | cut -c1-12)"
MODULE=$WORK/ngx_http_llm_router_module.so

read -r BACKEND_PORT MOCK_PORT PLAIN_PORT PLAIN_STREAM_PORT ROUTER_PORT \
    REFERENCE_PORT < <("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(6):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

declare -A SIZE=([1k]=1024 [16k]=16000 [256k]=262144 [stream]=1024)
declare -A LABEL=(
    [1k]="chat 1 KB"
    [16k]="chat 16 KB"
    [256k]="chat 256 KB"
    [stream]="stream, $STREAM_TOKENS tokens (mock)"
)
declare -A TARGET_RATIO=([1k]=0.90 [16k]=0.90 [256k]=0.60)

mkdir -p "$WORK/bodies"
for c in 1k 16k 256k; do
    "$PYTHON" "$BENCH/gen_body.py" "${SIZE[$c]}" "$MODEL" \
        "$WORK/bodies/$c.json"
    # same size, routed to the echoing mock engine for the rewrite check
    "$PYTHON" "$BENCH/gen_body.py" "${SIZE[$c]}" "$STREAM_MODEL" \
        "$WORK/bodies/$c-echo.json"
done
"$PYTHON" "$BENCH/gen_body.py" "${SIZE[stream]}" "$STREAM_MODEL" \
    "$WORK/bodies/stream.json" --stream

# what the rewrite adds: the longer model name and ,"temperature":0.7
ADDED=',"temperature":0.7'
EDIT_DELTA=$(( ${#TARGET} - ${#MODEL} + ${#ADDED} ))

render() {   # template, prefix
    mkdir -p "$2/conf" "$2/logs"
    sed -e "s|@MODULE@|$MODULE|g" \
        -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@MOCK_PORT@|$MOCK_PORT|g" \
        -e "s|@PLAIN_PORT@|$PLAIN_PORT|g" \
        -e "s|@PLAIN_STREAM_PORT@|$PLAIN_STREAM_PORT|g" \
        -e "s|@ROUTER_PORT@|$ROUTER_PORT|g" \
        -e "s|@REFERENCE_PORT@|$REFERENCE_PORT|g" \
        -e "s|@CLIENT_MAX_BODY_SIZE@|$MAX_BODY|g" \
        -e "s|@CLIENT_BODY_BUFFER_SIZE@|$BODY_BUFFER|g" \
        -e "s|@SENDFILE@|$SENDFILE|g" \
        -e "s|@ROUTER_HOOK@|$ROUTER_HOOK|g" \
        "$1" > "$2/conf/nginx.conf"
    ! grep -n '@[A-Z_]*@' "$2/conf/nginx.conf" ||
        die "unfilled placeholder in $2/conf/nginx.conf"
}

render "$BENCH/backend.conf.in" "$WORK/backend"
render "$BENCH/front.conf.in" "$WORK/front"
render "$BENCH/reference.conf.in" "$WORK/reference"

# the reference needs the lua module and lua-cjson: nginx -t says
if [ "$REFERENCE" != off ]; then
    if "$NGINX" -t -q -p "$WORK/reference/" -c conf/nginx.conf \
           -e logs/error.log 2> "$WORK/reference/logs/test.log"; then
        REFERENCE=on
    elif [ "$REFERENCE" = on ]; then
        cat "$WORK/reference/logs/test.log" >&2
        die "the reference router does not start (apt-get install" \
            "libnginx-mod-http-lua lua-cjson)"
    else
        say "no reference router: libnginx-mod-http-lua or lua-cjson" \
            "missing (BENCH_REFERENCE=off to silence)"
        REFERENCE=off
    fi
fi

# -- start the servers -------------------------------------------------------

wait_port() {   # port, what, log
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    [ -f "$3" ] && tail -n 20 "$3" >&2
    die "$2 does not listen on 127.0.0.1:$1"
}

start_nginx() {   # name, cpu pinning...
    local name=$1 prefix=$WORK/$1
    shift
    "$NGINX" -t -q -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        2> "$prefix/logs/test.log" || {
        cat "$prefix/logs/test.log" >&2
        die "nginx -t failed for the $name configuration"
    }
    "$@" "$NGINX" -p "$prefix/" -c conf/nginx.conf -e logs/error.log \
        2>> "$prefix/logs/stderr.log" &
    pids+=($!)
}

start_nginx backend "${REST_CPUS[@]}"
BACKEND_PID=${pids[-1]}
start_nginx front "${FRONT_CPUS[@]}"
FRONT_PID=${pids[-1]}
if [ "$REFERENCE" = on ]; then
    start_nginx reference "${FRONT_CPUS[@]}"
    REFERENCE_PID=${pids[-1]}
fi

"${REST_CPUS[@]}" "$PYTHON" "$ROOT/mock/mock_engine.py" \
    --listen "127.0.0.1:$MOCK_PORT=bench-mock" \
    --model "$TARGET" --tokens "$STREAM_TOKENS" --pace-ms 0 \
    > "$WORK/mock.out" 2> "$WORK/mock.err" &
pids+=($!)
MOCK_PID=$!

for i in $(seq 100); do
    grep -qx ready "$WORK/mock.out" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
done
grep -qx ready "$WORK/mock.out" 2>/dev/null || {
    cat "$WORK/mock.err" >&2
    die "the mock engine did not start"
}

wait_port "$BACKEND_PORT" "the backend nginx" "$WORK/backend/logs/error.log"
for p in "$PLAIN_PORT" "$PLAIN_STREAM_PORT" "$ROUTER_PORT"; do
    wait_port "$p" "the front nginx" "$WORK/front/logs/error.log"
done
[ "$REFERENCE" = on ] && wait_port "$REFERENCE_PORT" "the reference nginx" \
    "$WORK/reference/logs/error.log"

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's|.*nginx/|nginx/|')
TREE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$ROOT" status --porcelain -- ngx_llm_router_module config \
        2>/dev/null)" ] && TREE="$TREE + uncommitted module changes"
say "$NGINX_VERSION, $CORES cores, pinning $PIN; files in $WORK"
say "ports: backend $BACKEND_PORT, mock $MOCK_PORT, plain $PLAIN_PORT," \
    "plain-stream $PLAIN_STREAM_PORT, router $ROUTER_PORT, reference" \
    "$REFERENCE_PORT ($REFERENCE)"

# -- sanity checks -----------------------------------------------------------

URL_PATH=/v1/chat/completions

post() {   # port, body file, output prefix, extra curl args...
    local port=$1 body=$2 out=$3
    shift 3
    curl -sS -m 20 -o "$out.body" -D "$out.head" -w '%{http_code}' \
        -H 'Content-Type: application/json' --data-binary "@$body" \
        "$@" "http://127.0.0.1:$port$URL_PATH"
}

header() {   # file, name
    tr -d '\r' < "$1" | awk -v IGNORECASE=1 -v h="$2" \
        'tolower($1) == tolower(h ":") { print $2 }' | tail -n 1
}

check_status() {   # what, got, output prefix
    [ "$2" = 200 ] && return 0
    say "$1: HTTP $2"
    cat "$3.head" "$3.body" >&2 2>/dev/null || true
    echo >&2
    die "$1 did not answer 200"
}

mkdir -p "$WORK/check"
for c in $CASES; do
    [ "$c" = stream ] && continue
    body=$WORK/bodies/$c.json
    size=${SIZE[$c]}

    # plain: the backend gets the body unchanged
    out=$WORK/check/$c-plain
    check_status "plain $c" "$(post "$PLAIN_PORT" "$body" "$out")" "$out"
    got=$(header "$out.head" X-Bench-Request-Length)
    [ "$got" = "$size" ] ||
        die "plain $c: the backend got $got bytes, not $size"

    # router: 200 from the fixed backend, body longer by the rewrite
    out=$WORK/check/$c-router
    check_status "router $c" "$(post "$ROUTER_PORT" "$body" "$out")" "$out"
    got=$(header "$out.head" X-Bench-Request-Length)
    [ "$got" = "$((size + EDIT_DELTA))" ] ||
        die "router $c: the backend got $got bytes, not" \
            "$((size + EDIT_DELTA)) (the rewritten body)"

    # router to the echoing mock: exactly the rewritten body arrived
    out=$WORK/check/$c-echo
    check_status "router $c (echo)" \
        "$(post "$ROUTER_PORT" "$WORK/bodies/$c-echo.json" "$out" \
            -H 'X-Mock-Echo: 1')" "$out"
    "$PYTHON" - "$WORK/bodies/$c-echo.json" "$out.body" \
        "$STREAM_MODEL" "$TARGET" <<'PY' || die "router $c: wrong rewrite"
import json, sys
sent = open(sys.argv[1], "rb").read()
got = open(sys.argv[2], "rb").read()
model, target = sys.argv[3], sys.argv[4]
want = sent.replace(b'"model":"%s"' % model.encode(),
                    b'"model":"%s"' % target.encode(), 1)
want = want[:-1] + b',"temperature":0.7}'
doc = json.loads(got)
if doc.get("model") != target or doc.get("temperature") != 0.7:
    sys.exit("echo: model %r temperature %r" % (doc.get("model"),
                                                doc.get("temperature")))
if got != want:
    sys.exit("echo: %d bytes differ from the expected %d"
             % (len(got), len(want)))
PY
    say "check $c: plain 200 ($size B), router 200" \
        "($((size + EDIT_DELTA)) B, model -> $TARGET, temperature added)"

    # the reference: 200 from the backend, a body encoded again (its own
    # length: cjson writes escapes and key order its way)
    if [ "$REFERENCE" = on ]; then
        out=$WORK/check/$c-reference
        check_status "reference $c" \
            "$(post "$REFERENCE_PORT" "$body" "$out")" "$out"
        got=$(header "$out.head" X-Bench-Request-Length)
        [ -n "$got" ] && [ "$got" -gt "$(( size / 2 ))" ] ||
            die "reference $c: the backend got \"$got\" bytes"
        say "check $c: reference 200 ($got B after its re-encoding)"
    fi
done

if [[ " $CASES " == *" stream "* ]]; then
    for front in plain router; do
        port=$PLAIN_STREAM_PORT
        [ "$front" = router ] && port=$ROUTER_PORT
        out=$WORK/check/stream-$front
        check_status "$front stream" \
            "$(post "$port" "$WORK/bodies/stream.json" "$out" -N)" "$out"
        ctype=$(header "$out.head" Content-Type)
        [[ $ctype == text/event-stream* ]] ||
            die "$front stream: Content-Type \"$ctype\""
        events=$(grep -c '"delta":{"content"' "$out.body" || true)
        [ "$events" = "$STREAM_TOKENS" ] ||
            die "$front stream: $events token events, not $STREAM_TOKENS"
        grep -q '^data: \[DONE\]' "$out.body" ||
            die "$front stream: no [DONE]"
        if [ "$front" = router ]; then
            grep -q "\"model\":\"$STREAM_MODEL\"" "$out.body" ||
                die "router stream: the model name is not restored"
            ! grep -q '"usage"' "$out.body" ||
                die "router stream: the usage event was not dropped"
        fi
    done
    say "check stream: plain and router 200, $STREAM_TOKENS token events," \
        "[DONE]"
fi

# -- measurements ------------------------------------------------------------

# wrk output -> "req/s p50_ms p99_ms errors requests"
parse_wrk() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
        if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
        if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
        if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
        return v + 0
    }
    $1 == "50%"          { p50 = ms($2) }
    $1 == "99%"          { p99 = ms($2) }
    /requests in/        { n = $1 }
    /^Requests\/sec:/    { rps = $2 }
    /Non-2xx or 3xx/     { err += $NF }
    /Socket errors:/     { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END {
        if (rps == "" || p50 == "" || p99 == "") exit 1
        printf "%s %.3f %.3f %d %d\n", rps, p50, p99, err, n
    }' "$1"
}

# CPU accounting in clock ticks: the front worker's time per request, and
# how much CPU processes other than the bench's used meanwhile (a shared
# machine makes the req/s numbers noisy; CPU per request much less so).
HZ=$(getconf CLK_TCK)

worker_of() {   # master pid -> its (single) worker's pid
    local w
    w=$(pgrep -P "$1" | head -n 1)
    [ -n "$w" ] || die "nginx master $1 has no worker"
    echo "$w"
}

proc_ticks() {   # pid -> utime + stime
    local s fields
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    read -r -a fields <<< "${s##*) }"
    echo $(( fields[11] + fields[12] ))
}

cpu_snapshot() {   # SNAP=front backend mock children busy total (no subshell)
    local u n sy i w q sq st c
    read -r _ u n sy i w q sq st _ < /proc/stat
    times > "$WORK/times"       # builtin: the shell's reaped children
    c=$(awk -v hz="$HZ" 'NR == 2 {
            split($1, a, /[ms]/); split($2, b, /[ms]/)
            printf "%d", (a[1] * 60 + a[2] + b[1] * 60 + b[2]) * hz }' \
        "$WORK/times")
    SNAP="$(proc_ticks "$MEASURED_WORKER") $(proc_ticks "$BACKEND_WORKER")"
    SNAP+=" $(proc_ticks "$MOCK_PID") $c $(( u + n + sy + q + sq + st ))"
    SNAP+=" $(( u + n + sy + i + w + q + sq + st ))"
}

check_alive() {
    local n
    for n in front backend reference; do
        [ -f "$WORK/$n/logs/error.log" ] || continue
        if grep -q 'exited on signal' "$WORK/$n/logs/error.log"; then
            grep -m 3 'exited on signal' "$WORK/$n/logs/error.log" >&2
            die "a $n nginx worker crashed"
        fi
    done
    kill -0 "$MEASURED_WORKER" 2>/dev/null && kill -0 "$BACKEND_WORKER" \
        2>/dev/null || die "an nginx worker is gone"
}

run_wrk() {   # port, body file, seconds, output file
    local rc=0 before after
    cpu_snapshot
    before=$SNAP
    BENCH_BODY=$2 "${REST_CPUS[@]}" timeout -k 5 "$(( $3 + 30 ))" \
        "$WRK" -t"$THREADS" -c"$CONNECTIONS" -d"$3s" --latency \
        -s "$BENCH/body.lua" "http://127.0.0.1:$1$URL_PATH" \
        > "$4" 2>&1 &
    wrk_pid=$!
    wait "$wrk_pid" || rc=$?
    wrk_pid=
    cpu_snapshot
    after=$SNAP
    [ "$rc" -eq 0 ] || { cat "$4" >&2; die "wrk failed (exit $rc)"; }
    check_alive
    # -> front_ticks other_cores
    read -r FRONT_TICKS OTHER_CORES < <(
        echo "$before $after" | awk -v cores="$CORES" '{
            front = $7 - $1; ours = front + ($8 - $2) + ($9 - $3) + ($10 - $4)
            other = ($11 - $5) - ours; total = $12 - $6
            if (other < 0) other = 0
            printf "%d %.2f\n", front, total ? other * cores / total : 0 }')
}

median() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

mkdir -p "$WORK/wrk"
declare -A RES
RAW=()

# the fronts measured in a case: the reference only takes chat bodies
fronts_of() {   # case
    if [ "$REFERENCE" = on ] && [ "$1" != stream ]; then
        echo plain router reference
    else
        echo plain router
    fi
}

total=0
for c in $CASES; do
    n=$(fronts_of "$c" | wc -w)
    total=$(( total + n * (WARMUP + ROUNDS * DURATION) ))
done
FRONT_WORKER=$(worker_of "$FRONT_PID")
BACKEND_WORKER=$(worker_of "$BACKEND_PID")
REFERENCE_WORKER=
[ "$REFERENCE" = on ] && REFERENCE_WORKER=$(worker_of "$REFERENCE_PID")
MEASURED_WORKER=$FRONT_WORKER

measure() {   # front, case -> PORT, MEASURED_WORKER
    MEASURED_WORKER=$FRONT_WORKER
    case $1 in
        plain) if [ "$2" = stream ]; then PORT=$PLAIN_STREAM_PORT
               else PORT=$PLAIN_PORT; fi ;;
        router) PORT=$ROUTER_PORT ;;
        reference) PORT=$REFERENCE_PORT
                   MEASURED_WORKER=$REFERENCE_WORKER ;;
    esac
}

say "measuring: $CASES; $ROUNDS rounds x ${DURATION}s per front," \
    "wrk -t$THREADS -c$CONNECTIONS (about $(( total / 60 ))m$(( total % 60 ))s)"

for c in $CASES; do
    body=$WORK/bodies/$c.json
    read -r -a fronts <<< "$(fronts_of "$c")"

    if [ "$WARMUP" -gt 0 ]; then
        for front in "${fronts[@]}"; do
            measure "$front" "$c"
            run_wrk "$PORT" "$body" "$WARMUP" "$WORK/wrk/$c-warm-$front"
        done
    fi

    for r in $(seq "$ROUNDS"); do
        for front in "${fronts[@]}"; do
            measure "$front" "$c"
            f=$WORK/wrk/$c-$front-$r
            run_wrk "$PORT" "$body" "$DURATION" "$f"
            read -r rps p50 p99 err n < <(parse_wrk "$f") ||
                { cat "$f" >&2; die "cannot parse the wrk output"; }
            if [ "$err" -gt "$MAX_ERRORS" ]; then
                cat "$f" >&2
                die "$c $front: $err non-2xx responses or socket errors" \
                    "(BENCH_MAX_ERRORS=$MAX_ERRORS)"
            fi
            [ "$n" -gt 0 ] || die "$c $front: no requests completed"
            echo "$rps" >> "$WORK/wrk/$c-$front.rps"
            echo "$p50" >> "$WORK/wrk/$c-$front.p50"
            echo "$p99" >> "$WORK/wrk/$c-$front.p99"
            us=$(awk -v t="$FRONT_TICKS" -v n="$n" -v hz="$HZ" \
                 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
            echo "$us" >> "$WORK/wrk/$c-$front.cpu"
            busy=$(awk -v t="$FRONT_TICKS" -v hz="$HZ" -v d="$DURATION" \
                   'BEGIN { printf "%.0f", t * 100 / hz / d }')
            echo "$busy" >> "$WORK/wrk/$c-$front.busy"
            echo "$OTHER_CORES" >> "$WORK/wrk/$c-$front.other"
            RAW+=("$c $front round $r: $rps req/s, p50 $p50 ms, p99 $p99 ms, $err errors; front CPU $us µs/req, busy $busy%; other processes $OTHER_CORES cores")
            say "${RAW[-1]}"
        done
    done

    for front in "${fronts[@]}"; do
        for m in rps p50 p99 cpu busy other; do
            RES[$c-$front-$m]=$(median < "$WORK/wrk/$c-$front.$m")
        done
    done
done

# -- streaming time to first byte ---------------------------------------------

# sequential requests, one at a time: the median time to the first byte and
# to the last, per front (usage capture, model restore and usage-event
# stripping are on in the router)
TTFB_N=${BENCH_TTFB_REQUESTS:-40}
if [[ " $CASES " == *" stream "* ]]; then
    for front in plain router; do
        port=$PLAIN_STREAM_PORT
        [ "$front" = router ] && port=$ROUTER_PORT
        : > "$WORK/wrk/ttfb-$front"
        for _ in $(seq "$TTFB_N"); do
            curl -sS -m 20 -o /dev/null -N \
                -w '%{time_starttransfer} %{time_total}\n' \
                -H 'Content-Type: application/json' \
                --data-binary "@$WORK/bodies/stream.json" \
                "http://127.0.0.1:$port$URL_PATH" >> "$WORK/wrk/ttfb-$front"
        done
        RES[ttfb-$front]=$(awk '{ print $1 * 1000 }' "$WORK/wrk/ttfb-$front" |
                           median)
        RES[ttlb-$front]=$(awk '{ print $2 * 1000 }' "$WORK/wrk/ttfb-$front" |
                           median)
    done
    say "stream time to first byte: plain ${RES[ttfb-plain]} ms," \
        "router ${RES[ttfb-router]} ms"
fi

# -- error logs ----------------------------------------------------------------

# [warn] "buffered to a temporary file" is expected for bodies larger than
# client_body_buffer_size; anything at [error] or worse is reported.
log_notes=()
for n in front backend reference; do
    log=$WORK/$n/logs/error.log
    [ -f "$log" ] || continue
    bad=$(grep -cE '\[(error|crit|alert|emerg)\]' "$log" || true)
    buffered=$(grep -c 'buffered to a temporary file' "$log" || true)
    [ "$bad" -gt 0 ] && {
        log_notes+=("$n error.log: $bad lines at [error] or worse, e.g. \`$(
            grep -m1 -E '\[(error|crit|alert|emerg)\]' "$log" |
            sed 's/^[^]]*\] [0-9#]*: //' | cut -c1-160)\`")
        say "${log_notes[-1]}"
    }
    [ "$buffered" -gt 0 ] &&
        log_notes+=("$n error.log: $buffered \"buffered to a temporary file\" warnings (bodies above client_body_buffer_size $BODY_BUFFER, both fronts)")
done

# -- report --------------------------------------------------------------------

# nginx size ("16k", "2m", "4096") -> bytes
size_bytes() {
    awk -v v="$1" 'BEGIN { n = v + 0; u = tolower(substr(v, length(v)))
        if (u == "k") n *= 1024; else if (u == "m") n *= 1048576
        else if (u == "g") n *= 1073741824; printf "%d", n }'
}

body_paths() {   # which bodies fit client_body_buffer_size
    local buf c mem=() file=()
    buf=$(size_bytes "$BODY_BUFFER")
    for c in 1k 16k 256k; do
        [[ " $CASES " == *" $c "* ]] || continue
        if [ "${SIZE[$c]}" -le "$buf" ]; then
            mem+=("${SIZE[$c]}")
        else
            file+=("${SIZE[$c]}")
        fi
    done
    [ ${#mem[@]} -gt 0 ] && printf 'Bodies of %s bytes stay in memory (client_body_buffer_size %s).' \
        "$(IFS=/; echo "${mem[*]}")" "$BODY_BUFFER"
    [ ${#mem[@]} -gt 0 ] && [ ${#file[@]} -gt 0 ] && printf ' '
    [ ${#file[@]} -gt 0 ] && printf 'Bodies of %s bytes go through a temporary file on both fronts.' \
        "$(IFS=/; echo "${file[*]}")"
    return 0
}

fmt_rps() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
fmt_1()   { awk -v v="$1" 'BEGIN { printf "%.1f", v }'; }
fmt_ms()  { awk -v v="$1" 'BEGIN {
    if (v < 10) printf "%.2f", v; else if (v < 100) printf "%.1f", v;
    else printf "%.0f", v }'; }

missed=0
targets=()
{
    echo "# ngx_llm_router benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC') · $NGINX_VERSION ·" \
         "$CORES cores ($(awk -F': ' '/model name/ { print $2; exit }' \
            /proc/cpuinfo 2>/dev/null || echo unknown CPU)) ·" \
         "wrk -t$THREADS -c$CONNECTIONS, $ROUNDS interleaved round(s) ×" \
         "${DURATION} s per front, medians · front and backend" \
         "worker_processes 1, CPU pinning $PIN ·" \
         "client_body_buffer_size $BODY_BUFFER, client_max_body_size" \
         "$MAX_BODY, sendfile $SENDFILE · $MODULE_ID, tree $TREE$(
            [ -n "$ROUTER_HOOK" ] &&
            echo " · the router location runs bench/trivial_hook.lua")"
    echo
    echo "| case | plain req/s | router req/s | ratio | plain p50/p99 |" \
         "router p50/p99 |"
    echo "|---|---:|---:|---:|---:|---:|"
    for c in $CASES; do
        prps=${RES[$c-plain-rps]}
        rrps=${RES[$c-router-rps]}
        ratio=$(awk -v a="$rrps" -v b="$prps" 'BEGIN { printf "%.2f", a / b }')
        RES[$c-ratio]=$ratio
        echo "| ${LABEL[$c]} | $(fmt_rps "$prps") | $(fmt_rps "$rrps") |" \
             "$ratio | $(fmt_ms "${RES[$c-plain-p50]}") /" \
             "$(fmt_ms "${RES[$c-plain-p99]}") ms |" \
             "$(fmt_ms "${RES[$c-router-p50]}") /" \
             "$(fmt_ms "${RES[$c-router-p99]}") ms |"
    done
    echo
    echo "Front nginx worker: CPU time per request (user + system) and how" \
         "busy it was (% of one core; near 100% the front is the" \
         "bottleneck, below it wrk and the backend are), medians; and the" \
         "most CPU other processes used during a run (about 0 on a quiet" \
         "machine; above ~0.2 cores the req/s figures are disturbed):"
    echo
    echo "| case | plain CPU µs/req | router CPU µs/req | router extra |" \
         "front busy plain/router | other load, cores |"
    echo "|---|---:|---:|---:|---:|---:|"
    for c in $CASES; do
        echo "| ${LABEL[$c]} | $(fmt_1 "${RES[$c-plain-cpu]}") |" \
             "$(fmt_1 "${RES[$c-router-cpu]}") |" \
             "$(awk -v a="${RES[$c-router-cpu]}" -v b="${RES[$c-plain-cpu]}" \
                'BEGIN { printf "%+.1f µs (%+.0f%%)", a - b,
                         b ? (a - b) * 100 / b : 0 }') |" \
             "$(fmt_rps "${RES[$c-plain-busy]}")% /" \
             "$(fmt_rps "${RES[$c-router-busy]}")% |" \
             "$(sort -g "$WORK/wrk/$c-plain.other" "$WORK/wrk/$c-router.other" |
                tail -n 1) (max) |"
    done
    echo
    if [ "$REFERENCE" = on ]; then
        echo "OpenResty-style reference router (bench/reference.conf.in:" \
             "Debian's lua module with LuaJIT and lua-cjson; it decodes the" \
             "body whole, rewrites model and temperature, encodes it again" \
             "and proxies by variable; it does nothing with the answer)," \
             "measured in the same rounds, pinned like the front:"
        echo
        echo "| case | reference req/s | reference / plain | router / plain" \
             "| router / reference | reference CPU µs/req |"
        echo "|---|---:|---:|---:|---:|---:|"
        for c in $CASES; do
            [ -n "${RES[$c-reference-rps]:-}" ] || continue
            echo "| ${LABEL[$c]} | $(fmt_rps "${RES[$c-reference-rps]}") |" \
                 "$(awk -v a="${RES[$c-reference-rps]}" \
                    -v b="${RES[$c-plain-rps]}" \
                    'BEGIN { printf "%.2f", a / b }') |" \
                 "${RES[$c-ratio]} |" \
                 "$(awk -v a="${RES[$c-router-rps]}" \
                    -v b="${RES[$c-reference-rps]}" \
                    'BEGIN { printf "%.2f", a / b }') |" \
                 "$(fmt_1 "${RES[$c-reference-cpu]}") |"
        done
        echo
    fi
    for c in $CASES; do
        [ -n "${TARGET_RATIO[$c]:-}" ] || continue
        if awk -v r="${RES[$c-ratio]}" -v t="${TARGET_RATIO[$c]}" \
               'BEGIN { exit !(r >= t) }'; then
            targets+=("${LABEL[$c]#chat } ${RES[$c-ratio]} ≥ ${TARGET_RATIO[$c]} met")
        else
            targets+=("${LABEL[$c]#chat } ${RES[$c-ratio]} < ${TARGET_RATIO[$c]} **MISSED**")
            missed=1
        fi
    done
    if [ -n "${RES[ttfb-plain]:-}" ]; then
        echo "Streaming, $TTFB_N sequential requests (curl), medians:" \
             "time to first byte plain ${RES[ttfb-plain]} ms, router" \
             "${RES[ttfb-router]} ms; to the last byte plain" \
             "${RES[ttlb-plain]} ms, router ${RES[ttlb-router]} ms" \
             "(target: router within 5% of plain)."
        echo
    fi
    echo "Targets (router/plain req/s): ≥ 0.90 at 1 KB and 16 KB," \
         "≥ 0.60 at 256 KB$( [ -n "$ROUTER_HOOK" ] &&
            echo ", for the router without a hook: this run has one, so" \
                 "the marks below only compare")."
    if [ ${#targets[@]} -gt 0 ]; then
        line="This run: ${targets[0]}"
        for t in "${targets[@]:1}"; do line+="; $t"; done
        echo "$line."
    fi
    echo
    echo "Bodies: OpenAI chat requests, \`messages\` first and" \
         "\`\"model\":\"$MODEL\"\` after them; the router rewrites the" \
         "model to \`$TARGET\` and adds \`\"temperature\":0.7\`" \
         "(+$EDIT_DELTA bytes).  $(body_paths)  The streaming case" \
         "is bound by the Python mock engine: its ratio only shows that" \
         "the router adds nothing measurable there."
    if [ ${#log_notes[@]} -gt 0 ]; then
        echo
        for n in "${log_notes[@]}"; do echo "- $n"; done
    fi
    echo
    echo "<details><summary>Rounds</summary>"
    echo
    for l in "${RAW[@]}"; do echo "- $l"; done
    echo
    echo "</details>"
} > "$WORK/results.md"

cp "$WORK/results.md" "$OUT"
echo
cat "$OUT"
echo
say "written to $OUT"

if [ "$missed" = 1 ] && [ "$STRICT" = 1 ]; then
    say "a target was missed (BENCH_STRICT=1)"
    exit 3
fi
