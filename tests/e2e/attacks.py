#!/usr/bin/python3
"""Attack traffic of tests/e2e_attacks.rs (scapy and raw sockets; run in a lab namespace).

Usage:
  attacks.py udp-big ADDR PORT SIZE N       N datagrams of SIZE bytes to a `apps.py udp-echo`
                                            server, each echoed back (the kernel fragments
                                            both ways); prints `ok N`
  attacks.py tcp-frag ADDR PORT SPORT SIZE  handshake from SPORT (scapy: the client kernel's
                                            RSTs from SPORT must be dropped), one segment of
                                            SIZE bytes sent as IP fragments of <= 1000 bytes,
                                            waits for the server's ACK of all of it; prints
                                            `ok acked SIZE`
  attacks.py frag-flood V N                 N non-first fragments (no first fragment ever),
                                            distinct identifiers, spoofed sources from
                                            198.18.0.0/15 (V=4) or 2001:db8:ffff::/48 (V=6),
                                            to the server; prints `sent N in S s`
  attacks.py conn ADDR PORT SPORT OUT.json  handshake and 100 bytes of data from SPORT
                                            (scapy), then writes the flow's sequence state
  attacks.py icmp-inject STATE.json ROUTER OUT.json
                                            from a router's address, ICMP errors to the client
                                            quoting its segment with sequence numbers inside
                                            and outside its window; writes what to look for
  attacks.py icmp-check CAPTURE.pcap EXPECT.json   prints {name: packets seen} as JSON
  attacks.py spoof VICTIM DST N             N spoofed probes "from" VICTIM to DST: FIN,
                                            XMAS, NULL, SYN and UDP to N ports each
"""

import json
import os
import random
import socket
import struct
import sys
import time

from scapy.all import (  # noqa: E402  (Debian python3-scapy)
    ICMP, IP, TCP, UDP, ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6,
    IPv6ExtHdrFragment, Raw, conf, fragment, fragment6, rdpcap, send, sniff, sr1,
)

conf.verb = 0
WAIT = 3


def is_v6(addr):
    return ":" in addr


def udp_big(addr, port, size, n):
    fam = socket.AF_INET6 if is_v6(addr) else socket.AF_INET
    for i in range(n):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.connect((addr, port))
        msg = (f"big {i} ".encode() * (size // 6 + 1))[:size]
        s.send(msg)
        try:
            got = s.recv(65536)
        except socket.timeout:
            print(f"datagram {i}: no echo")
            return 1
        if got != msg:
            print(f"datagram {i}: bad echo ({len(got)} bytes)")
            return 1
        s.close()
    print(f"ok {n}")
    return 0


def ip_to(addr):
    return IPv6(dst=addr) if is_v6(addr) else IP(dst=addr, flags=0)


def handshake(addr, port, sport):
    isn = 1_000_000 + sport
    syn = ip_to(addr) / TCP(sport=sport, dport=port, flags="S", seq=isn, window=64240,
                            options=[("MSS", 1460)])
    sa = sr1(syn, timeout=WAIT)
    if sa is None or TCP not in sa or sa[TCP].flags != 0x12:
        raise SystemExit(f"no SYN/ACK for source port {sport}")
    seq, ack = isn + 1, sa[TCP].seq + 1
    send(ip_to(addr) / TCP(sport=sport, dport=port, flags="A", seq=seq, ack=ack,
                           window=64240))
    return seq, ack


def tcp_frag(addr, port, sport, size):
    seq, ack = handshake(addr, port, sport)
    seg = ip_to(addr) / TCP(sport=sport, dport=port, flags="PA", seq=seq, ack=ack,
                            window=64240) / Raw(bytes(size))
    if is_v6(addr):
        seg = IPv6(dst=addr) / IPv6ExtHdrFragment(id=0x5000 + sport) / seg[TCP]
        frags = fragment6(seg, 1000)
    else:
        seg[IP].id = 0x5000 + sport
        frags = fragment(seg, fragsize=976)
    want = seq + size
    flt = f"tcp and src port {port} and dst port {sport}"
    got = sniff(filter=flt, timeout=WAIT, lfilter=lambda p: TCP in p and p[TCP].ack == want,
                count=1, started_callback=lambda: send(frags))
    # Leave no connection behind.
    send(ip_to(addr) / TCP(sport=sport, dport=port, flags="R", seq=want))
    if not got:
        print(f"no ACK of {size} bytes (sent {len(frags)} fragments)")
        return 1
    print(f"ok acked {size} in {len(frags)} fragments")
    return 0


def frag_flood(v, n):
    t0 = time.monotonic()
    if v == 4:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        dst = socket.inet_aton("203.0.113.2")
        for i in range(n):
            src = socket.inet_aton(f"198.{18 + (i >> 16 & 1)}.{i >> 8 & 255}.{i & 255}")
            payload = bytes(64)
            # Non-first fragment: offset 8 units, more fragments; UDP.
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), i & 0xffff,
                              0x2000 | 8, 64, 17, 0, src, dst)
            s.sendto(hdr + payload, ("203.0.113.2", 0))
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        dst = socket.inet_pton(socket.AF_INET6, "2001:db8:2::2")
        for i in range(n):
            src = socket.inet_pton(socket.AF_INET6, f"2001:db8:ffff::{i >> 16 & 1:x}:{i & 0xffff:x}")
            frag = struct.pack("!BBHI", 17, 0, (8 << 3) | 1, i)
            body = frag + bytes(64)
            hdr = struct.pack("!IHBB16s16s", 6 << 28, len(body), 44, 64, src, dst)
            s.sendto(hdr + body, ("2001:db8:2::2", 0))
    print(f"sent {n} in {time.monotonic() - t0:.2f} s")
    return 0


def conn(addr, port, sport, out):
    seq, ack = handshake(addr, port, sport)
    send(ip_to(addr) / TCP(sport=sport, dport=port, flags="PA", seq=seq, ack=ack,
                           window=64240) / Raw(bytes(100)))
    seq += 100
    probe = socket.socket(socket.AF_INET6 if is_v6(addr) else socket.AF_INET,
                          socket.SOCK_DGRAM)
    probe.connect((addr, 9))
    client = probe.getsockname()[0]
    state = {"client": client, "server": addr, "sport": sport, "dport": port, "seq": seq,
             "ack": ack}
    with open(out, "w") as f:
        json.dump(state, f)
    print(f"ok seq {seq} ack {ack}")
    return 0


def icmp_inject(state_path, router, out):
    """ICMP errors from `router` to the client about its connection (state from `conn`)."""
    with open(state_path) as f:
        st = json.load(f)
    srv, sport, dport, seq = st["server"], st["sport"], st["dport"], st["seq"]
    cli = st["client"]
    v6 = is_v6(srv)
    expect = []
    cases = [("in_window", seq, "pass"), ("sent_data", seq - 100, "pass"),
             ("above", seq + 300_000, "drop"), ("below", seq - 300_000, "drop"),
             ("opposite", seq + 0x8000_0000, "drop")]
    kinds = ["toobig", "unreach", "exceeded"] if v6 else ["needfrag", "unreach", "exceeded"]
    n = 0
    for kind in kinds:
        for name, s, verdict in cases:
            n += 1
            s %= 1 << 32
            if v6:
                quoted = IPv6(src=cli, dst=srv, hlim=63) / TCP(sport=sport, dport=dport,
                                                               flags="A", seq=s)
                icmp = {"toobig": ICMPv6PacketTooBig(mtu=1280),
                        "unreach": ICMPv6DestUnreach(code=3),
                        "exceeded": ICMPv6TimeExceeded(code=0)}[kind]
                p = IPv6(src=router, dst=cli, hlim=64) / icmp / Raw(bytes(quoted))
            else:
                quoted = IP(src=cli, dst=srv, ttl=63, id=n) / TCP(sport=sport, dport=dport,
                                                                  flags="A", seq=s)
                icmp = {"needfrag": ICMP(type=3, code=4, nexthopmtu=1280),
                        "unreach": ICMP(type=3, code=1),
                        "exceeded": ICMP(type=11, code=0)}[kind]
                p = IP(src=router, dst=cli, ttl=64, id=1000 + n) / icmp / Raw(bytes(quoted)[:28])
            send(p)
            expect.append({"name": f"{kind}_{name}", "expect": verdict, "seq": s,
                           "type": int(icmp.type)})
    with open(out, "w") as f:
        json.dump(expect, f, indent=1)
    print(f"sent {n}")
    return 0


def icmp_check(pcap, expect_path):
    with open(expect_path) as f:
        expect = json.load(f)
    seen = {e["name"]: 0 for e in expect}
    for p in rdpcap(pcap):
        q = None
        raw = None
        if ICMP in p and p[ICMP].type in (3, 11):
            raw = bytes(p[ICMP].payload)
            if len(raw) >= 28:
                q = struct.unpack("!I", raw[24:28])[0], p[ICMP].type
        elif IPv6 in p and p[IPv6].nh == 58:
            body = bytes(p[IPv6].payload)
            if len(body) >= 8 + 40 + 8 and body[0] in (1, 2, 3):
                q = struct.unpack("!I", body[8 + 40 + 4:8 + 40 + 8])[0], body[0]
        if q is None:
            continue
        for e in expect:
            if (e["seq"], e["type"]) == q:
                seen[e["name"]] += 1
    print(json.dumps(seen))
    return 0


def spoof(victim, dst, n):
    v6 = is_v6(victim)
    base = IPv6(src=victim, dst=dst) if v6 else IP(src=victim, dst=dst)
    pkts = []
    for port in range(1, n + 1):
        for flags in ("F", "FPU", ""):
            pkts.append(base / TCP(sport=47000, dport=port, flags=flags, seq=1))
        pkts.append(base / TCP(sport=47001, dport=2000 + port, flags="S", seq=1))
        pkts.append(base / TCP(sport=47002, dport=1000 + port, flags="S", seq=1))
        pkts.append(base / UDP(sport=47003, dport=3000 + port) / Raw(b"x"))
    send(pkts)
    print(f"sent {len(pkts)}")
    return 0


def main(a):
    cmd = a[0] if a else ""
    if cmd == "udp-big" and len(a) == 5:
        return udp_big(a[1], int(a[2]), int(a[3]), int(a[4]))
    if cmd == "tcp-frag" and len(a) == 5:
        return tcp_frag(a[1], int(a[2]), int(a[3]), int(a[4]))
    if cmd == "frag-flood" and len(a) == 3:
        return frag_flood(int(a[1]), int(a[2]))
    if cmd == "conn" and len(a) == 5:
        return conn(a[1], int(a[2]), int(a[3]), a[4])
    if cmd == "icmp-inject" and len(a) == 4:
        return icmp_inject(a[1], a[2], a[3])
    if cmd == "icmp-check" and len(a) == 3:
        return icmp_check(a[1], a[2])
    if cmd == "spoof" and len(a) == 4:
        return spoof(a[1], a[2], int(a[3]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
