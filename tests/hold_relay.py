#!/usr/bin/env python3
"""A TCP relay that holds what its clients send until a file exists
(tests/e2e_restart.sh): a handshake that reaches the proxy late.

  hold_relay.py LISTEN_PORT UPSTREAM_PORT RELEASE_FILE

Each accepted connection is dialed to 127.0.0.1:UPSTREAM_PORT at once
(prints "connected N"); the upstream's bytes pass through at once, the
client's wait until RELEASE_FILE exists, then everything passes through."""
import os
import socket
import sys
import threading
import time


def pipe(src, dst, release):
    try:
        while release and not os.path.exists(release):
            time.sleep(0.02)
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    port, up, release = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    n = 0
    while True:
        c, _ = ls.accept()
        u = socket.create_connection(("127.0.0.1", up))
        n += 1
        print("connected", n, flush=True)
        threading.Thread(target=pipe, args=(c, u, release), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c, None), daemon=True).start()


main()
