"""The test engines' listener: --listen HOST:PORT[=...], 'ready' once
bound, then one thread per connection running serve(conn)."""

import socket
import sys
import threading


def run(serve, backlog=128):
    spec = sys.argv[sys.argv.index('--listen') + 1].split('=')[0]
    host, port = spec.rsplit(':', 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(backlog)
    print('ready', flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
