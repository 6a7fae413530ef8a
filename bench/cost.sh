#!/usr/bin/env bash
#
# Instructions per request, plain proxy_pass against the router, counted
# by callgrind: unlike req/s on a shared machine, the count is the same
# from run to run, so it shows what a change to the module costs.
#
#   bash bench/cost.sh [MODULE.so]      (./build.sh cost builds first)
#
# The router column is "proxy_pass http://llm_chosen;" to an llm_dispatch
# block, as bench/run.sh runs it; the next one is the same router with
# "proxy_pass http://$llm_upstream;".  The last ones add a trivial Lua
# request hook (bench/trivial_hook.lua) to the router.  As in bench/run.sh,
# each is a server of one front, asked for the same URI; the backend
# answers the bench's JSON chat completion (so the router restores its
# model name and reads its usage).  For each body size the front nginx (master_process
# off, under callgrind) serves N1 and then N2 requests on one keep-alive
# connection; the difference divided by N2 - N1 is the cost of one
# request, start-up and first-request effects cancelled.  Only user-space
# instructions of the nginx process count: the kernel's share of a request
# is not included.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=${1:-$ROOT/build/ngx_http_llm_router_module.so}
NGINX=${NGINX:-$(PATH=$PATH:/usr/sbin command -v nginx)}
N1=${COST_N1:-20}
N2=${COST_N2:-220}
SIZES=${COST_SIZES:-1024 16000 262144}
BASE_PORT=${COST_PORT:-18401}
WORK=$(mktemp -d /tmp/llm-cost.XXXXXX)

command -v valgrind >/dev/null ||
    { echo "cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ -f "$MODULE" ] || { echo "cost.sh: no module at $MODULE" >&2; exit 1; }

cleanup() {
    [ -f "$WORK/be/logs/nginx.pid" ] &&
        kill -QUIT "$(cat "$WORK/be/logs/nginx.pid")" 2>/dev/null || true
    [ -f "$WORK/fe/logs/nginx.pid" ] &&
        kill -QUIT "$(cat "$WORK/fe/logs/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/be/logs" "$WORK/fe/logs"
cp "$MODULE" "$WORK/module.so"

cat > "$WORK/be/nginx.conf" <<CONF
daemon on; master_process off; worker_processes 1;
error_log logs/error.log warn; pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/be; client_body_buffer_size 1m;
    client_max_body_size 2m;
    server {
        listen 127.0.0.1:$BASE_PORT;
        location / {
            default_type application/json;
            return 200 '$(sed -n "s/.*return 200 '\\(.*\\)';/\\1/p" \
                          "$ROOT/bench/backend.conf.in")';
        }
    }
}
CONF

# the same front as bench/front.conf.in, reduced to the two locations
cat > "$WORK/fe/nginx.conf" <<CONF
load_module $WORK/module.so;
daemon off; master_process off; worker_processes 1;
error_log logs/error.log warn; pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/fe; proxy_temp_path $WORK/fe;
    client_body_buffer_size 16k; client_max_body_size 2m;
    keepalive_requests 100000;
    upstream backend { server 127.0.0.1:$BASE_PORT; keepalive 8; }
    upstream llm_chosen { llm_dispatch; }
    llm_model bench-model {
        upstream backend;
        target   bench-target-model;
        set      temperature 0.7;
    }
    server {
        listen 127.0.0.1:$((BASE_PORT + 1));
        location /v1/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$((BASE_PORT + 2));
        location /v1/ {
            llm_router on;
            proxy_pass http://llm_chosen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$((BASE_PORT + 4));
        location /v1/ {
            llm_router on;
            proxy_pass http://\$llm_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:$((BASE_PORT + 3));
        location /v1/ {
            llm_router on;
            llm_hook $ROOT/bench/trivial_hook.lua;
            proxy_pass http://llm_chosen;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
CONF

cat > "$WORK/client.py" <<'PY'
import http.client, sys
port, path, body_file, n = sys.argv[1:5]
body = open(body_file, 'rb').read()
c = http.client.HTTPConnection('127.0.0.1', int(port))
for _ in range(int(n)):
    c.request('POST', path, body, {'Content-Type': 'application/json'})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{path}: status {r.status}")
PY

"$NGINX" -p "$WORK/be/" -c "$WORK/be/nginx.conf"

# instructions of a front that served n requests
count() {   # port body n
    local out=$WORK/cg.out
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$NGINX" -p "$WORK/fe/" -c "$WORK/fe/nginx.conf" >/dev/null 2>&1 &
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$((BASE_PORT + 1))) 2>/dev/null && break
        sleep 0.1
    done
    python3 "$WORK/client.py" "$1" /v1/chat/completions "$2" "$3"
    kill -QUIT "$(cat "$WORK/fe/logs/nginx.pid")"
    wait
    callgrind_annotate "$out" 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

per_request() {   # port body
    local a b
    a=$(count "$1" "$2" "$N1")
    b=$(count "$1" "$2" "$N2")
    echo $(( (b - a) / (N2 - N1) ))
}

printf '| body | plain instr/req | router instr/req | router extra |'
printf ' router, $llm_upstream | router + trivial Lua hook | hook extra |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'

for size in $SIZES; do
    python3 "$ROOT/bench/gen_body.py" "$size" bench-model "$WORK/body"
    plain=$(per_request $((BASE_PORT + 1)) "$WORK/body")
    router=$(per_request $((BASE_PORT + 2)) "$WORK/body")
    hook=$(per_request $((BASE_PORT + 3)) "$WORK/body")
    variable=$(per_request $((BASE_PORT + 4)) "$WORK/body")
    printf '| %s | %s | %s | +%s (+%s%%) | %s (+%s) | %s | +%s |\n' \
        "$size" "$plain" "$router" $((router - plain)) \
        $(( (router - plain) * 100 / plain )) "$variable" \
        $((variable - plain)) "$hook" $((hook - router))
done
