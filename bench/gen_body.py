#!/usr/bin/env python3
"""Writes an OpenAI chat completion request body of an exact size.

    python3 bench/gen_body.py SIZE MODEL OUT [--stream]

The members come in the order the OpenAI SDKs send them: "messages" first,
then "model" (and "stream"), so the router has to scan past the whole
conversation before it finds the model.  The message contents are prose
with a few JSON escapes (newlines, quotes, a tab, a non-ASCII character)
like real prompts have; the last user message is padded so that the body
is exactly SIZE bytes.  Deterministic: same arguments, same bytes.
"""

import json
import sys

SENTENCES = [
    "Summarise the following log excerpt and point out anything unusual.",
    "The service \"gateway\" restarted at 03:12 after a failed health check.",
    "Here is the function:\n\n    def f(x):\n        return x * 2\n",
    "Keep the answer short; use bullet points where it helps.",
    "Temperature readings:\t21.5\t22.0\t22.4 \u00b0C over three hours.",
    "Explain why the second request was routed to the other pool.",
    "A user wrote: \"it worked yesterday, nothing changed\" \u2014 as usual.",
    "List the steps to reproduce, then the expected and the actual result.",
]


def filler(n):
    """About n bytes of JSON-encoded prose."""
    out, size, i = [], 0, 0
    while size < n:
        s = SENTENCES[i % len(SENTENCES)] + " "
        out.append(s)
        size += len(json.dumps(s, ensure_ascii=False).encode()) - 2
        i += 1
    return "".join(out)


def build(messages, model, stream):
    body = {"messages": messages, "model": model}
    if stream:
        body["stream"] = True
    body["max_tokens"] = 64
    return json.dumps(body, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    stream = "--stream" in sys.argv[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    size, model, out = int(args[0]), args[1], args[2]

    messages = [
        {"role": "system",
         "content": "You are a helpful assistant for an operations team."},
        {"role": "user", "content": ""},
    ]
    base = len(build(messages, model, stream))
    if base > size:
        sys.exit("gen_body: %d bytes is below the minimum %d" % (size, base))

    # pad with prose, then trim / top up with plain ASCII to the exact size
    text = filler(size - base)
    messages[1]["content"] = text
    while len(build(messages, model, stream)) > size:
        text = text[:-1]
        messages[1]["content"] = text
    while len(build(messages, model, stream)) < size:
        text += "."
        messages[1]["content"] = text

    data = build(messages, model, stream)
    assert len(data) == size, (len(data), size)
    json.loads(data)

    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
