#!/usr/bin/python3
"""Traffic endpoints for the statewall lab: the e2e tests, scripts/demo and
scripts/record-captures all use these (stdlib only; run inside a namespace).

Usage:
  apps.py httpd ADDR PORT DIR          HTTP/1.1 (keep-alive) static server for DIR, quiet;
                                       ADDR `::` serves IPv4 and IPv6
  apps.py conns ADDR PORT N            N sequential connect / GET /small / read / close;
                                       prints `ok N`
  apps.py sink ADDR PORT               threaded TCP server: reads each connection until EOF,
                                       then closes it (never sends data)
  apps.py echo ADDR PORT               accept one connection, echo everything, close on EOF
  apps.py keepalive ADDR PORT IDLE     keepalive probes every second (3 unanswered: the
                                       kernel gives up), send a line, stay idle IDLE seconds,
                                       send another line, check both echoes (`echo` server);
                                       prints `ok`
  apps.py idle ADDR PORT [IDLE]        the same probes, send 3 bytes, stay idle IDLE (default
                                       5) seconds, close (`sink` server)
  apps.py halfclose-server ADDR PORT   accept one connection, read to EOF (peer SHUT_WR),
                                       then send 10 x 1000 bytes over 1 s and close
  apps.py halfclose-client ADDR PORT   connect, send, shutdown(SHUT_WR), read to EOF;
                                       prints `halfclose-client: received N bytes`
  apps.py simopen LADDR LPORT RADDR RPORT
                                       bind LPORT, connect to RADDR:RPORT (both sides do it:
                                       simultaneous open), exchange a line; prints `ok`
  apps.py trickle-server PORT          dual-stack TCP server: each connection gets 1 KiB
                                       every 50 ms for at most 40 s
  apps.py trickle-client ADDR PORT OUT connect, read; after each read write the byte count
                                       so far to OUT; gives up after 30 s of silence or 40 s
  apps.py udp-probe ADDR PORT          connected UDP socket: send one datagram, wait 2 s;
                                       prints `refused` (ICMP unreachable), `answer` or
                                       `timeout`
  apps.py udp-echo PORT                dual-stack UDP echo server (runs until killed)
  apps.py udp-client ADDR PORT N       N request/response exchanges; prints `ok N`
  apps.py echo-server PORT             dual-stack threaded TCP server: echoes everything on
                                       every connection (runs until killed)
  apps.py idle-set ADDR PORT N DIR     opens N connections to an `echo-server` (one line each),
                                       writes DIR/ready, stays idle; whenever DIR/check-NAME
                                       appears it sends a line on every connection, waits 10 s
                                       at most for the echoes and writes DIR/result-NAME (JSON
                                       counts: alive, reset, closed, timeout, other); ends on
                                       DIR/stop or after 600 s
  apps.py udp-stream ADDR PORT INTERVAL_MS SECONDS OUT
                                       a request every INTERVAL_MS for SECONDS to a `udp-echo`
                                       server; writes OUT (JSON: sent, received, lost,
                                       max_gap_s, received_at and lost_sent_at: wall-clock
                                       times of the answers and of the unanswered requests)
Clients and one-shot servers give up after 30 s of silence; the other servers run until
killed. ADDR decides the family (`:` means IPv6).
"""

import errno
import functools
import http.server
import json
import os
import select
import socket
import sys
import threading
import time

LIMIT = 30.0


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def dual_stack(s):
    """An IPv6 socket bound to `::` takes IPv4 too, whatever the namespace's default."""
    if s.family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def listener(addr, port, backlog=16, timeout=LIMIT):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dual_stack(s)
    s.bind((addr, port))
    s.listen(backlog)
    s.settimeout(timeout)
    return s


def serve_threads(ls, serve):
    """Accept forever, one thread per connection."""
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def read_line(s):
    got = b""
    while not got.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        got += b
    return got


# ---- TCP ----------------------------------------------------------------------------------


def httpd(addr, port, directory):
    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = family(addr)

        def server_bind(self):
            dual_stack(self.socket)
            super().server_bind()

    srv = Server((addr, port), functools.partial(Handler, directory=directory))
    srv.serve_forever()


def conns(addr, port, n):
    deadline = time.monotonic() + LIMIT
    req = f"GET /small HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode()
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
        if not got.startswith(b"HTTP/1.1 200"):
            print(f"connection {i}: bad answer {got[:40]!r}")
            return 1
    print(f"ok {n}")
    return 0


def sink(addr, port):
    def serve(c):
        c.settimeout(LIMIT)
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass
        c.close()

    serve_threads(listener(addr, port, backlog=64, timeout=None), serve)


def echo(addr, port):
    ls = listener(addr, port, backlog=4)
    c, _ = ls.accept()
    c.settimeout(LIMIT)
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()


def keepalive_conn(addr, port):
    """A connection with keepalive probes every second; 3 unanswered ones abort it."""
    s = socket.create_connection((addr, port), timeout=LIMIT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    return s


def keepalive(addr, port, idle):
    s = keepalive_conn(addr, port)
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


def idle_conn(addr, port, idle):
    s = keepalive_conn(addr, port)
    s.sendall(b"hi\n")
    time.sleep(idle)
    s.close()


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


def trickle_server(port):
    def serve(c):
        end = time.monotonic() + 40
        try:
            while time.monotonic() < end:
                c.sendall(b"x" * 1024)
                time.sleep(0.05)
        except OSError:
            pass
        c.close()

    serve_threads(listener("::", port, timeout=None), serve)


def trickle_client(addr, port, out):
    s = socket.socket(family(addr), socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((addr, port))
    s.settimeout(LIMIT)
    total = 0
    end = time.monotonic() + 40
    try:
        while time.monotonic() < end:
            b = s.recv(65536)
            if not b:
                break
            total += len(b)
            with open(out + ".tmp", "w") as f:
                f.write(str(total))
            os.replace(out + ".tmp", out)
    except OSError as e:
        print(f"error {e}")
    print(f"total {total}")


# ---- UDP ----------------------------------------------------------------------------------


def udp_probe(addr, port):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((addr, port))
    s.send(b"probe")
    try:
        s.recv(2048)
        print("answer")
    except ConnectionRefusedError:
        print("refused")
    except socket.timeout:
        print("timeout")


def udp_echo(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    dual_stack(s)
    s.bind(("::", port))
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def udp_client(addr, port, n):
    for i in range(n):
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.settimeout(2)
        s.connect((addr, port))
        msg = f"req {i}".encode()
        s.send(msg)
        if s.recv(2048) != msg:
            print(f"exchange {i}: bad answer")
            return 1
        s.close()
    print(f"ok {n}")
    return 0


def echo_server(port):
    ls = listener("::", port, backlog=1024, timeout=None)

    def serve(c):
        with c:
            while True:
                try:
                    b = c.recv(65536)
                    if not b:
                        return
                    c.sendall(b)
                except OSError:
                    return

    serve_threads(ls, serve)


def write_json(path, value):
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.rename(path + ".tmp", path)


def failure(e):
    """What an exception on a connection means: 'timeout', 'reset' or 'other'."""
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionResetError) or getattr(e, "errno", None) in (
        errno.ECONNRESET,
        errno.EPIPE,
    ):
        return "reset"
    return "other"


def idle_set(addr, port, n, d):
    end = time.monotonic() + 600
    conns = []
    for i in range(n):
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect((addr, port))
        line = b"hello %d\n" % i
        s.sendall(line)
        if read_line(s) != line:
            print(f"connection {i}: no echo at open")
            return 1
        conns.append(s)
    write_json(os.path.join(d, "ready"), n)
    while time.monotonic() < end and not os.path.exists(os.path.join(d, "stop")):
        for check in sorted(f for f in os.listdir(d) if f.startswith("check-")):
            name = check[len("check-"):]
            counts = {"alive": 0, "reset": 0, "closed": 0, "timeout": 0, "other": 0}
            # Every connection first, then every answer: one round trip for all of them.
            sent = []
            for i, s in enumerate(conns):
                line = b"ping %d %s\n" % (i, name.encode())
                try:
                    s.sendall(line)
                    sent.append((s, line))
                except OSError as e:
                    counts[failure(e)] += 1
            deadline = time.monotonic() + 10
            for s, line in sent:
                try:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    got = read_line(s)
                    if not got:
                        counts["closed"] += 1
                    else:
                        counts["alive" if got == line else "other"] += 1
                except OSError as e:
                    counts[failure(e)] += 1
            write_json(os.path.join(d, f"result-{name}"), counts)
            os.remove(os.path.join(d, check))
        time.sleep(0.05)
    for s in conns:
        s.close()


def udp_stream(addr, port, interval_ms, seconds, out):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.setblocking(False)
    interval = interval_ms / 1000.0
    start = time.monotonic()
    end = start + seconds
    nxt = start
    sent_at = []
    answered = set()
    received_at = []
    while time.monotonic() < end + 1.0:
        now = time.monotonic()
        if now >= nxt and now < end:
            sent_at.append(time.time())
            try:
                s.send(b"%d" % (len(sent_at) - 1))
            except OSError:
                pass
            nxt += interval
        r, _, _ = select.select([s], [], [], max(0.0, min(nxt, end + 1.0) - time.monotonic()))
        while r:
            try:
                k = int(s.recv(2048))
            except (OSError, ValueError):
                break
            if k not in answered:
                answered.add(k)
                received_at.append(time.time())
    gaps = [b - a for a, b in zip(received_at, received_at[1:])]
    write_json(out, {
        "sent": len(sent_at),
        "received": len(answered),
        "lost": len(sent_at) - len(answered),
        "max_gap_s": max(gaps) if gaps else None,
        "received_at": received_at,
        "lost_sent_at": [t for k, t in enumerate(sent_at) if k not in answered],
    })


# name: (argument converters, function); a function's None result means success.
COMMANDS = {
    "httpd": ((str, int, str), httpd),
    "conns": ((str, int, int), conns),
    "sink": ((str, int), sink),
    "echo": ((str, int), echo),
    "keepalive": ((str, int, float), keepalive),
    "idle": ((str, int, float), idle_conn),
    "halfclose-server": ((str, int), halfclose_server),
    "halfclose-client": ((str, int), halfclose_client),
    "simopen": ((str, int, str, int), simopen),
    "trickle-server": ((int,), trickle_server),
    "trickle-client": ((str, int, str), trickle_client),
    "udp-probe": ((str, int), udp_probe),
    "udp-echo": ((int,), udp_echo),
    "udp-client": ((str, int, int), udp_client),
    "echo-server": ((int,), echo_server),
    "idle-set": ((str, int, int, str), idle_set),
    "udp-stream": ((str, int, float, float, str), udp_stream),
}


def main(a):
    if a and a[0] in COMMANDS:
        types, fn = COMMANDS[a[0]]
        args = a[1:]
        if a[0] == "idle" and len(args) == 2:
            args = args + ["5"]
        if len(args) == len(types):
            return fn(*(t(v) for t, v in zip(types, args))) or 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
