#!/usr/bin/python3
"""Traffic for the HA end-to-end tests (stdlib only, run inside a namespace).

Usage:
  ha.py serve TCP_PORT UDP_PORT LIFETIME
        dual-stack TCP echo server (one thread per connection, lines echoed) and UDP echo
        server; exits after LIFETIME seconds
  ha.py idle ADDR PORT N DIR LIFETIME
        opens N TCP connections (each exchanges one line), writes DIR/ready ("N"), then stays
        idle. Whenever a file DIR/check-NAME appears it sends one line on every connection
        and waits up to 10 s for each echo, then writes DIR/result-NAME (JSON: alive, reset,
        closed, timeout, other) and removes the check file. DIR/stop or LIFETIME ends it.
  ha.py udp-stream ADDR PORT INTERVAL_MS SECONDS OUT
        one request every INTERVAL_MS for SECONDS, each answered by the echo server; writes
        OUT (JSON: sent, received, lost, max_gap_s, received_at: wall-clock times of the
        answers, in order, lost_sent_at: when the unanswered requests were sent)
ADDR decides the family (':' means IPv6). Every endpoint is bounded by its LIFETIME/SECONDS.
"""

import errno
import json
import os
import select
import socket
import sys
import threading
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def serve(tcp_port, udp_port, lifetime):
    end = time.monotonic() + lifetime
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind(("::", tcp_port))
    ls.listen(512)
    us = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    us.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    us.bind(("::", udp_port))

    def echo(c):
        c.settimeout(max(1.0, end - time.monotonic()))
        try:
            while True:
                b = c.recv(4096)
                if not b:
                    break
                c.sendall(b)
        except OSError:
            pass
        finally:
            c.close()

    def udp():
        while time.monotonic() < end:
            r, _, _ = select.select([us], [], [], 0.5)
            if r:
                data, peer = us.recvfrom(2048)
                us.sendto(data, peer)

    threading.Thread(target=udp, daemon=True).start()
    while time.monotonic() < end:
        r, _, _ = select.select([ls], [], [], 0.5)
        if r:
            c, _ = ls.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    return 0


def exchange(s, line):
    """Sends line, waits for its echo; returns 'alive', 'reset', 'closed', 'timeout' or 'other'."""
    try:
        s.sendall(line)
        got = b""
        while not got.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                return "closed"
            got += b
        return "alive" if got == line else "other"
    except socket.timeout:
        return "timeout"
    except ConnectionResetError:
        return "reset"
    except OSError as e:
        return "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "other"


def idle(addr, port, n, d, lifetime):
    end = time.monotonic() + lifetime
    conns = []
    for i in range(n):
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect((addr, port))
        if exchange(s, b"hello %d\n" % i) != "alive":
            print(f"connection {i}: no echo at open")
            return 1
        conns.append(s)
    with open(os.path.join(d, "ready.tmp"), "w") as f:
        f.write(str(n))
    os.rename(os.path.join(d, "ready.tmp"), os.path.join(d, "ready"))
    while time.monotonic() < end and not os.path.exists(os.path.join(d, "stop")):
        checks = sorted(f for f in os.listdir(d) if f.startswith("check-"))
        for c in checks:
            name = c[len("check-"):]
            counts = {"alive": 0, "reset": 0, "closed": 0, "timeout": 0, "other": 0}
            # Every connection first, then every answer: the whole check takes one round
            # trip (plus retransmissions), not N.
            pending = []
            for i, s in enumerate(conns):
                try:
                    s.sendall(b"ping %d %s\n" % (i, name.encode()))
                    pending.append((i, s))
                except ConnectionResetError:
                    counts["reset"] += 1
                except OSError as e:
                    counts["reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "other"] += 1
            deadline = time.monotonic() + 10
            for i, s in pending:
                want = b"ping %d %s\n" % (i, name.encode())
                try:
                    s.settimeout(max(0.01, deadline - time.monotonic()))
                    got = b""
                    while len(got) < len(want):
                        b = s.recv(4096)
                        if not b:
                            break
                        got += b
                    if not got:
                        counts["closed"] += 1
                    else:
                        counts["alive" if got == want else "other"] += 1
                except socket.timeout:
                    counts["timeout"] += 1
                except ConnectionResetError:
                    counts["reset"] += 1
                except OSError as e:
                    counts["reset" if e.errno == errno.ECONNRESET else "other"] += 1
            tmp = os.path.join(d, f"result-{name}.tmp")
            with open(tmp, "w") as f:
                json.dump(counts, f)
            os.rename(tmp, os.path.join(d, f"result-{name}"))
            os.remove(os.path.join(d, c))
        time.sleep(0.05)
    for s in conns:
        s.close()
    return 0


def udp_stream(addr, port, interval_ms, seconds, out):
    s = socket.socket(family(addr), socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.setblocking(False)
    interval = interval_ms / 1000.0
    start = time.monotonic()
    end = start + seconds
    nxt = start
    seq = 0
    answered = set()
    received_at = []
    sent_at = []
    while True:
        now = time.monotonic()
        if now >= end + 1.0:
            break
        if now >= nxt and now < end:
            sent_at.append(time.time())
            try:
                s.send(b"%d" % seq)
            except OSError:
                pass
            seq += 1
            nxt += interval
        timeout = max(0.0, min(nxt, end + 1.0) - time.monotonic())
        r, _, _ = select.select([s], [], [], timeout)
        if r:
            while True:
                try:
                    data = s.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                try:
                    k = int(data)
                except ValueError:
                    continue
                if k not in answered:
                    answered.add(k)
                    received_at.append(time.time())
    gaps = [b - a for a, b in zip(received_at, received_at[1:])]
    report = {
        "sent": seq,
        "received": len(answered),
        "lost": seq - len(answered),
        "interval_s": interval,
        "max_gap_s": max(gaps) if gaps else None,
        "received_at": received_at,
        "lost_sent_at": [t for k, t in enumerate(sent_at) if k not in answered],
    }
    with open(out + ".tmp", "w") as f:
        json.dump(report, f)
    os.rename(out + ".tmp", out)
    return 0


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "serve" and len(argv) == 5:
        return serve(int(argv[2]), int(argv[3]), float(argv[4]))
    if cmd == "idle" and len(argv) == 7:
        return idle(argv[2], int(argv[3]), int(argv[4]), argv[5], float(argv[6]))
    if cmd == "udp-stream" and len(argv) == 7:
        return udp_stream(argv[2], int(argv[3]), float(argv[4]), float(argv[5]), argv[6])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
