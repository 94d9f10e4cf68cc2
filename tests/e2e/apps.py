#!/usr/bin/python3
"""Traffic endpoints for the statewall end-to-end tests (stdlib only, run inside a namespace).

Usage:
  apps.py conns ADDR PORT N            N sequential connect / GET / read / close; prints `ok N`
  apps.py sink ADDR PORT               threaded TCP server: reads each connection until EOF,
                                       then closes it (never sends data); for crafted probes
  apps.py echo ADDR PORT               accept one connection, echo every line, close on EOF
  apps.py keepalive ADDR PORT IDLE     connect with keepalive probes every second, send a line,
                                       stay idle IDLE seconds, send another line, check both
                                       echoes; prints `ok`
  apps.py simopen LADDR LPORT RADDR RPORT
                                       bind LPORT, connect to RADDR:RPORT (both sides do it:
                                       simultaneous open), exchange a line; prints `ok`
Every endpoint gives up after 30 s. ADDR decides the family (':' means IPv6).
"""

import socket
import sys
import threading
import time

LIMIT = 30.0


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def conns(addr, port, n):
    deadline = time.monotonic() + LIMIT
    req = f"GET /small HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode()
    for i in range(n):
        if time.monotonic() > deadline:
            print(f"timeout after {i} connections")
            return 1
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((addr, port))
        s.sendall(req)
        got = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
        s.close()
        if not got.startswith(b"HTTP/1.0 200"):
            print(f"connection {i}: bad answer {got[:40]!r}")
            return 1
    print(f"ok {n}")
    return 0


def sink(addr, port):
    ls = socket.socket(family(addr), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(64)

    def serve(c):
        c.settimeout(LIMIT)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def echo(addr, port):
    ls = socket.socket(family(addr), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(4)
    ls.settimeout(LIMIT)
    c, _ = ls.accept()
    c.settimeout(LIMIT)
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()


def read_line(s):
    got = b""
    while not got.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        got += b
    return got


def keepalive(addr, port, idle):
    s = socket.create_connection((addr, port), timeout=LIMIT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    s.sendall(b"before idle\n")
    a = read_line(s)
    time.sleep(idle)
    s.sendall(b"after idle\n")
    b = read_line(s)
    s.close()
    if a == b"before idle\n" and b == b"after idle\n":
        print("ok")
        return 0
    print(f"bad echoes {a!r} {b!r}")
    return 1


def simopen(laddr, lport, raddr, rport):
    s = socket.socket(family(laddr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((laddr, lport))
    s.settimeout(LIMIT)
    # The peer's first SYN may arrive before the peer connects; its kernel's RST is dropped by
    # the test's iptables rule, so the SYN is retransmitted and the SYNs cross.
    s.connect((raddr, rport))
    s.sendall(f"hello from {laddr}\n".encode())
    got = read_line(s)
    s.close()
    if got == f"hello from {raddr}\n".encode():
        print("ok")
        return 0
    print(f"bad greeting {got!r}")
    return 1


def main(a):
    if len(a) == 4 and a[0] == "conns":
        return conns(a[1], int(a[2]), int(a[3]))
    if len(a) == 3 and a[0] == "sink":
        sink(a[1], int(a[2]))
        return 0
    if len(a) == 3 and a[0] == "echo":
        echo(a[1], int(a[2]))
        return 0
    if len(a) == 4 and a[0] == "keepalive":
        return keepalive(a[1], int(a[2]), float(a[3]))
    if len(a) == 5 and a[0] == "simopen":
        return simopen(a[1], int(a[2]), a[3], int(a[4]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
