#!/usr/bin/env python3
"""A hostile engine for the router's own client (t/032-probe-attacks.t):
checks, scrapes, limits and /tokenize.  It answers every request for a
path with the raw bytes set for that path by POST /mock/control:

    {"path": "/health", "raw": BASE64, "mode": MODE, "more": BASE64}

"@REP(c,N)@" in raw or more is N times the character c.  MODE:
    once    raw, then close (the default)
    split   raw one byte at a time, then close
    hold    raw, then the connection stays open until the router closes it
    drip    raw, then more one byte a second until the router closes
    flood   raw, then more again and again as fast as the router reads

GET /mock/stats: {"requests": {PATH: N}, "open": N, "closed": [seconds
each probe connection lived, in order]}.  POST /mock/reset forgets the
counts.  Started like mock_engine.py: --listen HOST:PORT[=NAME], prints
"ready".
"""

import base64
import json
import re
import socket
import threading
import time

import engine_listen


lock = threading.Lock()
answers = {}
stats = {'requests': {}, 'open': 0, 'closed': []}


def expand(raw):
    return re.sub(rb'@REP\((.),(\d+)\)@',
                  lambda m: m.group(1) * int(m.group(2)), raw)


def reply(conn, body):
    data = json.dumps(body).encode()
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                 b'Content-Length: ' + str(len(data)).encode()
                 + b'\r\nConnection: close\r\n\r\n' + data)


def read_request(conn):
    data = b''
    while b'\r\n\r\n' not in data:
        piece = conn.recv(65536)
        if not piece:
            return None, None
        data += piece
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.split(b'\r\n')
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-length':
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    parts = lines[0].split(b' ')
    path = parts[1].decode() if len(parts) > 1 else '/'
    return path, body


def wait_close(conn, seconds):
    """True once the router closed its end (within seconds)."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def answer(conn, a):
    raw = a['raw']
    mode = a['mode']
    if mode == 'split':
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            conn.sendall(raw[i:i + 1])
            time.sleep(0.001)
        return
    conn.sendall(raw)
    if mode == 'hold':
        wait_close(conn, 60)
    elif mode == 'drip':
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        more = a['more'] or b'x'
        i = 0
        while not wait_close(conn, 1):
            conn.sendall(more[i % len(more):i % len(more) + 1])
            i += 1
    elif mode == 'flood':
        more = a['more'] * (262144 // max(1, len(a['more'])) + 1)
        end = time.time() + 60
        while time.time() < end:
            conn.sendall(more)


def serve(conn):
    start = time.time()
    probe = False
    try:
        path, body = read_request(conn)
        if path is None:
            return
        if path == '/mock/control':
            c = json.loads(body)
            with lock:
                answers[c['path']] = {
                    'raw': expand(base64.b64decode(c.get('raw', ''))),
                    'more': expand(base64.b64decode(c.get('more', ''))),
                    'mode': c.get('mode', 'once')}
            reply(conn, {'ok': 1})
            return
        if path == '/mock/stats':
            with lock:
                reply(conn, stats)
            return
        if path == '/mock/reset':
            with lock:
                stats['requests'] = {}
                stats['closed'] = []
            reply(conn, {'ok': 1})
            return
        probe = True
        with lock:
            stats['requests'][path] = stats['requests'].get(path, 0) + 1
            stats['open'] += 1
            a = answers.get(path)
        if a:
            answer(conn, a)
    except OSError:
        pass
    finally:
        conn.close()
        if probe:
            with lock:
                stats['open'] -= 1
                stats['closed'].append(round(time.time() - start, 2))


def main():
    engine_listen.run(serve, 128)


if __name__ == '__main__':
    main()
