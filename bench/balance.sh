#!/usr/bin/env bash
#
# ngx_llm_router balancing benchmark: round_robin, least_conn and least_load
# over a skewed fleet.
#
#   bash bench/balance.sh [/path/to/ngx_http_llm_router_module.so]
#
# Two engines behind one upstream, one of them BALANCE_SLOW_FACTOR (3)
# times slower per token.  The same closed-loop load (wrk, a fixed number of
# connections, each sending a streaming chat request as soon as its last one
# finished, latency measured to the last byte) goes through the router to
# an upstream with each policy in turn, and the mean and p99 latency per
# policy are compared with round_robin.  See bench/README.md ("Balancing").
#
# Two fleets ("scenarios"), both started from the project's mock engine:
#
#   uncapped  mock/mock_engine.py as it is.  It runs every request at once,
#             so a request takes tokens * token-ms (x3 on the slow engine)
#             whatever the load: the slow engine never fills up, and a
#             balancer can only change how many requests get the slow
#             engine's service time, never that time itself.
#   capped    bench/capped_engine.py: the same mock with BALANCE_SLOTS (8)
#             generation slots per engine and a FIFO queue behind them,
#             reported as vllm:num_requests_running / _waiting, the way
#             vLLM (max_num_seqs) or llama.cpp (--parallel) behave.  Here
#             an engine can be overloaded, and that is what the policies
#             are meant to avoid.
#
# Offered load.  With T = tokens * token-ms (32 * 10 ms = 320 ms), the fast
# engine serves a request in T and the slow one in 3T.  BALANCE_CONNECTIONS
# defaults to 2 * BALANCE_SLOTS = 16 concurrent streams, the number both
# engines' slots hold together:
#   * round_robin sends every other request to the slow engine.  With N
#     slots it completes at most N / 3T = 8.3 req/s, and half of the 16
#     clients' requests arrive faster than that (it is saturated as soon as
#     more than 4N/3 = 11 streams are open), so in steady state the fast
#     engine has about N/3 streams and the slow one the other 13: 8 running
#     and ~5 queued.  Expected latency on the slow engine: (C - N/3) * 3T / N
#     = 5T = 1.6 s instead of 3T = 0.96 s.
#   * least_conn / least_load can keep 8 streams on each engine: nobody
#     queues, the slow engine gets about a quarter of the requests, and p99
#     is the slow engine's bare service time 3T: about 40% below round
#     robin's.
# Fewer connections (<= 11) would not saturate the slow engine under round
# robin; many more (> 2N) would make every policy queue.  In the uncapped
# fleet the same 16 connections only change the share each engine gets.
#
# Runs on 127.0.0.1 only, on ports picked at random, and stops everything
# it started when it exits (Ctrl-C included).  About 3 minutes by default.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
MODULE=${1:-$ROOT/build/ngx_http_llm_router_module.so}
export PATH=$PATH:/usr/sbin:/sbin
NGINX=${NGINX:-$(command -v nginx || true)}
WRK=${WRK:-$(command -v wrk || true)}
PYTHON=${PYTHON:-python3}

DURATION=${BALANCE_DURATION:-20}       # seconds measured per policy
WARMUP=${BALANCE_WARMUP:-2}            # seconds of warm-up per policy
CONNECTIONS=${BALANCE_CONNECTIONS:-16} # concurrent streams (wrk -c)
TOKENS=${BALANCE_TOKENS:-32}           # tokens per streamed answer
TOKEN_MS=${BALANCE_TOKEN_MS:-10}       # per token, fast engine
SLOW_FACTOR=${BALANCE_SLOW_FACTOR:-3}  # slow engine: this many times slower
SLOTS=${BALANCE_SLOTS:-8}              # generation slots per capped engine
SCRAPE=${BALANCE_SCRAPE:-200ms}        # llm_scrape interval (least_load)
WORKERS=${BALANCE_WORKERS:-2}          # nginx worker_processes
SCENARIOS=${BALANCE_SCENARIOS:-uncapped capped}
POLICIES=${BALANCE_POLICIES:-round_robin least_conn least_load}
MAX_ERRORS=${BALANCE_MAX_ERRORS:-5}    # tolerated non-2xx + socket errors
STRICT=${BALANCE_STRICT:-0}            # 1: exit 3 if the capped target is missed
OUT=${BALANCE_OUT:-$BENCH/balance-results.md}
KEEP=${BALANCE_KEEP:-0}                # 1: keep the temporary directory

TARGET_CUT=30                          # least_load p99 vs round_robin, %

say() { printf 'balance: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# -- arguments and tools --------------------------------------------------

[ -f "$MODULE" ] || die "no module at $MODULE (run ./build.sh first)"
MODULE=$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE")
[ -n "$NGINX" ] && [ -x "$NGINX" ] || die "nginx not found (set NGINX=)"
[ -n "$WRK" ] || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

for v in DURATION WARMUP CONNECTIONS TOKENS SLOTS WORKERS MAX_ERRORS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "BALANCE_$v must be an integer: ${!v}"
done
for v in TOKEN_MS SLOW_FACTOR; do
    [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        die "BALANCE_$v must be a number: ${!v}"
done
[[ $SCRAPE =~ ^[0-9]+(ms|s)$ ]] || die "BALANCE_SCRAPE: e.g. 200ms or 1s"
[ "$DURATION" -ge 2 ] && [ "$DURATION" -le 120 ] ||
    die "BALANCE_DURATION must be 2..120"
[ "$CONNECTIONS" -ge 1 ] && [ "$SLOTS" -ge 1 ] && [ "$WORKERS" -ge 1 ] &&
    [ "$TOKENS" -ge 1 ] || die "counts must be at least 1"
for s in $SCENARIOS; do
    case $s in uncapped|capped) ;;
        *) die "unknown scenario \"$s\" (uncapped capped)" ;; esac
done
for p in $POLICIES; do
    case $p in round_robin|least_conn|least_load|random_two) ;;
        *) die "unknown policy \"$p\"" ;; esac
done
[[ " $POLICIES " == *" round_robin "* ]] ||
    die "BALANCE_POLICIES must include round_robin (the reference)"

# -- cleanup: everything started here is stopped on exit --------------------

WORK=$(mktemp -d /tmp/llm-balance.XXXXXX)
chmod 755 "$WORK"                     # nginx workers run as nobody
pids=()

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # wrk and samplers first (last started), then nginx and the engines
    for (( i = ${#pids[@]} - 1; i >= 0; i-- )); do stop_pid "${pids[i]}"; done
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

forget_pid() {   # drop a finished pid from the cleanup list
    local p keep=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# nginx maps the module file: a rebuild that rewrites it in place would
# crash the running workers, so the bench loads a private copy.
cp "$MODULE" "$WORK/ngx_http_llm_router_module.so"
MODULE_ID="$(basename "$MODULE") sha256 $(sha256sum "$WORK/ngx_http_llm_router_module.so" | cut -c1-12)"
MODULE=$WORK/ngx_http_llm_router_module.so

# -- ports, engines, configuration -------------------------------------------

read -r NGINX_PORT P_UNCAPPED_FAST P_UNCAPPED_SLOW P_CAPPED_FAST \
    P_CAPPED_SLOW < <("$PYTHON" - <<'PY'
import socket
socks = []
for _ in range(5):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
declare -A PORT=(
    [uncapped-fast]=$P_UNCAPPED_FAST [uncapped-slow]=$P_UNCAPPED_SLOW
    [capped-fast]=$P_CAPPED_FAST [capped-slow]=$P_CAPPED_SLOW
)

start_engine() {   # scenario, fast|slow
    local s=$1 kind=$2 name=$1-$2 cmd factor=1
    [ "$kind" = slow ] && factor=$SLOW_FACTOR
    if [ "$s" = capped ]; then
        cmd=("$PYTHON" "$BENCH/capped_engine.py" --max-running "$SLOTS")
    else
        cmd=("$PYTHON" "$ROOT/mock/mock_engine.py")
    fi
    "${cmd[@]}" --listen "127.0.0.1:${PORT[$name]}=$name" \
        --model bench-balance --tokens "$TOKENS" --token-ms "$TOKEN_MS" \
        --slow-factor "$factor" \
        > "$WORK/$name.out" 2> "$WORK/$name.err" &
    pids+=($!)
    ENGINE_PID[$name]=$!
}

declare -A ENGINE_PID
for s in $SCENARIOS; do
    start_engine "$s" fast
    start_engine "$s" slow
done
for s in $SCENARIOS; do
    for kind in fast slow; do
        name=$s-$kind
        for i in $(seq 100); do
            grep -qx ready "$WORK/$name.out" 2>/dev/null && break
            running "${ENGINE_PID[$name]}" || break
            sleep 0.1
        done
        grep -qx ready "$WORK/$name.out" 2>/dev/null || {
            cat "$WORK/$name.err" >&2
            die "the $name engine did not start"
        }
    done
done

# one nginx, one upstream per scenario and policy (same two engines, same
# keepalive): state, in-flight counts and scrapes are per upstream, so the
# runs do not see each other; a model name picks the upstream.
mkdir -p "$WORK/nginx/conf" "$WORK/nginx/logs"
{
    cat <<EOF
load_module  $MODULE;

worker_processes  $WORKERS;
daemon            off;
master_process    on;
pid               logs/nginx.pid;
error_log         logs/error.log warn;

events {
    worker_connections  4096;
}

http {
    access_log          off;
    keepalive_requests  1000000;
    keepalive_timeout   75s;

    client_body_temp_path  client_body_temp;
    proxy_temp_path        proxy_temp;
    fastcgi_temp_path      fastcgi_temp;
    uwsgi_temp_path        uwsgi_temp;
    scgi_temp_path         scgi_temp;

    llm_router_zone  llm 1m;

EOF
    for s in $SCENARIOS; do
        for p in $POLICIES; do
            cat <<EOF
    upstream ${s}_$p {
        llm_balance  $p;
        llm_engine   vllm;
EOF
            [ "$p" = least_load ] &&
                echo "        llm_scrape   interval=$SCRAPE;"
            cat <<EOF
        server       127.0.0.1:${PORT[$s-fast]};
        server       127.0.0.1:${PORT[$s-slow]};
        keepalive    64;
        keepalive_requests  1000000;
    }
    llm_model bal-$s-$p { upstream ${s}_$p; }

EOF
        done
    done
    cat <<EOF
    server {
        listen  127.0.0.1:$NGINX_PORT backlog=4096;

        location /v1/ {
            llm_router          on;
            proxy_pass          http://\$llm_upstream;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_buffering     off;
            proxy_read_timeout  120s;
        }
        location = /llm/status { llm_router_status; }
    }
}
EOF
} > "$WORK/nginx/conf/nginx.conf"

"$NGINX" -t -q -p "$WORK/nginx/" -c conf/nginx.conf -e logs/error.log \
    2> "$WORK/nginx/logs/test.log" || {
    cat "$WORK/nginx/logs/test.log" >&2
    die "nginx -t failed ($WORK/nginx/conf/nginx.conf)"
}
"$NGINX" -p "$WORK/nginx/" -c conf/nginx.conf -e logs/error.log \
    2>> "$WORK/nginx/logs/stderr.log" &
pids+=($!)
NGINX_PID=$!

for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null && break
    running "$NGINX_PID" || break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null || {
    tail -n 20 "$WORK/nginx/logs/error.log" >&2
    die "nginx does not listen on 127.0.0.1:$NGINX_PORT"
}

NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's|.*nginx/|nginx/|')
TREE=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$ROOT" status --porcelain -- ngx_llm_router_module config \
        2>/dev/null)" ] && TREE="$TREE + uncommitted module changes"
CORES=$(nproc)
say "$NGINX_VERSION, $CORES cores, $WORKERS nginx workers; files in $WORK"

URL=http://127.0.0.1:$NGINX_PORT/v1/chat/completions
mkdir -p "$WORK/bodies" "$WORK/check" "$WORK/wrk"
for s in $SCENARIOS; do
    for p in $POLICIES; do
        "$PYTHON" "$BENCH/gen_body.py" 1024 "bal-$s-$p" \
            "$WORK/bodies/$s-$p.json" --stream
    done
done

# -- sanity checks: every model streams all its tokens from its fleet --------

for s in $SCENARIOS; do
    for p in $POLICIES; do
        seen=
        for k in 1 2; do
            out=$WORK/check/$s-$p-$k
            code=$(curl -sS -m 20 -N -o "$out.body" -D "$out.head" \
                -w '%{http_code}' -H 'Content-Type: application/json' \
                --data-binary "@$WORK/bodies/$s-$p.json" "$URL") || true
            [ "$code" = 200 ] || {
                cat "$out.head" "$out.body" >&2 2>/dev/null || true
                die "$s $p: HTTP $code"
            }
            n=$(grep -c '"delta":{"content"' "$out.body" || true)
            [ "$n" = "$TOKENS" ] ||
                die "$s $p: $n token events, not $TOKENS"
            grep -q '^data: \[DONE\]' "$out.body" || die "$s $p: no [DONE]"
            inst=$(tr -d '\r' < "$out.head" |
                   awk -F': ' 'tolower($1) == "x-mock-instance" { print $2 }')
            [[ $inst == "$s-fast" || $inst == "$s-slow" ]] ||
                die "$s $p: answered by \"$inst\", not the $s fleet"
            seen+=" $inst"
        done
        # idle engines: round robin alternates, the others break the tie
        # by round robin too, so two requests in a row meet both engines
        [[ $seen == *fast* && $seen == *slow* ]] ||
            say "note: $s $p: two requests in a row both went to$seen"
    done
done
say "check: every route streams $TOKENS tokens and [DONE] from its fleet"

# -- measurements ------------------------------------------------------------

ms() {   # wrk duration ("975.03ms", "1.02s", "850us") -> ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) printf "%.3f", substr(v, 1, length(v) - 2) / 1000
        else if (v ~ /ms$/) printf "%.3f", substr(v, 1, length(v) - 2)
        else if (v ~ /m$/) printf "%.3f", substr(v, 1, length(v) - 1) * 60000
        else if (v ~ /s$/) printf "%.3f", substr(v, 1, length(v) - 1) * 1000
        else exit 1 }'
}

parse_wrk() {   # file -> "req/s mean p50 p90 p99 max errors requests"
    local avg max p50 p90 p99 rps n err
    avg=$(awk '$1 == "Latency" { print $2; exit }' "$1")
    max=$(awk '$1 == "Latency" { print $4; exit }' "$1")
    p50=$(awk '$1 == "50%" { print $2 }' "$1")
    p90=$(awk '$1 == "90%" { print $2 }' "$1")
    p99=$(awk '$1 == "99%" { print $2 }' "$1")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$1")
    n=$(awk '/requests in/ { print $1 }' "$1")
    err=$(awk '/Non-2xx or 3xx/ { e += $NF }
               /Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 }
               END { print e + 0 }' "$1")
    [ -n "$avg" ] && [ -n "$p99" ] && [ -n "$rps" ] && [ -n "$n" ] ||
        return 1
    echo "$rps $(ms "$avg") $(ms "$p50") $(ms "$p90") $(ms "$p99")" \
         "$(ms "$max") $err $n"
}

engine_stat() {   # scenario-kind, field of /mock/stats (requests|in_flight)
    curl -sS -m 5 "http://127.0.0.1:${PORT[$1]}/mock/stats" |
        "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

drain() {   # scenario: wait until neither engine has a request (max 60 s)
    local i a b
    for i in $(seq 300); do
        a=$(engine_stat "$1-fast" in_flight)
        b=$(engine_stat "$1-slow" in_flight)
        [ "$a" = 0 ] && [ "$b" = 0 ] && return 0
        sleep 0.2
    done
    die "$1: the engines still have $a and $b requests after 60 s"
}

# every 0.5 s: each engine's own running/waiting gauges (its /metrics)
sampler() {   # scenario, output file, samples
    local s=$1 out=$2 n=$3 i f line kind
    for (( i = 0; i < n; i++ )); do
        line=
        for kind in fast slow; do
            f=$(curl -sS -m 2 "http://127.0.0.1:${PORT[$s-$kind]}/metrics" \
                2>/dev/null) || f=
            line+=" $(awk '/^vllm:num_requests_running/ { r = $NF }
                           /^vllm:num_requests_waiting/ { w = $NF }
                           END { printf "%g %g", r, w }' <<< "$f")"
        done
        echo "${line# }" >> "$out"
        sleep 0.5
    done
}

check_nginx() {
    if grep -q 'exited on signal' "$WORK/nginx/logs/error.log"; then
        grep -m 3 'exited on signal' "$WORK/nginx/logs/error.log" >&2
        die "an nginx worker crashed"
    fi
    running "$NGINX_PID" || die "nginx is gone"
}

run_wrk() {   # body, seconds, output
    local rc=0 pid
    BENCH_BODY=$1 timeout -k 5 "$(( $2 + 60 ))" "$WRK" -t1 \
        -c"$CONNECTIONS" -d"$2s" --timeout 60s --latency \
        -s "$BENCH/body.lua" "$URL" > "$3" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    [ "$rc" -eq 0 ] || { cat "$3" >&2; die "wrk failed (exit $rc)"; }
    check_nginx
}

status_fresh() {   # status JSON file, upstream -> "fresh peers/peers"
    "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for up in doc["upstreams"]:
    if up["name"] == sys.argv[2]:
        peers = up["peers"]
        fresh = sum(1 for p in peers
                    if p.get("metrics") and p["metrics"].get("stale") is False)
        print("%d/%d" % (fresh, len(peers)))
        break
else:
    print("0/0")
PY
}

declare -A RES
RAW=()
est=0
for s in $SCENARIOS; do for p in $POLICIES; do
    est=$(( est + WARMUP + DURATION + 4 )); done; done
say "measuring: $SCENARIOS x $POLICIES; wrk -t1 -c$CONNECTIONS," \
    "${DURATION}s each after ${WARMUP}s warm-up (about" \
    "$(( est / 60 ))m$(( est % 60 ))s)"

for s in $SCENARIOS; do
    for p in $POLICIES; do
        body=$WORK/bodies/$s-$p.json
        drain "$s"
        if [ "$WARMUP" -gt 0 ]; then
            run_wrk "$body" "$WARMUP" "$WORK/wrk/$s-$p-warm"
            drain "$s"
        fi
        f0=$(engine_stat "$s-fast" requests)
        s0=$(engine_stat "$s-slow" requests)

        samples=$WORK/wrk/$s-$p.samples
        : > "$samples"
        sampler "$s" "$samples" $(( DURATION * 2 - 1 )) &
        pids+=($!)
        sampler_pid=$!
        if [ "$p" = least_load ]; then
            # the scraped metrics must be fresh, or least_load is least_conn
            ( sleep $(( DURATION / 2 ))
              curl -sS -m 5 "http://127.0.0.1:$NGINX_PORT/llm/status" \
                  > "$WORK/wrk/$s-$p.status" 2>/dev/null || true ) &
            pids+=($!)
            status_pid=$!
        fi

        f=$WORK/wrk/$s-$p
        run_wrk "$body" "$DURATION" "$f"

        stop_pid "$sampler_pid"
        forget_pid "$sampler_pid"
        fresh=-
        if [ "$p" = least_load ]; then
            stop_pid "$status_pid"
            forget_pid "$status_pid"
            [ -s "$WORK/wrk/$s-$p.status" ] &&
                fresh=$(status_fresh "$WORK/wrk/$s-$p.status" "${s}_$p")
        fi
        f1=$(engine_stat "$s-fast" requests)
        s1=$(engine_stat "$s-slow" requests)

        read -r rps mean p50 p90 p99 max err n < <(parse_wrk "$f") ||
            { cat "$f" >&2; die "cannot parse the wrk output"; }
        [ "$err" -le "$MAX_ERRORS" ] || {
            cat "$f" >&2
            die "$s $p: $err non-2xx responses or socket errors" \
                "(BALANCE_MAX_ERRORS=$MAX_ERRORS)"
        }
        [ "$n" -gt 0 ] || die "$s $p: no request completed"

        # share of the requests the slow engine got; mean streams on each
        # engine (running + waiting) and mean queue on the slow one
        slow_share=$(awk -v f=$(( f1 - f0 )) -v s=$(( s1 - s0 )) \
            'BEGIN { printf "%.0f", (f + s) ? s * 100 / (f + s) : 0 }')
        read -r on_fast on_slow queue_slow < <(awk '
            NF == 4 { n++; a += $1 + $2; b += $3 + $4; q += $4 }
            END { if (n) printf "%.1f %.1f %.1f\n", a / n, b / n, q / n
                  else print "- - -" }' "$samples")

        for k in rps mean p50 p90 p99 max err n slow_share on_fast on_slow \
                 queue_slow fresh; do
            RES[$s-$p-$k]=${!k}
        done
        RAW+=("$s $p: $n requests, $rps req/s, mean $mean ms, p50 $p50, p90 $p90, p99 $p99, max $max ms, $err errors; slow engine got $(( s1 - s0 )) of $(( f1 - f0 + s1 - s0 )) requests ($slow_share%); streams on fast/slow $on_fast/$on_slow, slow queue $queue_slow; least_load metrics fresh $fresh")
        say "${RAW[-1]}"
    done
done

check_nginx
bad=$(grep -cE '\[(error|crit|alert|emerg)\]' "$WORK/nginx/logs/error.log" ||
      true)
log_note=
[ "$bad" -gt 0 ] && log_note="nginx error.log: $bad lines at [error] or worse, e.g. \`$(
    grep -m1 -E '\[(error|crit|alert|emerg)\]' "$WORK/nginx/logs/error.log" |
    sed 's/^[^]]*\] [0-9#]*: //' | cut -c1-160)\` (runs end by closing connections mid-stream)"

# -- report --------------------------------------------------------------------

fmt_ms() { awk -v v="$1" 'BEGIN { if (v < 100) printf "%.1f", v;
                                  else printf "%.0f", v }'; }
cut_pct() {   # value, reference -> "-35%" (negative: lower than reference)
    awk -v a="$1" -v b="$2" 'BEGIN { v = b ? (a - b) * 100 / b : 0
        printf "%+d%%", v < 0 ? int(v - 0.5) : int(v + 0.5) }'
}
reduction() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b ? (b - a) * 100 / b : 0 }'; }

T_FAST=$(awk -v t="$TOKENS" -v m="$TOKEN_MS" 'BEGIN { printf "%.0f", t * m }')
T_SLOW=$(awk -v t="$T_FAST" -v f="$SLOW_FACTOR" 'BEGIN { printf "%.0f", t * f }')
declare -A TITLE=(
    [uncapped]="Uncapped engines (mock/mock_engine.py as it is: every request runs at once)"
    [capped]="Capped engines ($SLOTS generation slots each, FIFO queue behind them: bench/capped_engine.py)"
)
missed=0
summary=()
{
    echo "# ngx_llm_router balancing benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC') · $NGINX_VERSION ·" \
         "$CORES cores ($(awk -F': ' '/model name/ { print $2; exit }' \
            /proc/cpuinfo 2>/dev/null || echo unknown CPU)) ·" \
         "worker_processes $WORKERS · $MODULE_ID, tree $TREE"
    echo
    echo "Two engines behind one upstream: fast ($TOKENS tokens ×" \
         "$TOKEN_MS ms = $T_FAST ms per answer) and slow (×$SLOW_FACTOR:" \
         "$T_SLOW ms). Closed loop: \`wrk -t1 -c$CONNECTIONS\`, streaming" \
         "chat requests (\`\"stream\":true\`, 1 KB), latency to the last" \
         "byte, ${DURATION} s per policy after ${WARMUP} s of warm-up," \
         "one run each. least_load scrapes \`/metrics\` every $SCRAPE."
    for s in $SCENARIOS; do
        echo
        echo "## ${TITLE[$s]}"
        echo
        echo "| policy | req/s | mean | p50 | p99 | max | to slow engine |" \
             "streams fast / slow (slow queued) | p99 vs round_robin |" \
             "mean vs round_robin |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        rp99=${RES[$s-round_robin-p99]}
        rmean=${RES[$s-round_robin-mean]}
        for p in $POLICIES; do
            if [ "$p" = round_robin ]; then vs99=—; vsmean=—
            else
                vs99=$(cut_pct "${RES[$s-$p-p99]}" "$rp99")
                vsmean=$(cut_pct "${RES[$s-$p-mean]}" "$rmean")
            fi
            echo "| $p | $(awk -v v="${RES[$s-$p-rps]}" 'BEGIN { printf "%.1f", v }') |" \
                 "$(fmt_ms "${RES[$s-$p-mean]}") ms |" \
                 "$(fmt_ms "${RES[$s-$p-p50]}") ms |" \
                 "$(fmt_ms "${RES[$s-$p-p99]}") ms |" \
                 "$(fmt_ms "${RES[$s-$p-max]}") ms |" \
                 "${RES[$s-$p-slow_share]}% |" \
                 "${RES[$s-$p-on_fast]} / ${RES[$s-$p-on_slow]}" \
                 "(${RES[$s-$p-queue_slow]}) | $vs99 | $vsmean |"
        done
        echo
        for p in $POLICIES; do
            [ "$p" = round_robin ] && continue
            cut=$(reduction "${RES[$s-$p-p99]}" "$rp99")
            line="$p against round_robin: p99 $(cut_pct "${RES[$s-$p-p99]}" "$rp99"), mean $(cut_pct "${RES[$s-$p-mean]}" "$rmean")"
            if [ "$p" = least_load ]; then
                if [ "$cut" -ge "$TARGET_CUT" ]; then
                    line+=" (target: p99 at least $TARGET_CUT% lower; met)"
                else
                    line+=" (target: p99 at least $TARGET_CUT% lower; **missed**)"
                    if [ "$s" = capped ]; then missed=1; fi
                fi
                line+="; its scraped metrics were fresh for ${RES[$s-$p-fresh]} peers mid-run"
            fi
            echo "- $line."
            summary+=("$s: $line")
        done
        if [ "$s" = uncapped ]; then
            echo "- An uncapped mock answers in the same time whatever its" \
                 "load, so p99 is the slow engine's service time" \
                 "(~$T_SLOW ms) for every policy that sends it more than 1%" \
                 "of the requests; the policies differ in how many requests" \
                 "get that time (the mean), not in p99."
        fi
    done
    echo
    echo "\"to slow engine\": share of the requests the slow engine" \
         "received (\`/mock/stats\`). \"streams\": mean requests on each" \
         "engine (running + queued, sampled from each engine's" \
         "\`/metrics\` every 0.5 s), the slow engine's queue in brackets." \
         "One run per policy: p99 rests on the slowest 1% of a few hundred" \
         "requests, so repeat the run before trusting a difference of a" \
         "few percent."
    [ -n "$log_note" ] && { echo; echo "- $log_note"; }
    echo
    echo "<details><summary>Runs</summary>"
    echo
    for l in "${RAW[@]}"; do echo "- $l"; done
    echo
    echo "</details>"
} > "$WORK/balance-results.md"

cp "$WORK/balance-results.md" "$OUT"
echo
cat "$OUT"
echo
say "written to $OUT"

if [ "$missed" = 1 ] && [ "$STRICT" = 1 ]; then
    say "least_load missed the p99 target on the capped fleet (BALANCE_STRICT=1)"
    exit 3
fi
