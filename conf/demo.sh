#!/usr/bin/env bash
#
# Starts the demo: mock engines and nginx with conf/demo.conf on
# 127.0.0.1:8080.  Called by `./build.sh run`; Ctrl-C stops everything.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODULE=${1:-$ROOT/build/ngx_http_llm_router_module.so}
PREFIX=$ROOT/build/demo
NGINX=${NGINX:-$(PATH=$PATH:/usr/sbin command -v nginx)}
pids=()

cleanup() {
    trap - INT TERM EXIT
    echo
    echo "demo: stopping"
    [ -f "$PREFIX/logs/nginx.pid" ] &&
        kill -QUIT "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

mkdir -p "$PREFIX/logs" "$PREFIX/conf"
cp "$ROOT/conf/demo.conf" "$PREFIX/conf/nginx.conf"

python3 "$ROOT/mock/mock_engine.py" \
    --listen 127.0.0.1:9101=vllm-1 --listen 127.0.0.1:9102=vllm-2 \
    --model meta-llama/Meta-Llama-3-8B-Instruct --tokens 12 \
    > "$PREFIX/logs/mock-vllm.log" 2>&1 &
pids+=($!)
python3 "$ROOT/mock/mock_engine.py" \
    --listen 127.0.0.1:9201=llamacpp-1 --model qwen-7b \
    --tokens 20 --pace-ms 150 \
    > "$PREFIX/logs/mock-llamacpp.log" 2>&1 &
pids+=($!)

for port in 9101 9102 9201; do
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

"$NGINX" -p "$PREFIX" -c conf/nginx.conf -t -q \
    -g "load_module $MODULE;"
"$NGINX" -p "$PREFIX" -c conf/nginx.conf \
    -g "load_module $MODULE; daemon off;" &
pids+=($!)
sleep 0.5

cat <<'TXT'

ngx_llm_router demo on http://127.0.0.1:8080 (Ctrl-C stops it)

  # models the router serves
  curl -s http://127.0.0.1:8080/v1/models

  # routed to the vLLM pool; the engine sees the target name, the client
  # gets "llama3-8b" back
  curl -s http://127.0.0.1:8080/v1/chat/completions \
    -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Hello"}],"model":"llama3-8b"}'

  # streamed from the llama.cpp pool, token by token
  curl -sN http://127.0.0.1:8080/v1/chat/completions \
    -d '{"model":"qwen-7b","stream":true,"messages":[{"role":"user","content":"Hi"}]}'

  # an alias, and what the engine received (the mock echoes the body)
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'X-Mock-Echo: 1' \
    -d '{"model":"gpt-4o-mini","max_tokens":99999,"logit_bias":{}}'

  # OpenAI-shaped errors
  curl -s http://127.0.0.1:8080/v1/chat/completions -d '{"model":"nope"}'
  curl -s http://127.0.0.1:8080/v1/chat/completions -d '{"model":'

  # peers, health checks, requests in flight, engine metrics
  # (open http://127.0.0.1:8080/llm/status in a browser for the HTML view)
  curl -s http://127.0.0.1:8080/llm/status

  # Prometheus: requests, latency and time-to-first-token histograms,
  # tokens, stream aborts and failures per model; health and load per peer
  curl -s http://127.0.0.1:8080/metrics

  # make both vLLM engines report "loading": llama3-8b falls back to qwen-7b
  for p in 9101 9102; do curl -s 127.0.0.1:$p/mock/control \
      -d '{"health_status":503}'; done; sleep 3
  curl -s http://127.0.0.1:8080/v1/chat/completions -d '{"model":"llama3-8b"}'

Logs: build/demo/logs/ (access.log is one JSON line per request)
TXT

wait
