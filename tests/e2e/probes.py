#!/usr/bin/python3
"""Crafted TCP probes through the gateway (scapy; run in the client namespace).

Usage:
  probes.py send DST DPORT BASE_SPORT OUT.json [WARM]
                                                 send every probe, write what to look for;
                                                 WARM: data segments each connection sends
                                                 (each acknowledged) before its probe, so that
                                                 statewall has offloaded it to the kernel
                                                 fast path (default 0)
  probes.py lone DST DPORT BASE_SPORT OUT.json [NAME:SPORT:DPORT:SEQ:ACK ...]
                                                 only the packets of no connection (no server
                                                 needed): ack, fin, null, xmas, syn_fin, ...;
                                                 then one data segment (PSH/ACK) per NAME on
                                                 that tuple, as if mid-stream (a flow the
                                                 kernel table holds, e.g. after a failover)
  probes.py check CAPTURE.pcap EXPECT.json       print {probe: packets seen} as JSON

`send` talks to a `apps.py sink` server at DST:DPORT. Each probe uses its own source port
(BASE_SPORT + n); the client kernel's RSTs from those ports must be dropped (iptables in the
client namespace), or it resets the flows scapy drives. For each probe it records the
signature of the one packet that matters (source port, flags, sequence and acknowledgement
numbers) and whether
it should reach the server (`pass`) or not (`drop`), and how many copies must arrive.
`check` counts, in a capture taken on the server's interface, the packets matching each
signature.
"""

import json
import sys

from scapy.all import IP, IPv6, TCP, Raw, conf, rdpcap, send, sniff, sr1  # noqa: E402

conf.verb = 0
WAIT = 2


class Prober:
    def __init__(self, dst, dport, base, warm=0):
        self.dst, self.dport, self.port = dst, dport, base
        self.warm = warm
        self.v6 = ":" in dst
        self.expect = []

    def ip(self):
        return IPv6(dst=self.dst) if self.v6 else IP(dst=self.dst)

    def pkt(self, sport, flags, seq, ack=0, payload=b"", window=64240):
        p = self.ip() / TCP(sport=sport, dport=self.dport, flags=flags, seq=seq, ack=ack,
                            window=window)
        return p / Raw(payload) if payload else p

    def next_port(self):
        self.port += 1
        return self.port

    def record(self, name, verdict, p, copies=1):
        t = p[TCP]
        self.expect.append({"name": name, "expect": verdict, "sport": t.sport,
                            "flags": int(t.flags), "seq": t.seq, "ack": t.ack,
                            "copies": copies})

    def lone(self, name, flags, payload=b""):
        """A packet of no connection."""
        p = self.pkt(self.next_port(), flags, 1000, ack=5000 if "A" in flags else 0,
                     payload=payload)
        send(p)
        self.record(name, "drop", p)

    def connect(self):
        """Handshake; returns (sport, next client seq, next server seq)."""
        sport = self.next_port()
        isn = 100000 + sport
        sa = sr1(self.pkt(sport, "S", isn), timeout=WAIT)
        if sa is None or sa[TCP].flags != 0x12:
            raise SystemExit(f"no SYN/ACK for source port {sport}")
        seq, ack = isn + 1, sa[TCP].seq + 1
        send(self.pkt(sport, "A", seq, ack))
        for i in range(self.warm):
            # Each segment waits for the server's ACK: segments each way validate the flow.
            p = self.pkt(sport, "PA", seq, ack, b"warm %d\n" % i)
            flt = f"tcp and src port {self.dport} and dst port {sport}"
            got = sniff(filter=flt, timeout=WAIT, count=1,
                        lfilter=lambda q, end=seq + len(p[Raw].load): (
                            TCP in q and q[TCP].ack == end),
                        started_callback=lambda p=p: send(p))
            if not got:
                raise SystemExit(f"no ACK for warm-up data on source port {sport}")
            seq += len(p[Raw].load)
        return sport, seq, ack

    def data(self, sport, seq, ack, payload):
        send(self.pkt(sport, "PA", seq, ack, payload))
        return seq + len(payload)

    def close(self, sport, seq, ack):
        """Client FIN first; waits for the server's FIN and acknowledges it."""
        fin = self.pkt(sport, "FA", seq, ack)
        flt = f"tcp and src port {self.dport} and dst port {sport}"
        got = sniff(filter=flt, timeout=WAIT, count=1,
                    lfilter=lambda p: TCP in p and p[TCP].flags & 0x01,
                    started_callback=lambda: send(fin))
        if not got:
            raise SystemExit(f"no FIN from the server on source port {sport}")
        seq += 1
        ack = got[0][TCP].seq + 1
        send(self.pkt(sport, "A", seq, ack))
        return seq, ack

    def segment(self, name, sport, dport, seq, ack):
        """One data segment of a flow this client never opened through scapy."""
        p = self.ip() / TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=ack,
                            window=64240) / Raw(f"{name}\n".encode())
        send(p)
        self.record(name, "drop", p)

    def lone_all(self):
        """Out-of-state packets of no connection: never reach the server."""
        self.lone("ack", "A")
        self.lone("fin", "F")
        self.lone("null", "")
        self.lone("xmas", "FPU")
        self.lone("syn_fin", "SF")
        self.lone("syn_rst", "SR")
        self.lone("fin_ack_maimon", "FA")
        self.lone("syn_ack", "SA")
        self.lone("data", "PA", b"no connection\n")
        return self.expect

    def run(self):
        self.lone_all()

        # Established connections and their invalid packets.
        s, seq, ack = self.connect()
        seq = self.data(s, seq, ack, b"hello\n")
        p = self.pkt(s, "PA", seq + 1_000_000, ack, b"far beyond the window\n")
        send(p)
        self.record("data_outside_window", "drop", p)

        s, seq, ack = self.connect()
        p = self.pkt(s, "A", seq, ack + 100_000)
        send(p)
        self.record("ack_unsent_data", "drop", p)

        s, seq, ack = self.connect()
        p = self.pkt(s, "R", seq + 1_000_000, 0)
        send(p)
        self.record("rst_out_of_window", "drop", p)

        s, seq, ack = self.connect()
        send(self.pkt(s, "R", seq, 0))
        p = self.pkt(s, "PA", seq, ack, b"after rst\n")
        send(p)
        self.record("data_after_rst", "drop", p)

        s, seq, ack = self.connect()
        seq = self.data(s, seq, ack, b"bye\n")
        seq, ack = self.close(s, seq, ack)
        p = self.pkt(s, "PA", seq, ack, b"after close\n")
        send(p)
        self.record("data_after_close", "drop", p)

        # Valid packets a strict middlebox must not drop.
        s, seq, ack = self.connect()
        p = self.pkt(s, "PA", seq, ack, b"sent twice\n")
        send(p)
        send(p)
        self.record("retransmitted_data", "pass", p, copies=2)

        s, seq, ack = self.connect()
        seq = self.data(s, seq, ack, b"then idle\n")
        p = self.pkt(s, "A", seq - 1, ack)
        send(p)
        self.record("keepalive", "pass", p)

        s, seq, ack = self.connect()
        seq = self.data(s, seq, ack, b"closing\n")
        seq, ack = self.close(s, seq, ack)
        p = self.pkt(s, "S", seq + 100_000, 0)
        sa = sr1(p, timeout=WAIT)
        self.record("syn_after_time_wait", "pass", p)
        if sa is not None and sa[TCP].flags == 0x12:
            send(self.pkt(s, "R", seq + 100_001, 0))  # leave no half-open socket behind
        return self.expect


def check(pcap, expect):
    seen = {e["name"]: 0 for e in expect}
    for p in rdpcap(pcap):
        if TCP not in p:
            continue
        t = p[TCP]
        for e in expect:
            if (t.sport, int(t.flags), t.seq, t.ack) == (e["sport"], e["flags"], e["seq"], e["ack"]):
                seen[e["name"]] += 1
    return seen


def main(a):
    if len(a) in (5, 6) and a[0] == "send":
        warm = int(a[5]) if len(a) == 6 else 0
        expect = Prober(a[1], int(a[2]), int(a[3]), warm).run()
        with open(a[4], "w") as f:
            json.dump(expect, f, indent=1)
        return 0
    if len(a) >= 5 and a[0] == "lone":
        prober = Prober(a[1], int(a[2]), int(a[3]))
        prober.lone_all()
        for spec in a[5:]:
            name, sport, dport, seq, ack = spec.split(":")
            prober.segment(name, int(sport), int(dport), int(seq), int(ack))
        with open(a[4], "w") as f:
            json.dump(prober.expect, f, indent=1)
        return 0
    if len(a) == 3 and a[0] == "check":
        with open(a[2]) as f:
            expect = json.load(f)
        print(json.dumps(check(a[1], expect)))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
