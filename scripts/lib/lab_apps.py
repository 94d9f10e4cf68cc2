#!/usr/bin/python3
"""Tiny traffic endpoints for the statewall lab (stdlib only; run inside a namespace).

Usage:
  lab_apps.py httpd ADDR PORT DIR           HTTP/1.1 (keep-alive) static server, quiet
  lab_apps.py halfclose-server ADDR PORT    accept one conn, read to EOF (peer SHUT_WR),
                                            then send 10 x 1000 bytes over 1 s and close
  lab_apps.py halfclose-client ADDR PORT    connect, send, shutdown(SHUT_WR), read to EOF
  lab_apps.py keepalive-server ADDR PORT    accept one conn, read until the peer closes
  lab_apps.py keepalive-client ADDR PORT [IDLE_S]
                                            connect with SO_KEEPALIVE, TCP_KEEPIDLE=1,
                                            TCP_KEEPINTVL=1, send 3 bytes, stay idle IDLE_S
                                            (default 5) seconds, close
Every endpoint gives up after 30 s. ADDR decides the family (':' means IPv6).
"""

import functools
import http.server
import socket
import sys
import time

LIMIT = 30.0


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def listener(addr, port):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    s.settimeout(LIMIT)
    return s


def httpd(addr, port, directory):
    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = family(addr)

    srv = Server((addr, port), functools.partial(Handler, directory=directory))
    srv.serve_forever()


def halfclose_server(addr, port):
    ls = listener(addr, port)
    c, _ = ls.accept()
    c.settimeout(LIMIT)
    while c.recv(65536):
        pass  # until the client's FIN
    for _ in range(10):
        c.sendall(b"s" * 1000)
        time.sleep(0.1)
    c.close()


def halfclose_client(addr, port):
    c = socket.create_connection((addr, port), timeout=LIMIT)
    c.sendall(b"request: send me data after my FIN\n")
    c.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    c.close()
    print(f"halfclose-client: received {got} bytes")


def keepalive_server(addr, port):
    ls = listener(addr, port)
    c, _ = ls.accept()
    c.settimeout(LIMIT)
    while c.recv(65536):
        pass
    c.close()


def keepalive_client(addr, port, idle):
    c = socket.create_connection((addr, port), timeout=LIMIT)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 10)
    c.sendall(b"hi\n")
    time.sleep(idle)
    c.close()


def main(a):
    if len(a) == 4 and a[0] == "httpd":
        httpd(a[1], int(a[2]), a[3])
    elif len(a) == 3 and a[0] == "halfclose-server":
        halfclose_server(a[1], int(a[2]))
    elif len(a) == 3 and a[0] == "halfclose-client":
        halfclose_client(a[1], int(a[2]))
    elif len(a) == 3 and a[0] == "keepalive-server":
        keepalive_server(a[1], int(a[2]))
    elif len(a) in (3, 4) and a[0] == "keepalive-client":
        keepalive_client(a[1], int(a[2]), float(a[3]) if len(a) == 4 else 5.0)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
