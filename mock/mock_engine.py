#!/usr/bin/env python3
"""OpenAI-compatible inference-engine emulator for ngx_llm_router.

Used by the demo, the Test::Nginx tests and the benchmark.  Python 3
standard library only.

Usage
-----
    python3 mock/mock_engine.py --listen 127.0.0.1:PORT[=NAME] [--listen ...]
                                [options]

Each ``--listen`` starts a separate HTTP/1.1 server (own thread) with its own
instance NAME (default ``mock-PORT``) and its own state and counters.  The
host may be an IPv6 literal in brackets (``[::1]:8000``).  Once every
listener is bound the process prints ``ready`` on stdout (flushed).
SIGTERM/SIGINT make it exit with status 0 promptly.

Options:
    --model NAME         model listed by /v1/models (repeatable;
                         default ``mock-model``).  The first one labels
                         the /metrics series.
    --max-model-len N    ``max_model_len`` reported by /v1/models (4096).
    --tokens N           completion tokens per response (8).
    --pace-ms MS         delay between streamed tokens (0).
    --token-ms MS        per-token generation time (0); streamed and
                         non-streamed responses (see Timing).
    --slow-factor F      multiplies pace and token time (1.0), to
                         emulate a slower engine.
    --pidfile F          write the pid to F (removed on exit).
    --verbose            log requests to stderr (default: quiet).
    --quiet              no access logging (the default).

Timing
------
Streamed: each token event is preceded by a sleep of
``(pace_ms + token_ms) * slow_factor`` milliseconds.
Non-streamed chat/completions sleep ``tokens * token_ms * slow_factor``
milliseconds before answering.

Headers on every response (errors included)
-------------------------------------------
    X-Mock-Instance: NAME
    X-Mock-Conn-Requests: N   requests served on this TCP connection,
                              this one included (proves keepalive reuse)
    X-Mock-Request-Length: N  request body bytes received (after
                              chunked decoding)
Non-streamed responses always carry Content-Length.

Endpoints
---------
POST /v1/chat/completions, /v1/completions, /v1/embeddings
    JSON body (invalid JSON: 400 with code ``invalid_json``).  The response
    ``model`` is the request's ``model`` value as received (the first
    --model if absent; X-Mock-Model overrides it); ``id`` is
    ``chatcmpl-NAME-K``, ``cmpl-NAME-K`` or ``embd-NAME-K`` (K =
    per-instance counter); ``system_fingerprint`` is NAME.  The content is
    C tokens, token i being ``"tok{i} "``; C is
    min(tokens, max_tokens / max_completion_tokens when given) and
    finish_reason is ``length`` when that limit cut it, else ``stop``.
    Prompt token estimate P (deterministic):
        chat:        (sum of UTF-8 bytes of all message contents) // 4
                     + 1 per message; list contents count their text parts.
        completions: (sum of UTF-8 bytes of the prompt strings) // 4
                     + 1 per prompt string; token-id arrays count their
                     length.
        embeddings:  same rule as completions, over ``input``.
    Embeddings: one object per input, 8 deterministic floats in [-1, 1]
    derived from the SHA-256 of the input.
    ``"stream": true`` (chat, completions): text/event-stream, chunked
    transfer coding written by hand, one event per chunk:
        chat only: delta {"role":"assistant","content":""}
        one event per token (delta {"content":"tokI "} / "text":"tokI ")
        empty delta (text "") with finish_reason
        usage event ("choices": [], "usage": {"prompt_tokens",
            "completion_tokens", "total_tokens"}) only with
            "stream_options": {"include_usage": true} (or
            X-Mock-Usage-Always); other events carry no "usage" key
        data: [DONE]
        0\\r\\n\\r\\n
    An HTTP/1.0 client gets the same events without chunk framing, the
    end of the body being marked by closing the connection.
POST /v1/responses   OpenAI's Responses API: text output "tokI " as above
                     (``max_output_tokens`` caps it), usage
                     {"input_tokens","output_tokens","total_tokens"};
                     P is the chat estimate of a list ``input``, else the
                     completions one.  Streamed: named events
                     ("event: NAME" then "data: {...}", each with "type"
                     and "sequence_number"): response.created, one
                     response.output_text.delta per token,
                     response.output_text.done, response.completed; no
                     [DONE].
POST /v1/messages    Anthropic's Messages API: content [{"type":"text"}],
                     stop_reason end_turn / max_tokens.  Streamed:
                     message_start, content_block_start, one
                     content_block_delta (text_delta) per token,
                     content_block_stop, message_delta, message_stop; no
                     [DONE].  Close-After, Stall-After, Sse-Crlf,
                     Heartbeat and Stream-Split apply to both streams as
                     to chat (counted in token events).
GET  /v1/models      {"object":"list","data":[{"id","object":"model",
                     "created","owned_by":"mock","max_model_len"}]}
GET  /props          llama.cpp's: {"n_ctx": max_model_len * slots,
                     "total_slots": slots, "default_generation_settings":
                     {"n_ctx": max_model_len}}
GET  /info           TGI's: {"model_id", "max_input_tokens",
                     "max_total_tokens": max_model_len}
GET  /server_info    SGLang's: {"context_length": max_model_len, ...}
POST /tokenize       vLLM's {"model", "prompt" | "messages"} ->
                     {"count", "max_model_len", "tokens"}; llama.cpp's
                     {"content"} -> {"tokens"}.  The count is the control
                     tokenize_count, else the prompt estimate above; the
                     control tokenize_delay_ms delays the answer.
GET  /health         200 {"status":"ok"} (status from control
                     ``health_status``; non-2xx bodies say "unhealthy")
GET  /metrics        Prometheus text, label model_name="<first model>":
                     vllm:num_requests_running (in-flight inference
                     requests + running_extra), vllm:num_requests_waiting
                     (waiting), vllm:kv_cache_usage_perc (kv, 0..1),
                     llamacpp:requests_processing (same as running),
                     llamacpp:requests_deferred (same as waiting).
                     Values are printed as floats, like vLLM does.
POST /mock/control   JSON object merged into the instance state; keys:
                     health_status, running_extra, waiting, kv, tokens,
                     max_model_len, slots (the context reported by
                     /v1/models, /props, /info, /server_info),
                     pace_ms, fault (a dict of the per-request controls
                     below, keyed status, delay_ms, hang, close_after,
                     malformed, stream_split, tokens, pace_ms, echo,
                     stall_after, sse_crlf, heartbeat, model,
                     usage_always; it applies to every inference
                     request, headers win; null clears).  Answers the
                     new state.
GET  /mock/control   the current state.
GET  /mock/stats     {"name","requests","in_flight","by_path"}: requests =
                     POSTs to the five inference paths (whatever their
                     outcome); by_path counts every request except /mock/*.
POST /mock/reset     state back to the command-line defaults, counters to 0.
Unknown path: 404 (code ``not_found``); wrong method on a known path: 405
(code ``method_not_allowed``, with an Allow header).  Errors are shaped
{"error":{"message","type","param":null,"code"}}.

Per-request controls (request headers, all endpoints except /mock/*)
---------------------------------------------------------------------
Applied in this order:
    X-Mock-Delay-Ms: MS     sleep before sending anything.
    X-Mock-Hang: 1          never answer; hold the connection (discarding
                            anything the client sends) until the client
                            closes it or 300 s pass, then close.
    X-Mock-Echo: 1          on any method but GET/HEAD, any path: 200
                            application/octet-stream with the exact body
                            bytes received, plus X-Mock-Method,
                            X-Mock-Path (raw request target),
                            X-Mock-Req-Content-Length and
                            X-Mock-Req-Transfer-Encoding (``none`` when
                            absent).
    X-Mock-Status: CODE     that status with a JSON error, code
                            ``mock_error``.
    X-Mock-Malformed: 1     200 application/json with the body
                            ``{"id": "broken`` (not valid JSON).
    X-Mock-Tokens: N, X-Mock-Pace-Ms: MS   override tokens / pace.
    X-Mock-Close-After: N   stream: headers, the role event (chat) and N
                            token events, then the connection is closed
                            (no terminating chunk, no [DONE]).  Non-stream:
                            headers with the full Content-Length, half the
                            body, then close.
    X-Mock-Stream-Split: 1  stream: every chunk is written in 7-byte
                            pieces, each flushed, 1 ms apart.
    X-Mock-Stall-After: N   stream: headers, the role event (chat) and N
                            token events (at most all of them, never the
                            finish event), then nothing more: the
                            connection is held like X-Mock-Hang (until
                            the client closes it or 300 s pass, then
                            closed).  With X-Mock-Close-After too, the
                            smaller count wins (Close-After on a tie).
                            Ignored by non-streamed responses.
    X-Mock-Sse-Crlf: 1      stream: every SSE line ends with "\\r\\n"
                            instead of "\\n" (events end "\\r\\n\\r\\n",
                            [DONE] and heartbeats included).
    X-Mock-Heartbeat: 1     stream: an SSE comment event ": ping\\n\\n"
                            (its own chunk; CRLF line ends with
                            X-Mock-Sse-Crlf) right before every data
                            event, [DONE] included.
    X-Mock-Model: NAME      the response ``model`` (non-stream JSON,
                            embeddings and every streamed event) is NAME
                            instead of the request's value.
    X-Mock-Usage-Always: 1  stream: send the usage event even without
                            "stream_options": {"include_usage": true}.
    X-Mock-Spaced: 1        JSON answers and events written with
                            Python's default separators (", ", ": ").
Boolean headers accept 1/true/yes/on.  A malformed control value is a 400
(code ``invalid_mock_header``).
"""

import argparse
import hashlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
RESPONSES_PATH = "/v1/responses"
MESSAGES_PATH = "/v1/messages"
INFERENCE_PATHS = (CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH,
                   RESPONSES_PATH, MESSAGES_PATH)

MAX_BODY = 64 * 1024 * 1024
HANG_LIMIT_S = 300
SPLIT_BYTES = 7
EMBEDDING_DIM = 8

# Per-request controls: header name -> (control key, parser kind).
CONTROL_HEADERS = {
    "X-Mock-Delay-Ms": ("delay_ms", "number"),
    "X-Mock-Hang": ("hang", "bool"),
    "X-Mock-Echo": ("echo", "bool"),
    "X-Mock-Status": ("status", "status"),
    "X-Mock-Malformed": ("malformed", "bool"),
    "X-Mock-Tokens": ("tokens", "count"),
    "X-Mock-Pace-Ms": ("pace_ms", "number"),
    "X-Mock-Close-After": ("close_after", "count"),
    "X-Mock-Stream-Split": ("stream_split", "bool"),
    "X-Mock-Stall-After": ("stall_after", "count"),
    "X-Mock-Sse-Crlf": ("sse_crlf", "bool"),
    "X-Mock-Heartbeat": ("heartbeat", "bool"),
    "X-Mock-Model": ("model", "string"),
    "X-Mock-Usage-Always": ("usage_always", "bool"),
    "X-Mock-Spaced": ("spaced", "bool"),
}
CONTROL_KINDS = dict(CONTROL_HEADERS.values())

STATE_KINDS = {
    "health_status": "status",
    "running_extra": "number",
    "waiting": "number",
    "kv": "number",
    "tokens": "count",
    "pace_ms": "number",
    "max_model_len": "count",
    "slots": "count",
    "tokenize_count": "count",
    "tokenize_delay_ms": "number",
}


class MockError(Exception):
    """An error answered as an OpenAI-shaped JSON error."""

    def __init__(self, status, message, code, close=False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.close = close


def parse_value(kind, value):
    """Convert a control value (header string or JSON value) to its kind.

    Raises ValueError on a malformed value.
    """
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value != 0
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("", "0", "false", "no", "off"):
            return False
        raise ValueError("expected a boolean, got %r" % (value,))
    if kind == "string":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a non-empty string, got %r"
                             % (value,))
        return value.strip()
    if isinstance(value, bool):
        raise ValueError("expected a number, got %r" % (value,))
    if kind == "number":
        number = float(value)
        if number < 0 or number != number:
            raise ValueError("expected a non-negative number")
        return number
    number = int(value)
    if kind == "status" and not 100 <= number <= 599:
        raise ValueError("expected an HTTP status, got %r" % (value,))
    if kind == "count" and number < 0:
        raise ValueError("expected a non-negative integer")
    return number


def utf8_len(text):
    return len(text.encode("utf-8"))


def estimate_text_inputs(value):
    """Prompt tokens for a completions prompt or an embeddings input.

    (UTF-8 bytes of all strings) // 4 + 1 per string; token-id arrays
    count their length.
    """
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return 0
    if value and all(isinstance(v, int) for v in value):
        return len(value)
    total_bytes, strings, ids = 0, 0, 0
    for item in value:
        if isinstance(item, str):
            total_bytes += utf8_len(item)
            strings += 1
        elif isinstance(item, list):
            ids += len(item)
    return total_bytes // 4 + strings + ids


def estimate_chat_prompt(messages):
    """Prompt tokens for chat: content bytes // 4 + 1 per message."""
    if not isinstance(messages, list):
        return 0
    total_bytes = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total_bytes += utf8_len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, str):
                    total_bytes += utf8_len(part)
                elif isinstance(part, dict) and isinstance(
                        part.get("text"), str):
                    total_bytes += utf8_len(part["text"])
    return total_bytes // 4 + len(messages)


def embedding_inputs(value):
    """Split an embeddings ``input`` into its individual inputs."""
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [value]
        return value
    return [value]


def embedding_vector(item):
    """EMBEDDING_DIM deterministic floats in [-1, 1] for one input."""
    text = item if isinstance(item, str) else json.dumps(item)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round((digest[2 * i] << 8 | digest[2 * i + 1]) / 65535 * 2 - 1, 6)
            for i in range(EMBEDDING_DIM)]


def completion_limit(body):
    """max_tokens / max_completion_tokens of a request, or None."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) \
                and value >= 0:
            return value
    return None


def dumps(obj, spaced=False):
    if spaced:
        return json.dumps(obj).encode("utf-8")
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def error_object(message, code, status):
    if status >= 500:
        kind = "server_error"
    elif status == 429:
        kind = "rate_limit_exceeded"
    else:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None,
                      "code": code}}


class Instance:
    """State and counters of one emulated engine (one --listen)."""

    def __init__(self, name, config):
        self.name = name
        self.config = config
        self.lock = threading.Lock()
        self.in_flight = 0
        self.reset()

    def defaults(self):
        return {"health_status": 200, "running_extra": 0, "waiting": 0,
                "kv": 0.0, "tokens": self.config.tokens,
                "pace_ms": self.config.pace_ms,
                "max_model_len": self.config.max_model_len, "slots": 1,
                "tokenize_count": 0, "tokenize_delay_ms": 0,
                "fault": None}

    def reset(self):
        with self.lock:
            self.state = self.defaults()
            self.requests = 0
            self.sequence = 0
            self.by_path = {}

    def snapshot(self):
        with self.lock:
            return dict(self.state)

    def update(self, changes):
        """Validate then merge a /mock/control object; MockError if bad."""
        if not isinstance(changes, dict):
            raise MockError(400, "control body must be a JSON object",
                            "invalid_control")
        parsed = {}
        try:
            for key, value in changes.items():
                if key == "fault":
                    parsed[key] = self.parse_fault(value)
                elif key in STATE_KINDS:
                    parsed[key] = parse_value(STATE_KINDS[key], value)
                else:
                    raise ValueError("unknown control key %r" % key)
        except (TypeError, ValueError) as exc:
            raise MockError(400, "bad control: %s" % exc, "invalid_control")
        with self.lock:
            self.state.update(parsed)
            return dict(self.state)

    @staticmethod
    def parse_fault(value):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("fault must be an object or null")
        fault = {}
        for key, item in value.items():
            key = key.lower().replace("-", "_")
            if key not in CONTROL_KINDS:
                raise ValueError("unknown fault key %r" % key)
            fault[key] = parse_value(CONTROL_KINDS[key], item)
        return fault

    def count_path(self, path):
        with self.lock:
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def begin_inference(self):
        with self.lock:
            self.requests += 1
            self.in_flight += 1

    def end_inference(self):
        with self.lock:
            self.in_flight -= 1

    def next_id(self, prefix):
        with self.lock:
            self.sequence += 1
            return "%s-%s-%d" % (prefix, self.name, self.sequence)

    def stats(self):
        with self.lock:
            return {"name": self.name, "requests": self.requests,
                    "in_flight": self.in_flight, "by_path": dict(self.by_path)}

    def metrics_text(self):
        with self.lock:
            running = self.in_flight + self.state["running_extra"]
            waiting = self.state["waiting"]
            kv = self.state["kv"]
        label = '{model_name="%s"}' % self.config.models[0]
        series = [
            ("vllm:num_requests_running",
             "Number of requests currently running on GPU.", running),
            ("vllm:num_requests_waiting",
             "Number of requests waiting to be processed.", waiting),
            ("vllm:kv_cache_usage_perc",
             "KV-cache usage. 1 means 100 percent usage.", kv),
            ("llamacpp:requests_processing",
             "Number of requests processing.", running),
            ("llamacpp:requests_deferred",
             "Number of requests deferred.", waiting),
        ]
        lines = []
        for metric, help_text, value in series:
            lines.append("# HELP %s %s" % (metric, help_text))
            lines.append("# TYPE %s gauge" % metric)
            lines.append("%s%s %r" % (metric, label, float(value)))
        return ("\n".join(lines) + "\n").encode("utf-8")


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address, instance, verbose):
        self.instance = instance
        self.verbose = verbose
        super().__init__(address, MockHandler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class MockServer6(MockServer):
    address_family = socket.AF_INET6


class MockHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-engine/1.0"
    timeout = 300

    # -- connection bookkeeping -------------------------------------------

    def setup(self):
        super().setup()
        self.conn_requests = 0
        self.body_len = 0
        self.headers_sent = False

    def parse_request(self):
        self.conn_requests += 1
        self.body_len = 0
        self.headers_sent = False
        return super().parse_request()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("[%s] %s - %s\n" % (
                self.server.instance.name, self.address_string(),
                fmt % args))

    def send_error(self, code, message=None, explain=None):
        """Protocol errors from BaseHTTPRequestHandler, in our format."""
        self.close_connection = True
        if message is None:
            message = HTTPStatus(code).phrase
        self.send_json(code, error_object(message, "bad_request", code))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = \
        do_HEAD = lambda self: self.dispatch()

    # -- request body -----------------------------------------------------

    def read_body(self):
        encoding = self.headers.get("Transfer-Encoding")
        if encoding is not None:
            codings = [c.strip().lower() for c in encoding.split(",")]
            if codings[-1] != "chunked":
                raise MockError(400, "unsupported Transfer-Encoding",
                                "invalid_body", close=True)
            return self.read_chunked_body()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            raise MockError(400, "bad Content-Length", "invalid_body",
                            close=True)
        if size > MAX_BODY:
            raise MockError(413, "request body too large", "invalid_body",
                            close=True)
        body = self.rfile.read(size)
        if len(body) != size:
            raise ConnectionResetError("body truncated by client")
        return body

    def read_chunked_body(self):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionResetError("chunked body truncated")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise MockError(400, "bad chunk size line", "invalid_body",
                                close=True)
            if size == 0:
                break
            total += size
            if total > MAX_BODY:
                raise MockError(413, "request body too large",
                                "invalid_body", close=True)
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionResetError("chunk truncated")
            parts.append(data)
            if self.rfile.readline(65537) not in (b"\r\n", b"\n"):
                raise MockError(400, "missing CRLF after chunk",
                                "invalid_body", close=True)
        while True:  # trailer section
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    # -- response helpers -------------------------------------------------

    def start_response(self, status, headers=()):
        instance = self.server.instance
        self.send_response(status)
        self.send_header("X-Mock-Instance", instance.name)
        self.send_header("X-Mock-Conn-Requests", str(self.conn_requests))
        self.send_header("X-Mock-Request-Length", str(self.body_len))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.headers_sent = True

    def send_bytes(self, status, body, content_type, headers=(),
                   truncate=False):
        headers = [("Content-Type", content_type),
                   ("Content-Length", str(len(body)))] + list(headers)
        self.start_response(status, headers)
        if self.command == "HEAD":
            return
        if truncate:
            self.wfile.write(body[:len(body) // 2])
            self.abort_connection()
            return
        self.wfile.write(body)

    def send_json(self, status, obj, controls=None, headers=()):
        truncate = bool(controls) and controls.get("close_after") is not None
        spaced = bool(controls) and bool(controls.get("spaced"))
        self.send_bytes(status, dumps(obj, spaced), "application/json",
                        headers, truncate)

    def send_mock_error(self, error):
        if error.close:
            self.close_connection = True
        self.send_json(error.status,
                       error_object(error.message, error.code, error.status))

    def abort_connection(self):
        """Close the TCP connection now, mid-response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write_piece(self, data, split):
        if not split:
            self.wfile.write(data)
            return
        for offset in range(0, len(data), SPLIT_BYTES):
            self.wfile.write(data[offset:offset + SPLIT_BYTES])
            self.wfile.flush()
            time.sleep(0.001)

    # -- dispatch ---------------------------------------------------------

    def dispatch(self):
        instance = self.server.instance
        path = urlsplit(self.path).path
        inference = self.command == "POST" and path in INFERENCE_PATHS
        if not path.startswith("/mock/"):
            instance.count_path(path)
        if inference:
            instance.begin_inference()
        try:
            body = self.read_body()
            self.body_len = len(body)
            self.handle_request(path, body, inference)
        except MockError as error:
            if self.headers_sent:
                self.abort_connection()
            else:
                self.send_mock_error(error)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # a bug: report it, keep serving
            traceback.print_exc()
            if self.headers_sent:
                self.abort_connection()
            else:
                self.close_connection = True
                self.send_mock_error(MockError(500, "mock internal error",
                                               "internal_error"))
        finally:
            if inference:
                instance.end_inference()

    def collect_controls(self, inference):
        """Merge the default fault (inference only) and request headers."""
        controls = {}
        if inference:
            controls.update(self.server.instance.snapshot()["fault"] or {})
        for header, (key, kind) in CONTROL_HEADERS.items():
            value = self.headers.get(header)
            if value is None:
                continue
            try:
                controls[key] = parse_value(kind, value)
            except ValueError as exc:
                raise MockError(400, "bad %s: %s" % (header, exc),
                                "invalid_mock_header")
        return controls

    def handle_request(self, path, body, inference):
        if path.startswith("/mock/"):
            self.handle_mock_path(path, body)
            return
        controls = self.collect_controls(inference)
        if controls.get("delay_ms"):
            time.sleep(controls["delay_ms"] / 1000.0)
        if controls.get("hang"):
            self.hang()
            return
        if controls.get("echo") and self.command not in ("GET", "HEAD"):
            self.send_echo(body)
            return
        if controls.get("status"):
            status = controls["status"]
            self.send_json(status, error_object(
                "mock error status %d" % status, "mock_error", status))
            return
        if controls.get("malformed"):
            self.send_bytes(200, b'{"id": "broken', "application/json")
            return
        routes = ROUTES.get(path)
        if routes is None:
            self.send_json(404, error_object(
                "Unknown path %s" % path, "not_found", 404))
            return
        handler = routes.get(self.command)
        if handler is None:
            self.send_json(405, error_object(
                "Method %s not allowed on %s" % (self.command, path),
                "method_not_allowed", 405),
                headers=[("Allow", ", ".join(sorted(routes)))])
            return
        handler(self, body, controls)

    def handle_mock_path(self, path, body):
        instance = self.server.instance
        if path == "/mock/control" and self.command == "POST":
            self.send_json(200, instance.update(self.parse_json(body)))
        elif path == "/mock/control" and self.command == "GET":
            self.send_json(200, instance.snapshot())
        elif path == "/mock/reset" and self.command == "POST":
            instance.reset()
            self.send_json(200, {"status": "reset"})
        elif path == "/mock/stats" and self.command == "GET":
            self.send_json(200, instance.stats())
        elif path in ("/mock/control", "/mock/reset", "/mock/stats"):
            self.send_json(405, error_object(
                "Method %s not allowed on %s" % (self.command, path),
                "method_not_allowed", 405))
        else:
            self.send_json(404, error_object(
                "Unknown path %s" % path, "not_found", 404))

    # -- special behaviours -----------------------------------------------

    def hang(self):
        """Hold the connection until the client closes it or time is up."""
        self.close_connection = True
        deadline = time.monotonic() + HANG_LIMIT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                readable, _, _ = select.select(
                    [self.connection], [], [], min(remaining, 1.0))
                if readable and not self.connection.recv(65536):
                    return
            except (OSError, ValueError):
                return

    def send_echo(self, body):
        headers = [
            ("X-Mock-Method", self.command),
            ("X-Mock-Path", self.path),
            ("X-Mock-Req-Content-Length",
             self.headers.get("Content-Length", "none")),
            ("X-Mock-Req-Transfer-Encoding",
             self.headers.get("Transfer-Encoding", "none")),
        ]
        self.send_bytes(200, body, "application/octet-stream", headers)

    # -- inference endpoints ----------------------------------------------

    @staticmethod
    def parse_json(body):
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise MockError(400, "Invalid JSON body: %s" % exc,
                            "invalid_json")

    def parse_inference_body(self, body):
        request = self.parse_json(body)
        if not isinstance(request, dict):
            raise MockError(400, "Request body must be a JSON object",
                            "invalid_json")
        return request

    def generation_plan(self, request, controls):
        """(completion tokens, finish_reason, per-token delay in s)."""
        config = self.server.instance.config
        state = self.server.instance.snapshot()
        tokens = controls.get("tokens", state["tokens"])
        pace_ms = controls.get("pace_ms", state["pace_ms"])
        limit = completion_limit(request)
        count = tokens if limit is None else min(tokens, limit)
        finish = "length" if count < tokens else "stop"
        token_delay = (pace_ms + config.token_ms) * config.slow_factor / 1e3
        return count, finish, token_delay

    def handle_generation(self, body, controls, chat):
        request = self.parse_inference_body(body)
        instance = self.server.instance
        config = instance.config
        model = controls.get("model") or request.get("model",
                                                     config.models[0])
        if chat:
            prompt_tokens = estimate_chat_prompt(request.get("messages"))
        else:
            prompt_tokens = estimate_text_inputs(request.get("prompt"))
        count, finish, token_delay = self.generation_plan(request, controls)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count,
                 "total_tokens": prompt_tokens + count}
        base = {
            "id": instance.next_id("chatcmpl" if chat else "cmpl"),
            "object": None,
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": instance.name,
        }
        if request.get("stream") is True:
            options = request.get("stream_options")
            include_usage = bool(controls.get("usage_always")) or (
                isinstance(options, dict) and
                options.get("include_usage") is True)
            self.stream_generation(base, chat, count, finish, token_delay,
                                   usage if include_usage else None, controls)
            return
        time.sleep(count * config.token_ms * config.slow_factor / 1e3)
        text = "".join("tok%d " % i for i in range(count))
        if chat:
            base["object"] = "chat.completion"
            choice = {"index": 0,
                      "message": {"role": "assistant", "content": text},
                      "finish_reason": finish}
        else:
            base["object"] = "text_completion"
            choice = {"index": 0, "text": text, "finish_reason": finish}
        base["choices"] = [choice]
        base["usage"] = usage
        self.send_json(200, base, controls)

    def start_stream(self):
        """The 200 of an event stream: chunked unless the client speaks
        HTTP/1.0 (then the end is the close).  None for HEAD: no body."""
        chunked = self.request_version != "HTTP/1.0"
        if not chunked:
            self.close_connection = True
        headers = [("Content-Type", "text/event-stream"),
                   ("Cache-Control", "no-cache")]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        self.start_response(200, headers)
        if self.command == "HEAD":
            return None
        return chunked

    def stream_generation(self, base, chat, count, finish, token_delay,
                          usage, controls):
        chunked = self.start_stream()
        if chunked is None:
            return
        split = bool(controls.get("stream_split"))
        close_after = controls.get("close_after")
        stall_after = controls.get("stall_after")
        heartbeat = bool(controls.get("heartbeat"))
        spaced = bool(controls.get("spaced"))
        eol = b"\r\n" if controls.get("sse_crlf") else b"\n"
        base["object"] = "chat.completion.chunk" if chat else "text_completion"

        def emit_raw(payload):
            if chunked:
                payload = b"%x\r\n%s\r\n" % (len(payload), payload)
            self.write_piece(payload, split)

        def emit_data(data):
            if heartbeat:
                emit_raw(b": ping" + eol + eol)
            emit_raw(b"data: " + data + eol + eol)

        def emit(choices, extra=None):
            event = dict(base, choices=choices)
            if extra:
                event.update(extra)
            emit_data(dumps(event, spaced))

        def choice(text, finish_reason=None, role=False):
            if not chat:
                return {"index": 0, "text": text,
                        "finish_reason": finish_reason}
            delta = {"role": "assistant", "content": text} if role else \
                ({"content": text} if text else {})
            return {"index": 0, "delta": delta,
                    "finish_reason": finish_reason}

        if chat:
            emit([choice("", role=True)])
        if stall_after is not None and close_after is not None:
            if close_after <= stall_after:
                stall_after = None
            else:
                close_after = None
        limit = close_after if close_after is not None else stall_after
        for i in range(count if limit is None else min(count, limit)):
            if token_delay > 0:
                time.sleep(token_delay)
            emit([choice("tok%d " % i)])
        if close_after is not None:
            self.abort_connection()
            return
        if stall_after is not None:
            self.hang()
            return
        emit([choice("", finish)])
        if usage is not None:
            emit([], {"usage": usage})
        emit_data(b"[DONE]")
        if chunked:
            self.write_piece(b"0\r\n\r\n", split)

    def stream_named(self, head, tokens, tail, token_delay, controls):
        """A stream of named events ("event: NAME" before each data line):
        head, one event per token, tail, as the Responses and Messages
        APIs send them (no [DONE]).  Each is (name, object)."""
        chunked = self.start_stream()
        if chunked is None:
            return
        split = bool(controls.get("stream_split"))
        spaced = bool(controls.get("spaced"))
        close_after = controls.get("close_after")
        stall_after = controls.get("stall_after")
        heartbeat = bool(controls.get("heartbeat"))
        eol = b"\r\n" if controls.get("sse_crlf") else b"\n"

        def emit(name, obj):
            if heartbeat:
                payload = b": ping" + eol + eol
                if chunked:
                    payload = b"%x\r\n%s\r\n" % (len(payload), payload)
                self.write_piece(payload, split)
            payload = (b"event: " + name.encode() + eol + b"data: " +
                       dumps(obj, spaced) + eol + eol)
            if chunked:
                payload = b"%x\r\n%s\r\n" % (len(payload), payload)
            self.write_piece(payload, split)

        for name, obj in head:
            emit(name, obj)
        if stall_after is not None and close_after is not None:
            if close_after <= stall_after:
                stall_after = None
            else:
                close_after = None
        limit = close_after if close_after is not None else stall_after
        for name, obj in tokens[:len(tokens) if limit is None else limit]:
            if token_delay > 0:
                time.sleep(token_delay)
            emit(name, obj)
        if close_after is not None:
            self.abort_connection()
            return
        if stall_after is not None:
            self.hang()
            return
        for name, obj in tail:
            emit(name, obj)
        if chunked:
            self.write_piece(b"0\r\n\r\n", split)

    def handle_responses(self, body, controls):
        """OpenAI's Responses API, text output only."""
        request = self.parse_inference_body(body)
        instance = self.server.instance
        model = controls.get("model") or request.get(
            "model", instance.config.models[0])
        raw = request.get("input")
        prompt_tokens = (estimate_chat_prompt(raw) if isinstance(raw, list)
                         else estimate_text_inputs(raw))
        request = dict(request)
        if "max_output_tokens" in request:
            request["max_tokens"] = request["max_output_tokens"]
        count, _, token_delay = self.generation_plan(request, controls)
        text = "".join("tok%d " % i for i in range(count))
        rid = instance.next_id("resp")
        usage = {"input_tokens": prompt_tokens, "output_tokens": count,
                 "total_tokens": prompt_tokens + count}
        item = {"id": "msg_" + rid, "type": "message", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text,
                             "annotations": []}]}
        done = {"id": rid, "object": "response",
                "created_at": int(time.time()), "status": "completed",
                "model": model, "output": [item], "usage": usage}
        if request.get("stream") is not True:
            self.send_json(200, done, controls)
            return
        started = dict(done, status="in_progress", output=[], usage=None)
        head = [("response.created",
                 {"type": "response.created", "response": started})]
        tokens = [("response.output_text.delta",
                   {"type": "response.output_text.delta",
                    "item_id": item["id"], "output_index": 0,
                    "content_index": 0, "delta": "tok%d " % i})
                  for i in range(count)]
        tail = [("response.output_text.done",
                 {"type": "response.output_text.done", "item_id": item["id"],
                  "output_index": 0, "content_index": 0, "text": text}),
                ("response.completed",
                 {"type": "response.completed", "response": done})]
        seq = 0
        for _, obj in head + tokens + tail:
            obj["sequence_number"] = seq
            seq += 1
        self.stream_named(head, tokens, tail, token_delay, controls)

    def handle_messages(self, body, controls):
        """Anthropic's Messages API, text output only."""
        request = self.parse_inference_body(body)
        instance = self.server.instance
        model = controls.get("model") or request.get(
            "model", instance.config.models[0])
        prompt_tokens = estimate_chat_prompt(request.get("messages"))
        count, finish, token_delay = self.generation_plan(request, controls)
        text = "".join("tok%d " % i for i in range(count))
        mid = instance.next_id("msg")
        stop = "max_tokens" if finish == "length" else "end_turn"
        message = {"id": mid, "type": "message", "role": "assistant",
                   "model": model, "content": [{"type": "text",
                                                "text": text}],
                   "stop_reason": stop, "stop_sequence": None,
                   "usage": {"input_tokens": prompt_tokens,
                             "output_tokens": count}}
        if request.get("stream") is not True:
            self.send_json(200, message, controls)
            return
        start = dict(message, content=[], stop_reason=None,
                     usage={"input_tokens": prompt_tokens,
                            "output_tokens": 0})
        head = [("message_start", {"type": "message_start",
                                   "message": start}),
                ("content_block_start",
                 {"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}})]
        tokens = [("content_block_delta",
                   {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": "tok%d " % i}})
                  for i in range(count)]
        tail = [("content_block_stop",
                 {"type": "content_block_stop", "index": 0}),
                ("message_delta",
                 {"type": "message_delta",
                  "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": count}}),
                ("message_stop", {"type": "message_stop"})]
        self.stream_named(head, tokens, tail, token_delay, controls)

    def handle_chat(self, body, controls):
        self.handle_generation(body, controls, chat=True)

    def handle_completions(self, body, controls):
        self.handle_generation(body, controls, chat=False)

    def handle_embeddings(self, body, controls):
        request = self.parse_inference_body(body)
        instance = self.server.instance
        raw_input = request.get("input")
        data = [{"object": "embedding", "index": i,
                 "embedding": embedding_vector(item)}
                for i, item in enumerate(embedding_inputs(raw_input))]
        prompt_tokens = estimate_text_inputs(raw_input)
        self.send_json(200, {
            "id": instance.next_id("embd"),
            "object": "list",
            "data": data,
            "model": controls.get("model") or request.get(
                "model", instance.config.models[0]),
            "system_fingerprint": instance.name,
            "usage": {"prompt_tokens": prompt_tokens,
                      "total_tokens": prompt_tokens},
        }, controls)

    # -- informational endpoints ------------------------------------------

    def handle_models(self, body, controls):
        config = self.server.instance.config
        length = self.server.instance.snapshot()["max_model_len"]
        self.send_json(200, {"object": "list", "data": [
            {"id": model, "object": "model", "created": config.started,
             "owned_by": "mock", "max_model_len": length}
            for model in config.models]}, controls)

    # the context size in the other engines' dialects

    def handle_props(self, body, controls):
        state = self.server.instance.snapshot()
        self.send_json(200, {
            "n_ctx": state["max_model_len"] * state["slots"],
            "total_slots": state["slots"],
            "default_generation_settings": {"n_ctx": state["max_model_len"]},
        }, controls)

    def handle_info(self, body, controls):
        state = self.server.instance.snapshot()
        self.send_json(200, {"model_id": self.server.instance.config.models[0],
                             "max_input_tokens": state["max_model_len"] - 1,
                             "max_total_tokens": state["max_model_len"]},
                       controls)

    def handle_tokenize(self, body, controls):
        """vLLM's {"model", "prompt" | "messages"} -> {"count", ...};
        llama.cpp's {"content"} -> {"tokens": [...]}.  The count is the
        state's tokenize_count, else the mock's own estimate."""
        state = self.server.instance.snapshot()
        request = self.parse_json(body)
        if state["tokenize_delay_ms"]:
            time.sleep(state["tokenize_delay_ms"] / 1000.0)
        count = state["tokenize_count"]
        if "content" in request:
            if not count:
                count = estimate_text_inputs(request["content"])
            self.send_json(200, {"tokens": list(range(count))}, controls)
            return
        if not count:
            if "messages" in request:
                count = estimate_chat_prompt(request["messages"])
            else:
                count = estimate_text_inputs(request.get("prompt", ""))
        self.send_json(200, {"count": count,
                             "max_model_len": state["max_model_len"],
                             "tokens": list(range(count))}, controls)

    def handle_server_info(self, body, controls):
        state = self.server.instance.snapshot()
        self.send_json(200, {"context_length": state["max_model_len"],
                             "max_total_num_tokens": 100000}, controls)

    def handle_health(self, body, controls):
        status = self.server.instance.snapshot()["health_status"]
        word = "ok" if 200 <= status < 300 else "unhealthy"
        self.send_json(status, {"status": word}, controls)

    def handle_metrics(self, body, controls):
        text = self.server.instance.metrics_text()
        self.send_bytes(200, text, "text/plain; version=0.0.4; charset=utf-8",
                        truncate=controls.get("close_after") is not None)


ROUTES = {
    CHAT_PATH: {"POST": MockHandler.handle_chat},
    COMPLETIONS_PATH: {"POST": MockHandler.handle_completions},
    EMBEDDINGS_PATH: {"POST": MockHandler.handle_embeddings},
    RESPONSES_PATH: {"POST": MockHandler.handle_responses},
    MESSAGES_PATH: {"POST": MockHandler.handle_messages},
    "/v1/models": {"GET": MockHandler.handle_models},
    "/health": {"GET": MockHandler.handle_health},
    "/metrics": {"GET": MockHandler.handle_metrics},
    "/props": {"GET": MockHandler.handle_props},
    "/info": {"GET": MockHandler.handle_info},
    "/server_info": {"GET": MockHandler.handle_server_info},
    "/tokenize": {"POST": MockHandler.handle_tokenize},
}


def parse_listen(spec):
    """'HOST:PORT[=NAME]' -> (host, port, name)."""
    address, _, name = spec.partition("=")
    host, sep, port_text = address.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", address
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError("bad --listen %r" % spec)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("bad port in --listen %r" % spec)
    return host, port, name or "mock-%d" % port


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="OpenAI-compatible inference engine emulator.")
    parser.add_argument("--listen", action="append", type=parse_listen,
                        required=True, metavar="HOST:PORT[=NAME]")
    parser.add_argument("--model", action="append", dest="models")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--token-ms", type=float, default=0.0)
    parser.add_argument("--slow-factor", type=float, default=1.0)
    parser.add_argument("--pidfile")
    logging = parser.add_mutually_exclusive_group()
    logging.add_argument("--verbose", action="store_true")
    logging.add_argument("--quiet", action="store_true")
    config = parser.parse_args(argv)
    if not config.models:
        config.models = ["mock-model"]
    if min(config.tokens, config.pace_ms, config.token_ms,
           config.slow_factor) < 0:
        parser.error("--tokens, --pace-ms, --token-ms and --slow-factor "
                     "must not be negative")
    config.started = int(time.time())
    return config


def main(argv=None):
    config = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    servers = []
    for host, port, name in config.listen:
        server_class = MockServer6 if ":" in host else MockServer
        try:
            server = server_class((host, port), Instance(name, config),
                                  config.verbose)
        except OSError as exc:
            sys.stderr.write("mock_engine: cannot listen on %s:%d: %s\n"
                             % (host, port, exc))
            return 1
        servers.append(server)
        if config.verbose:
            sys.stderr.write("mock_engine: %s listening on %s:%d\n"
                             % (name, host, server.server_address[1]))

    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.1}, daemon=True).start()
    if config.pidfile:
        with open(config.pidfile, "w") as pidfile:
            pidfile.write("%d\n" % os.getpid())
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    while not stop.wait(1.0):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    if config.pidfile:
        try:
            os.unlink(config.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
