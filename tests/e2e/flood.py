#!/usr/bin/python3
"""Bounded floods and the legitimate traffic measured during them, for tests/e2e_trust.rs and
scripts/flood (stdlib only; run inside a lab namespace).

Spoofed sources come only from 198.18.0.0/15 (RFC 2544 benchmarking); destinations are the
lab's documentation addresses. Every flood is bounded by a packet count and a duration.

Usage:
  flood.py syn DST PORT COUNT TUPLES SECONDS
                          COUNT TCP SYNs to DST:PORT over SECONDS, cycling through TUPLES
                          spoofed (source, port) pairs; prints `sent N in S s`
  flood.py udp DST PORT COUNT TUPLES SECONDS
                          the same with 32-byte UDP datagrams
  flood.py ack DST PORT COUNT SECONDS
                          COUNT bare ACKs from random spoofed sources, random ports, random
                          sequence numbers (segments of no connection)
  flood.py echo-many PORT dual-stack TCP echo server for thousands of connections (one thread,
                          selectors); runs until killed
  flood.py attempts ADDR PORT N INTERVAL TIMEOUT OUT [BIND]
                          N HTTP requests (`GET /small`, apps.py httpd), one started every
                          INTERVAL seconds, each on a new connection given TIMEOUT seconds
                          in all, from the local address BIND if given; writes OUT (JSON:
                          ok, failed, errors by kind)
  flood.py accept-log PORT OUT
                          dual-stack TCP listener that appends the peer of every connection
                          it accepts to OUT (then closes it); runs until killed
  flood.py bad-ack SRC DST SPORT DPORT
                          one ACK from SRC:SPORT to DST:DPORT with a wrong TCP checksum (the
                          receiver drops it silently: the pickup attack's first packet)
  flood.py reuse-server PORT
                          TCP server for `reuse`: a connection's first line says what it does:
                          `hold` (answers `ok`, then keeps the socket after the peer's FIN:
                          CLOSE_WAIT), `gone` (answers `ok`, then after the peer's FIN resets
                          the socket: the test drops that RST in the server, so the gateway
                          never sees the end), `bulk N` (sends N bytes, closes), `sink N`
                          (reads N bytes, answers `ok`, closes)
  flood.py reuse ADDR PORT N FIRST MODE OUT
                          port reuse: from each local port FIRST..FIRST+N-1 (in parallel) a
                          connection `MODE` (hold or gone) closed by the client with a FIN
                          only, then, once the client's kernel frees the port, a new connection
                          from the same port (random ISN) that reads `bulk 1000000`; writes OUT
                          (JSON: ok, failed, errors by kind)
  flood.py transfers ADDR PORT CONNS SIZE OUT
                          CONNS connections to a `reuse-server`, half of them downloading SIZE
                          bytes (`bulk`), half uploading SIZE bytes (`sink`: the server answers
                          `ok` when all came); writes OUT (JSON: ok, failed, errors by kind)
"""

import json
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time

SPOOF_BASE = (198 << 24) | (18 << 16)  # 198.18.0.0/15
SPOOF_SIZE = 1 << 17


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0, 64,
                      proto, 0, src, dst)
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def l4_checksum(src, dst, proto, seg):
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    return checksum(pseudo + seg)


def tcp(src, dst, sport, dport, seq, ack, flags, options=b""):
    off = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 64240, 0, 0)
    seg += options
    c = l4_checksum(src, dst, 6, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, data):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4_checksum(src, dst, 17, seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def spoofed(rng):
    return struct.pack("!I", SPOOF_BASE + rng.randrange(SPOOF_SIZE))


def send_paced(packets, dst, count, seconds):
    """Sends `count` packets cycling through `packets`, evenly over `seconds`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    start = time.monotonic()
    sent = 0
    batch = 256
    n = len(packets)
    while sent < count:
        for i in range(sent, min(sent + batch, count)):
            try:
                s.sendto(packets[i % n], (dst, 0))
            except OSError:
                pass
        sent = min(sent + batch, count)
        ahead = start + seconds * sent / count - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    took = time.monotonic() - start
    print(f"sent {sent} in {took:.2f} s")


def flood_tuples(kind, dst, port, count, tuples, seconds):
    rng = random.Random(0x5EED)
    d = socket.inet_aton(dst)
    mss = struct.pack("!BBH", 2, 4, 1460)
    packets = []
    for i in range(tuples):
        src = spoofed(rng)
        sport = 1024 + rng.randrange(64000)
        if kind == "syn":
            seg = tcp(src, d, sport, port, rng.getrandbits(32), 0, 0x02, mss)
            packets.append(ipv4(src, d, 6, seg, i))
        else:
            seg = udp(src, d, sport, port, b"%032d" % i)
            packets.append(ipv4(src, d, 17, seg, i))
    send_paced(packets, dst, count, seconds)


def flood_ack(dst, port, count, seconds):
    rng = random.Random(0xACC)
    d = socket.inet_aton(dst)
    packets = []
    for i in range(min(count, 65536)):
        src = spoofed(rng)
        seg = tcp(src, d, 1024 + rng.randrange(64000), port, rng.getrandbits(32),
                  rng.getrandbits(32), 0x10)
        packets.append(ipv4(src, d, 6, seg, i))
    send_paced(packets, dst, count, seconds)


def echo_many(port):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                continue
            c = key.fileobj
            try:
                b = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if not b:
                sel.unregister(c)
                c.close()
                continue
            try:
                c.sendall(b)
            except OSError:
                sel.unregister(c)
                c.close()


def attempts(addr, port, n, interval, timeout, out, bind=""):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    results = [None] * n
    host = f"[{addr}]" if ":" in addr else addr

    def one(i):
        deadline = time.monotonic() + timeout
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(timeout)
            if bind:
                s.bind((bind, 0))
            s.connect((addr, port))
            s.sendall(f"GET /small HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                b = s.recv(4096)
                if not b:
                    break
                data += b
            s.close()
            results[i] = "ok" if data.endswith(b"small\n") else "short"
        except socket.timeout:
            results[i] = "timeout"
        except ConnectionRefusedError:
            results[i] = "refused"
        except ConnectionResetError:
            results[i] = "reset"
        except OSError as e:
            results[i] = f"error-{e.errno}"

    threads = []
    start = time.monotonic()
    for i in range(n):
        wait = start + i * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    errors = {}
    for r in results:
        if r != "ok":
            errors[r] = errors.get(r, 0) + 1
    ok = results.count("ok")
    with open(out + ".tmp", "w") as f:
        json.dump({"ok": ok, "failed": n - ok, "errors": errors}, f)
    os.rename(out + ".tmp", out)


def accept_log(port, out):
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::", port))
    ls.listen(64)
    while True:
        c, peer = ls.accept()
        with open(out, "a") as f:
            f.write(f"{peer[0]} {peer[1]}\n")
        c.close()


def bad_ack(src, dst, sport, dport):
    s_, d = socket.inet_aton(src), socket.inet_aton(dst)
    seg = tcp(s_, d, sport, dport, 1000, 2000, 0x10)
    seg = seg[:16] + struct.pack("!H", 0xDEAD if seg[16:18] != b"\xde\xad" else 0xBEEF) + seg[18:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(ipv4(s_, d, 6, seg, 1), (dst, 0))


def read_until_eof(c, limit):
    data = b""
    while len(data) < limit:
        b = c.recv(65536)
        if not b:
            break
        data += b
    return data


def reuse_server(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(256)
    held = []

    def serve(c):
        try:
            line = b""
            while not line.endswith(b"\n"):
                b = c.recv(1)
                if not b:
                    return
                line += b
            words = line.split()
            if words[0] == b"bulk":
                c.sendall(b"x" * int(words[1]))
                c.close()
                return
            if words[0] == b"sink":
                want = int(words[1])
                got = 0
                while got < want:
                    b = c.recv(65536)
                    if not b:
                        break
                    got += len(b)
                c.sendall(b"ok\n" if got == want else b"no\n")
                c.close()
                return
            c.sendall(b"ok\n")
            read_until_eof(c, 1 << 20)
            if words[0] == b"gone":
                # After the kernel acknowledged the peer's FIN (else the peer retransmits it
                # for minutes, into the dropped RSTs).
                time.sleep(0.1)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            else:
                held.append(c)
        except OSError:
            pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def write_result(out, results):
    errors = {}
    for r in results:
        if r != "ok":
            errors[str(r)] = errors.get(str(r), 0) + 1
    ok = results.count("ok")
    with open(out + ".tmp", "w") as f:
        json.dump({"ok": ok, "failed": len(results) - ok, "errors": errors}, f)
    os.rename(out + ".tmp", out)


def failure(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    return f"error-{e.errno}"


def reuse(addr, port, n, first, mode, out):
    results = [None] * n
    bulk = 1000000

    def bound(sport):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        return s

    def one(i):
        sport = first + i
        try:
            s = bound(sport)
            s.settimeout(5)
            s.connect((addr, port))
            s.sendall(mode.encode() + b"\n")
            if s.recv(3) != b"ok\n":
                results[i] = "first-no-ok"
                return
            # A FIN only: the client's socket ends in FIN_WAIT_2, which the client's kernel
            # forgets after tcp_fin_timeout, silently; the gateway still holds the old flow.
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.3)
            s.close()
        except OSError as e:
            results[i] = "first-" + failure(e)
            return
        deadline = time.monotonic() + 15
        while True:
            try:
                s = bound(sport)
                s.settimeout(max(0.1, min(6, deadline - time.monotonic())))
                s.connect((addr, port))
                break
            except OSError as e:
                s.close()
                # The old connection's FIN_WAIT_2 remnant still holds the tuple.
                if e.errno in (98, 99) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                results[i] = failure(e)
                return
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(b"bulk %d\n" % bulk)
            got = len(read_until_eof(s, bulk + 1))
            s.close()
            results[i] = "ok" if got == bulk else "short"
        except OSError as e:
            results[i] = failure(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_result(out, results)


def transfers(addr, port, conns, size, out):
    results = [None] * conns

    def one(i):
        try:
            s = socket.create_connection((addr, port), timeout=6)
            if i % 2 == 0:
                s.sendall(b"bulk %d\n" % size)
                got = len(read_until_eof(s, size + 1))
                results[i] = "ok" if got == size else f"short-{got}"
            else:
                s.sendall(b"sink %d\n" % size)
                s.sendall(b"y" * size)
                results[i] = "ok" if s.recv(3) == b"ok\n" else "no-ok"
            s.close()
        except OSError as e:
            results[i] = ("down-" if i % 2 == 0 else "up-") + failure(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_result(out, results)


COMMANDS = {
    "syn": ((str, int, int, int, float), lambda *a: flood_tuples("syn", *a)),
    "udp": ((str, int, int, int, float), lambda *a: flood_tuples("udp", *a)),
    "ack": ((str, int, int, float), flood_ack),
    "echo-many": ((int,), echo_many),
    "attempts": ((str, int, int, float, float, str, str), attempts),
    "accept-log": ((int, str), accept_log),
    "bad-ack": ((str, str, int, int), bad_ack),
    "reuse-server": ((int,), reuse_server),
    "reuse": ((str, int, int, int, str, str), reuse),
    "transfers": ((str, int, int, int, str), transfers),
}


def main(a):
    if a and a[0] in COMMANDS:
        types, fn = COMMANDS[a[0]]
        if a[0] == "attempts" and len(a) == 7:
            a = a + [""]
        if len(a) - 1 == len(types):
            return fn(*(t(v) for t, v in zip(types, a[1:]))) or 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
