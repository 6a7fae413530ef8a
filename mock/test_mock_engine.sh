#!/usr/bin/env bash
# Quick self-check of mock/mock_engine.py using curl.
# Starts the mock on two ports, exercises the endpoints and controls,
# stops it with SIGTERM, prints "N passed, N failed", exits 1 on failure.
set -u

HERE="$(cd "$(dirname "$0")" && pwd)"
PORT_A="${MOCK_TEST_PORT_A:-18081}"
PORT_B="${MOCK_TEST_PORT_B:-18082}"
A="http://127.0.0.1:$PORT_A"
B="http://127.0.0.1:$PORT_B"
TMP="$(mktemp -d)"
PASS=0
FAIL=0
MOCK_PID=""

cleanup() {
    if [ -n "$MOCK_PID" ] && kill -0 "$MOCK_PID" 2>/dev/null; then
        kill "$MOCK_PID" 2>/dev/null
        wait "$MOCK_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && echo "       $2"; }

# check NAME HAYSTACK NEEDLE: passes when the fixed string is present
check() {
    if printf '%s' "$2" | grep -qF -- "$3"; then ok "$1"
    else not_ok "$1" "expected '$3' in: $(printf '%s' "$2" | head -c 400)"; fi
}

# check_not NAME HAYSTACK NEEDLE: passes when the fixed string is absent
check_not() {
    if printf '%s' "$2" | grep -qF -- "$3"; then
        not_ok "$1" "unexpected '$3' in: $(printf '%s' "$2" | head -c 400)"
    else ok "$1"; fi
}

check_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "got '$2', want '$3'"; fi
}

CHAT='{"model":"m-x","messages":[{"role":"user","content":"hello world"}]}'
JSON='Content-Type: application/json'

# --- start -----------------------------------------------------------------
python3 "$HERE/mock_engine.py" --listen "127.0.0.1:$PORT_A=a" \
    --listen "127.0.0.1:$PORT_B=b" --model m1 --model m2 \
    --pidfile "$TMP/pid" >"$TMP/out" 2>"$TMP/err" &
MOCK_PID=$!
for _ in $(seq 1 100); do
    grep -q '^ready$' "$TMP/out" 2>/dev/null && break
    sleep 0.05
done
if grep -q '^ready$' "$TMP/out"; then ok "prints ready"; else
    not_ok "prints ready" "$(cat "$TMP/err")"; echo "0 passed, 1 failed"; exit 1
fi
check_eq "pidfile" "$(cat "$TMP/pid")" "$MOCK_PID"

# --- instance headers --------------------------------------------------------
check "instance a header" "$(curl -si "$A/health")" "X-Mock-Instance: a"
check "instance b header" "$(curl -si "$B/health")" "X-Mock-Instance: b"
check "health body" "$(curl -s "$A/health")" '{"status":"ok"}'

# --- non-stream ---------------------------------------------------------------
out="$(curl -si -H "$JSON" -d "$CHAT" "$A/v1/chat/completions")"
check "chat usage" "$out" '"usage":{"prompt_tokens":3,"completion_tokens":8,"total_tokens":11}'
check "chat content" "$out" '"content":"tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "'
check "chat model echoed" "$out" '"model":"m-x"'
check "chat id" "$out" '"id":"chatcmpl-a-'
check "chat fingerprint" "$out" '"system_fingerprint":"a"'
check "chat finish stop" "$out" '"finish_reason":"stop"'
check "request length header" "$out" "X-Mock-Request-Length: ${#CHAT}"
check "content-length header" "$out" "Content-Length: "

out="$(curl -s -d '{"model":"m","messages":[],"max_tokens":3}' "$A/v1/chat/completions")"
check "max_tokens -> length" "$out" '"finish_reason":"length"'
check "max_tokens -> 3 tokens" "$out" '"completion_tokens":3'

out="$(curl -s -H 'X-Mock-Tokens: 2' -d '{"model":"m","prompt":"abcdefgh"}' "$B/v1/completions")"
check "completions" "$out" '"object":"text_completion"'
check "completions text" "$out" '"text":"tok0 tok1 "'
check "completions usage" "$out" '"prompt_tokens":3,"completion_tokens":2'
check "completions id" "$out" '"id":"cmpl-b-'

out="$(curl -s -d '{"model":"e","input":["a","b"]}' "$A/v1/embeddings")"
check "embeddings" "$out" '"index":1,"embedding":['
check "embeddings usage" "$out" '"usage":{"prompt_tokens":2,"total_tokens":2}'

# --- stream -------------------------------------------------------------------
out="$(curl -sN -d '{"model":"s","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
    "$A/v1/chat/completions")"
check_eq "stream ends with [DONE]" "$(printf '%s' "$out" | grep -v '^$' | tail -n 1)" "data: [DONE]"
check_eq "stream token events" "$(printf '%s' "$out" | grep -c '"content":"tok')" "8"
check "stream role chunk" "$out" '"delta":{"role":"assistant","content":""}'
check "stream finish chunk" "$out" '"delta":{},"finish_reason":"stop"'
check "stream chunk object" "$out" '"object":"chat.completion.chunk"'
check_not "stream no usage by default" "$out" '"usage"'

out="$(curl -siN -d '{"model":"s","stream":true,"stream_options":{"include_usage":true},"messages":[]}' \
    "$A/v1/chat/completions")"
check "stream usage event" "$out" '"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":8'
check "stream chunked" "$out" "Transfer-Encoding: chunked"
check "stream content type" "$out" "Content-Type: text/event-stream"

out="$(curl -sN -H 'X-Mock-Stream-Split: 1' -H 'X-Mock-Tokens: 3' \
    -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions")"
check_eq "split stream events" "$(printf '%s' "$out" | grep -c '^data: ')" "5"
check_eq "split stream ends [DONE]" "$(printf '%s' "$out" | grep -v '^$' | tail -n 1)" "data: [DONE]"

out="$(curl -sN --http1.0 -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions")"
check_eq "HTTP/1.0 stream ends [DONE]" "$(printf '%s' "$out" | grep -v '^$' | tail -n 1)" "data: [DONE]"

curl -sN -H 'X-Mock-Close-After: 2' -d '{"model":"s","stream":true,"messages":[]}' \
    "$A/v1/chat/completions" >"$TMP/cut" 2>/dev/null
rc=$?
[ "$rc" -ne 0 ] && ok "close-after: curl sees truncation (rc=$rc)" || not_ok "close-after: curl sees truncation"
check_eq "close-after: 2 token events" "$(grep -c '"content":"tok' "$TMP/cut")" "2"
check_not "close-after: no [DONE]" "$(cat "$TMP/cut")" "[DONE]"

# --- Responses and Messages streams (no [DONE]) -----------------------------
out="$(curl -sN -H 'X-Mock-Tokens: 3' -d '{"model":"r","stream":true,"input":"hi"}' "$A/v1/responses")"
check "responses: created first" "$(printf '%s' "$out" | head -n 1)" "event: response.created"
check_eq "responses: 3 text deltas" "$(printf '%s' "$out" | grep -c '"type":"response.output_text.delta"')" "3"
check_eq "responses: ends with completed" "$(printf '%s' "$out" | grep '^event: ' | tail -n 1)" "event: response.completed"
check "responses: usage" "$out" '"usage":{"input_tokens":1,"output_tokens":3,"total_tokens":4}'
check_not "responses: no [DONE]" "$out" "[DONE]"
out="$(curl -sN -H 'X-Mock-Close-After: 1' -d '{"model":"r","stream":true,"input":"hi"}' "$A/v1/responses" 2>/dev/null)"
check_eq "responses close-after: 1 delta" "$(printf '%s' "$out" | grep -c 'output_text.delta"')" "1"
check_not "responses close-after: no completed" "$out" "response.completed"
out="$(curl -s -d '{"model":"r","input":"hi"}' "$A/v1/responses")"
check "responses: non-stream" "$out" '"object":"response","created_at"'
out="$(curl -sN -H 'X-Mock-Tokens: 2' -d '{"model":"a","stream":true,"messages":[{"role":"user","content":"hi"}]}' "$A/v1/messages")"
check "messages: message_start first" "$(printf '%s' "$out" | head -n 1)" "event: message_start"
check_eq "messages: 2 text deltas" "$(printf '%s' "$out" | grep -c '"type":"text_delta"')" "2"
check_eq "messages: ends with message_stop" "$(printf '%s' "$out" | grep -v '^$' | tail -n 1)" 'data: {"type":"message_stop"}'
check_not "messages: no [DONE]" "$out" "[DONE]"
out="$(curl -s -d '{"model":"a","messages":[]}' "$A/v1/messages")"
check "messages: non-stream" "$out" '"type":"message","role":"assistant"'
out="$(curl -sN -H 'X-Mock-Spaced: 1' -H 'X-Mock-Tokens: 1' -d '{"model":"s","stream":true,"messages":[]}' "$A/v1/chat/completions")"
check "spaced: events with Python's separators" "$out" '"delta": {"content": "tok0 "}'

curl -s -H 'X-Mock-Close-After: 1' -d "$CHAT" "$A/v1/chat/completions" >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ] && ok "close-after non-stream truncated (rc=$rc)" || not_ok "close-after non-stream truncated"

# stall: the connection stays open after N token events (curl times out, 28)
curl -sN --max-time 1 -H 'X-Mock-Stall-After: 3' \
    -d '{"model":"s","stream":true,"messages":[]}' "$A/v1/chat/completions" >"$TMP/stall" 2>/dev/null
check_eq "stall-after: held open, client times out" "$?" "28"
check_eq "stall-after: 3 token events" "$(grep -c '"content":"tok' "$TMP/stall")" "3"
check "stall-after: role event sent" "$(cat "$TMP/stall")" '"delta":{"role":"assistant","content":""}'
check_not "stall-after: no finish event" "$(cat "$TMP/stall")" '"finish_reason":"stop"'
check_not "stall-after: no [DONE]" "$(cat "$TMP/stall")" "[DONE]"
sleep 0.2
check "stall-after: released when client closes" "$(curl -s "$A/mock/stats")" '"in_flight":0'
curl -sN --max-time 1 -H 'X-Mock-Stall-After: 2' -H 'X-Mock-Close-After: 4' \
    -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions" >"$TMP/stall" 2>/dev/null
check_eq "stall-after < close-after: stalls" "$?" "28"
check_eq "stall-after < close-after: 2 token events" "$(grep -c '"text":"tok' "$TMP/stall")" "2"

# CRLF: every line ends "\r\n", no bare "\n\n" (11 events: role, 8, finish, [DONE])
curl -sN -H 'X-Mock-Sse-Crlf: 1' -d '{"model":"s","stream":true,"messages":[]}' \
    "$A/v1/chat/completions" >"$TMP/crlf"
check_eq "sse-crlf: events end \\r\\n\\r\\n" "$(grep -cx $'\r' "$TMP/crlf")" "11"
check_eq "sse-crlf: no bare \\n line ends" "$(grep -vc $'\r$' "$TMP/crlf")" "0"
check_eq "sse-crlf: no bare \\n\\n" "$(grep -c '^$' "$TMP/crlf")" "0"
check_eq "sse-crlf: ends with [DONE]" "$(tr -d '\r' <"$TMP/crlf" | grep -v '^$' | tail -n 1)" "data: [DONE]"

# heartbeat: ": ping" alternates with data events (3 tokens, finish, [DONE])
hb_order() { grep -v '^$' | awk 'NR % 2 == 1 && $0 != ": ping" { bad = 1 }
    NR % 2 == 0 && !/^data: / { bad = 1 } END { print bad ? "bad order" : NR }'; }
out="$(curl -sN -H 'X-Mock-Heartbeat: 1' -H 'X-Mock-Tokens: 3' \
    -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions")"
check_eq "heartbeat: ping before each data event" "$(printf '%s\n' "$out" | hb_order)" "10"
check_eq "heartbeat: ends with [DONE]" "$(printf '%s' "$out" | grep -v '^$' | tail -n 1)" "data: [DONE]"
curl -sN -H 'X-Mock-Heartbeat: 1' -H 'X-Mock-Sse-Crlf: 1' -H 'X-Mock-Tokens: 3' \
    -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions" >"$TMP/hb"
check_eq "heartbeat + crlf: order" "$(tr -d '\r' <"$TMP/hb" | hb_order)" "10"
check_eq "heartbeat + crlf: pings end \\r\\n\\r\\n" "$(grep -A1 -x $': ping\r' "$TMP/hb" | grep -cx $'\r')" "5"
check_eq "heartbeat + crlf: no bare \\n" "$(grep -vc $'\r$' "$TMP/hb")" "0"

# model override
out="$(curl -s -H 'X-Mock-Model: other' -d "$CHAT" "$A/v1/chat/completions")"
check "model override non-stream" "$out" '"model":"other"'
check_not "model override hides request model" "$out" '"model":"m-x"'
out="$(curl -sN -H 'X-Mock-Model: other' -d '{"model":"s","stream":true,"stream_options":{"include_usage":true},"messages":[]}' \
    "$A/v1/chat/completions")"
check_eq "model override every stream event" "$(printf '%s' "$out" | grep -c '^data: {.*"model":"other"')" \
    "$(printf '%s' "$out" | grep -c '^data: {')"
check_eq "model override stream events count" "$(printf '%s' "$out" | grep -c '^data: {')" "11"
check "model override embeddings" "$(curl -s -H 'X-Mock-Model: other' -d '{"model":"e","input":"a"}' \
    "$A/v1/embeddings")" '"model":"other"'
check_eq "empty X-Mock-Model 400" \
    "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Mock-Model;' -d "$CHAT" "$A/v1/chat/completions")" "400"

# usage always: usage event without stream_options, right before [DONE]
out="$(curl -sN -H 'X-Mock-Usage-Always: 1' -d '{"model":"s","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
    "$A/v1/chat/completions")"
check "usage-always: usage event" "$out" '"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":8,"total_tokens":9}'
check_eq "usage-always: one usage event" "$(printf '%s' "$out" | grep -c '"usage"')" "1"
check "usage-always: usage before [DONE]" "$(printf '%s' "$out" | grep -v '^$' | tail -n 2 | head -n 1)" '"choices":[],"usage":{'
out="$(curl -sN -H 'X-Mock-Usage-Always: 1' -H 'X-Mock-Tokens: 2' -d '{"model":"s","stream":true,"prompt":"abcdefgh"}' \
    "$A/v1/completions")"
check "usage-always: completions" "$out" '"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}'

# the same controls through the /mock/control fault dict (headers win)
curl -s -d '{"fault":{"Sse-Crlf":true,"heartbeat":1,"model":"fm","usage_always":"yes"}}' "$A/mock/control" >/dev/null
curl -sN -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions" >"$TMP/fault"
check_eq "fault sse_crlf" "$(grep -vc $'\r$' "$TMP/fault")" "0"
check_eq "fault heartbeat" "$(tr -d '\r' <"$TMP/fault" | hb_order)" "22"
check "fault model" "$(cat "$TMP/fault")" '"model":"fm"'
check "fault usage_always" "$(cat "$TMP/fault")" '"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":8,"total_tokens":9}'
check "fault model, header wins" "$(curl -s -H 'X-Mock-Model: hdr' -d "$CHAT" "$A/v1/chat/completions")" '"model":"hdr"'
curl -s -d '{"fault":{"stall_after":1}}' "$A/mock/control" >/dev/null
curl -sN --max-time 1 -d '{"model":"s","stream":true,"messages":[]}' "$A/v1/chat/completions" >"$TMP/fault" 2>/dev/null
check_eq "fault stall_after: held open" "$?" "28"
check_eq "fault stall_after: 1 token event" "$(grep -c '"content":"tok' "$TMP/fault")" "1"
check_eq "fault bad model 400" \
    "$(curl -s -o /dev/null -w '%{http_code}' -d '{"fault":{"model":5}}' "$A/mock/control")" "400"
curl -s -d '{"fault":null}' "$A/mock/control" >/dev/null
check_not "fault cleared: no usage" "$(curl -sN -d '{"model":"s","stream":true,"prompt":"x"}' "$A/v1/completions")" '"usage"'

# --- echo ---------------------------------------------------------------------
head -c 100000 /dev/urandom >"$TMP/body"
curl -s -D "$TMP/h1" -H 'X-Mock-Echo: 1' --data-binary @"$TMP/body" -o "$TMP/echo1" "$A/anything?q=1"
cmp -s "$TMP/body" "$TMP/echo1" && ok "echo exact bytes" || not_ok "echo exact bytes"
check "echo content-length seen" "$(cat "$TMP/h1")" "X-Mock-Req-Content-Length: 100000"
check "echo path" "$(cat "$TMP/h1")" "X-Mock-Path: /anything?q=1"
check "echo no transfer-encoding" "$(cat "$TMP/h1")" "X-Mock-Req-Transfer-Encoding: none"

curl -s -D "$TMP/h2" -H 'X-Mock-Echo: 1' -H 'Transfer-Encoding: chunked' \
    --data-binary @"$TMP/body" -o "$TMP/echo2" "$A/v1/chat/completions"
cmp -s "$TMP/body" "$TMP/echo2" && ok "chunked echo exact bytes" || not_ok "chunked echo exact bytes"
check "chunked echo TE seen" "$(cat "$TMP/h2")" "X-Mock-Req-Transfer-Encoding: chunked"
check "chunked echo request length" "$(cat "$TMP/h2")" "X-Mock-Request-Length: 100000"

out="$(curl -s -H 'X-Mock-Echo: 1' --data-binary '{not json' "$A/v1/chat/completions")"
check_eq "echo invalid JSON" "$out" "{not json"

# --- keepalive -----------------------------------------------------------------
out="$(curl -s -D - -o /dev/null -o /dev/null "$A/health" "$A/v1/models")"
check "keepalive first request" "$out" "X-Mock-Conn-Requests: 1"
check "keepalive reuse" "$out" "X-Mock-Conn-Requests: 2"
out="$(curl -s -D - -o /dev/null -o /dev/null -H 'Connection: close' "$A/health" "$A/health")"
check_not "Connection: close not reused" "$out" "X-Mock-Conn-Requests: 2"
check "Connection: close answered" "$out" "Connection: close"

# --- models / metrics ----------------------------------------------------------
out="$(curl -s "$A/v1/models")"
check "models m1" "$out" '"id":"m1","object":"model"'
check "models m2 max_model_len" "$out" '"id":"m2","object":"model","created":'
check "models max_model_len" "$out" '"max_model_len":4096'

curl -sN -H 'X-Mock-Pace-Ms: 300' -H 'X-Mock-Tokens: 3' \
    -d '{"model":"s","stream":true,"messages":[]}' "$B/v1/chat/completions" >/dev/null &
slow=$!
sleep 0.3
out="$(curl -s "$B/metrics")"
wait "$slow"
for name in vllm:num_requests_running vllm:num_requests_waiting \
        vllm:kv_cache_usage_perc llamacpp:requests_processing llamacpp:requests_deferred; do
    check "metric $name" "$out" "$name{model_name=\"m1\"} "
done
check "metrics HELP/TYPE" "$out" "# TYPE vllm:num_requests_running gauge"
check "metrics real running count" "$out" 'vllm:num_requests_running{model_name="m1"} 1.0'

curl -s -d '{"waiting":4,"kv":0.5,"running_extra":2}' "$B/mock/control" >/dev/null
out="$(curl -s "$B/metrics")"
check "control waiting" "$out" 'vllm:num_requests_waiting{model_name="m1"} 4.0'
check "control kv" "$out" 'vllm:kv_cache_usage_perc{model_name="m1"} 0.5'
check "control running_extra" "$out" 'llamacpp:requests_processing{model_name="m1"} 2.0'
check "instance a unaffected" "$(curl -s "$A/metrics")" 'vllm:num_requests_waiting{model_name="m1"} 0.0'

# --- faults / errors ----------------------------------------------------------
out="$(curl -si -H 'X-Mock-Status: 503' -d "$CHAT" "$A/v1/chat/completions")"
check "fault status 503" "$out" "HTTP/1.1 503"
check "fault error code" "$out" '"code":"mock_error"'
check "fault error has instance" "$out" "X-Mock-Instance: a"

curl -s -d '{"fault":{"status":429}}' "$B/mock/control" >/dev/null
check_eq "control fault" "$(curl -s -o /dev/null -w '%{http_code}' -d "$CHAT" "$B/v1/chat/completions")" "429"
check_eq "control fault spares health" "$(curl -s -o /dev/null -w '%{http_code}' "$B/health")" "200"
curl -s -d '{"fault":null,"health_status":503}' "$B/mock/control" >/dev/null
check_eq "fault cleared" "$(curl -s -o /dev/null -w '%{http_code}' -d "$CHAT" "$B/v1/chat/completions")" "200"
check_eq "health_status control" "$(curl -s -o /dev/null -w '%{http_code}' "$B/health")" "503"

out="$(curl -si -d '{bad' "$A/v1/chat/completions")"
check "invalid JSON 400" "$out" "HTTP/1.1 400"
check "invalid JSON code" "$out" '"code":"invalid_json"'
check_eq "unknown path 404" "$(curl -s -o /dev/null -w '%{http_code}' "$A/nope")" "404"
check_eq "wrong method 405" "$(curl -s -o /dev/null -w '%{http_code}' "$A/v1/chat/completions")" "405"
check "malformed body" "$(curl -s -H 'X-Mock-Malformed: 1' -d "$CHAT" "$A/v1/chat/completions")" '{"id": "broken'
check_eq "bad control header 400" \
    "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Mock-Tokens: x' -d "$CHAT" "$A/v1/chat/completions")" "400"

start=$(date +%s%N)
curl -s -H 'X-Mock-Delay-Ms: 300' -o /dev/null "$A/health"
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed" -ge 300 ] && ok "delay ${elapsed}ms" || not_ok "delay" "only ${elapsed}ms"

curl -s --max-time 1 -H 'X-Mock-Hang: 1' -d "$CHAT" "$A/v1/chat/completions" >/dev/null 2>&1
check_eq "hang times out client" "$?" "28"

# --- stats / reset --------------------------------------------------------------
out="$(curl -s "$B/mock/stats")"
check "stats name" "$out" '"name":"b"'
check "stats requests" "$out" '"requests":4'
check "stats by_path" "$out" '"/v1/chat/completions":3'
curl -s -X POST "$B/mock/reset" >/dev/null
check "reset counters" "$(curl -s "$B/mock/stats")" '"requests":0'
check_eq "reset health" "$(curl -s -o /dev/null -w '%{http_code}' "$B/health")" "200"

# --- shutdown -------------------------------------------------------------------
kill -TERM "$MOCK_PID"
for _ in $(seq 1 40); do kill -0 "$MOCK_PID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$MOCK_PID" 2>/dev/null; then
    not_ok "SIGTERM exits within 2s"
else
    wait "$MOCK_PID"
    check_eq "SIGTERM exit status 0" "$?" "0"
    MOCK_PID=""
fi
[ ! -e "$TMP/pid" ] && ok "pidfile removed" || not_ok "pidfile removed"
if [ -s "$TMP/err" ]; then not_ok "no stderr output" "$(head -c 600 "$TMP/err")"; else ok "no stderr output"; fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
