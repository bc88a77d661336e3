#!/usr/bin/env python3
"""A peer that speaks the proxy's restart handover protocol, badly on purpose
(tests/e2e_restart.sh). Message: b"RVHO", version u16, type u16, payload
length u32 (big-endian), payload; descriptors ride along with SCM_RIGHTS.

  handover_peer.py new PATH CASE   connect to a running proxy's
                                   --handover-socket as a would-be new instance
  handover_peer.py old PATH CASE   listen on PATH as a would-be old instance
                                   for a proxy started with --takeover PATH
Prints what it saw ("refused: <reason>", "got N tunnels", ...); exits 0 when
the exchange went as the case expects to be able to observe it."""
import os
import socket
import struct
import sys
import time

HELLO, REFUSE, LISTENERS, TUNNELS, DONE, SERVING = 1, 2, 3, 4, 5, 6


def msg(mtype, payload=b"", version=1, length=None):
    n = len(payload) if length is None else length
    return b"RVHO" + struct.pack(">HHI", version, mtype, n) + payload


def recv(s, timeout=5.0):
    s.settimeout(timeout)
    data, fds, flags, _ = socket.recv_fds(s, 70000, 16)
    return data, fds


def parse(data):
    if len(data) < 12 or data[:4] != b"RVHO":
        return None, None
    _, mtype, _ = struct.unpack(">HHI", data[4:12])
    return mtype, data[12:]


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    return s


def expect_closed_or_refused(s):
    """The proxy must refuse or close; anything else is a failure."""
    try:
        data, fds = recv(s)
    except (ConnectionResetError, socket.timeout) as e:
        print("closed:", type(e).__name__)
        return 0 if isinstance(e, ConnectionResetError) else 1
    for fd in fds:
        os.close(fd)
    if not data:
        print("closed")
        return 0
    mtype, payload = parse(data)
    if mtype == REFUSE:
        print("refused:", payload.decode("utf-8", "replace"))
        return 0
    print("unexpected message type", mtype)
    return 1


def take_all(s):
    """HELLO, then everything up to DONE: returns (listener fds, tunnel fds)."""
    s.send(msg(HELLO))
    lfds, tfds = [], []
    while True:
        data, fds = recv(s)
        mtype, payload = parse(data)
        if mtype == LISTENERS:
            lfds += fds
        elif mtype == TUNNELS:
            tfds += fds
        elif mtype == DONE:
            return lfds, tfds
        else:
            raise SystemExit("unexpected message %r" % (mtype,))


def new_case(path, case):
    s = connect(path)
    if case == "garbage":
        s.send(b"GARBAGE-GARBAGE-GARBAGE")
        return expect_closed_or_refused(s)
    if case == "truncated":
        s.send(b"RVHO\x00")
        return expect_closed_or_refused(s)
    if case == "oversized":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.send(msg(HELLO, b"x" * 60000))
        return expect_closed_or_refused(s)
    if case == "lying":
        s.send(msg(HELLO, b"", length=4096))
        return expect_closed_or_refused(s)
    if case == "version":
        s.send(msg(HELLO, version=99))
        return expect_closed_or_refused(s)
    if case == "fds":
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
        socket.send_fds(s, [msg(HELLO)], fds)
        for fd in fds:
            os.close(fd)
        return expect_closed_or_refused(s)
    if case == "toomanyfds":
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(20)]
        socket.send_fds(s, [msg(HELLO)], fds)
        for fd in fds:
            os.close(fd)
        return expect_closed_or_refused(s)
    if case == "crash":
        # takes everything, then dies without SERVING
        lfds, tfds = take_all(s)
        print("got %d listeners %d tunnels" % (len(lfds), len(tfds)))
        os._exit(0)
    if case == "two":
        # holds a takeover open while a second one is tried
        lfds, tfds = take_all(s)
        print("first: got %d listeners %d tunnels" % (len(lfds), len(tfds)))
        s2 = connect(path)
        s2.send(msg(HELLO))
        rc = expect_closed_or_refused(s2)
        os._exit(rc)
    raise SystemExit("unknown case " + case)


def old_case(path, case):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ls.bind(path)
    ls.listen(1)
    ls.settimeout(20)
    s, _ = ls.accept()
    data, fds = recv(s)
    mtype, _ = parse(data)
    if mtype != HELLO:
        print("no HELLO")
        return 1
    null = [os.open("/dev/null", os.O_RDONLY) for _ in range(12)]
    tcp, keep = [], []
    for _ in range(2):  # real listening sockets, so that the checks go past them
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        t.listen(1)
        tcp.append(t.fileno())
        keep.append(t)
    if case == "nofds":
        s.send(msg(LISTENERS, bytes([2, 1, 2])))
    elif case == "toomanyfds":
        socket.send_fds(s, [msg(TUNNELS, struct.pack(">H", 1) + struct.pack(">H", 4) + b"RVTS")],
                        null)
    elif case == "lying":
        socket.send_fds(s, [msg(LISTENERS, bytes([2, 1, 2]))], tcp)
        socket.send_fds(s, [msg(TUNNELS, struct.pack(">HH", 1, 4000) + b"RVTS")], null[2:3])
    elif case == "badstate":
        socket.send_fds(s, [msg(LISTENERS, bytes([2, 1, 2]))], tcp)
        socket.send_fds(s, [msg(TUNNELS, struct.pack(">HH", 1, 4) + b"RVTS")], null[2:3])
        s.send(msg(DONE, struct.pack(">I", 1)))
        recv(s)  # SERVING
    elif case == "version":
        s.send(msg(REFUSE, b"x", version=7))
    elif case == "refuse":
        s.send(msg(REFUSE, b"not today\n\x00\xff"))
    elif case == "truncated":
        s.send(b"RVHO\x00\x01")
    elif case == "hangup":
        pass
    else:
        raise SystemExit("unknown case " + case)
    time.sleep(0.5)
    s.close()
    return 0


if __name__ == "__main__":
    role, path, case = sys.argv[1:4]
    sys.exit(new_case(path, case) if role == "new" else old_case(path, case))
