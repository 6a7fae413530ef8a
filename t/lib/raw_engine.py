#!/usr/bin/env python3
"""A hostile engine for t/031-response-attacks.t: it answers each request
with the raw bytes the request asks for, then closes the connection.

    X-Raw: base64 of the whole answer (status line, headers, body);
           "@REP(c,N)@" in it is N times the character c
    X-Raw-Split: 1   the answer is written one byte at a time
    X-Raw-Wait-Ms: N a pause before the connection is closed

Started like mock_engine.py: --listen HOST:PORT[=NAME], prints "ready".
"""

import base64
import re
import socket
import time

import engine_listen


def expand(raw):
    return re.sub(rb'@REP\((.),(\d+)\)@',
                  lambda m: m.group(1) * int(m.group(2)), raw)


def serve(conn):
    try:
        data = b''
        while b'\r\n\r\n' not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, body = data.partition(b'\r\n\r\n')
        headers = {}
        for line in head.split(b'\r\n')[1:]:
            name, _, value = line.partition(b':')
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b'content-length', b'0'))
        while len(body) < length:
            piece = conn.recv(65536)
            if not piece:
                break
            body += piece
        raw = expand(base64.b64decode(headers.get(b'x-raw', b'')))
        if headers.get(b'x-raw-split') == b'1':
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(raw)):
                conn.sendall(raw[i:i + 1])
                time.sleep(0.001)
        else:
            conn.sendall(raw)
        time.sleep(int(headers.get(b'x-raw-wait-ms', b'0')) / 1000.0)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    engine_listen.run(serve, 64)


if __name__ == '__main__':
    main()
