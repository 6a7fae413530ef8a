#!/usr/bin/env python3
"""mock/mock_engine.py with a limited number of generation slots.

    python3 bench/capped_engine.py --max-running N [mock_engine options]

Used by bench/balance.sh only.  The mock engine serves every request at
once: its answer takes the same time however many requests it has, so an
engine can never be "full" and a request never waits for one.  A real
engine (vLLM's max_num_seqs, llama.cpp's --parallel) runs at most N
sequences; the others wait in a queue.  This wrapper runs the unchanged
mock (imported from mock/mock_engine.py) and adds exactly that:

  * at most N chat/completions generations per instance (--listen) run at
    the same time; the others wait for a slot in arrival order (FIFO) and
    only then start (headers, tokens); embeddings are not limited;
  * /metrics reports vllm:num_requests_running = generations holding a
    slot and vllm:num_requests_waiting = generations in the queue (plus
    running_extra / waiting set through /mock/control), like vLLM does;
    /mock/stats "in_flight" still counts both.

Everything else (options, headers, endpoints, timing) is the mock's own.
"""

import collections
import importlib.util
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK_PATH = os.path.join(HERE, "..", "mock", "mock_engine.py")


def load_mock():
    spec = importlib.util.spec_from_file_location("mock_engine", MOCK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("Instance", "MockHandler", "main"):
        if not hasattr(module, name):
            sys.exit("capped_engine: %s has no %s" % (MOCK_PATH, name))
    for name in ("handle_generation",):
        if not hasattr(module.MockHandler, name):
            sys.exit("capped_engine: MockHandler has no %s" % name)
    return module


class Slots:
    """N slots, FIFO hand-over to waiters."""

    def __init__(self, limit):
        self.limit = limit
        self.lock = threading.Lock()
        self.active = 0
        self.queue = collections.deque()

    def acquire(self):
        with self.lock:
            if self.active < self.limit and not self.queue:
                self.active += 1
                return
            turn = threading.Event()
            self.queue.append(turn)
        turn.wait()          # the releaser handed its slot over

    def release(self):
        with self.lock:
            if self.queue:
                self.queue.popleft().set()   # slot passes on, active same
            else:
                self.active -= 1

    def counts(self):
        with self.lock:
            return self.active, len(self.queue)


def take_option(argv, name):
    """Remove "--name VALUE" / "--name=VALUE" from argv; return VALUE."""
    value = None
    out = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
            continue
        if arg.startswith(name + "="):
            value = arg[len(name) + 1:]
            i += 1
            continue
        out.append(arg)
        i += 1
    return value, out


def main():
    value, argv = take_option(sys.argv[1:], "--max-running")
    try:
        limit = int(value)
        if limit < 1:
            raise ValueError
    except (TypeError, ValueError):
        sys.exit("capped_engine: --max-running N (N >= 1) is required")

    mock = load_mock()
    instance_init = mock.Instance.__init__
    generation = mock.MockHandler.handle_generation

    def init(self, *args, **kwargs):
        instance_init(self, *args, **kwargs)
        self.slots = Slots(limit)

    def handle_generation(self, *args, **kwargs):
        slots = self.server.instance.slots
        slots.acquire()
        try:
            return generation(self, *args, **kwargs)
        finally:
            slots.release()

    def metrics_text(self):
        active, queued = self.slots.counts()
        with self.lock:
            running = active + self.state["running_extra"]
            waiting = queued + self.state["waiting"]
            kv = self.state["kv"]
        label = '{model_name="%s"}' % self.config.models[0]
        lines = []
        for metric, value in (("vllm:num_requests_running", running),
                              ("vllm:num_requests_waiting", waiting),
                              ("vllm:kv_cache_usage_perc", kv)):
            lines.append("# TYPE %s gauge" % metric)
            lines.append("%s%s %r" % (metric, label, float(value)))
        return ("\n".join(lines) + "\n").encode("utf-8")

    mock.Instance.__init__ = init
    mock.Instance.metrics_text = metrics_text
    mock.MockHandler.handle_generation = handle_generation
    return mock.main(argv)


if __name__ == "__main__":
    sys.exit(main())
