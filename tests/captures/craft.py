#!/usr/bin/python3
"""Generate the crafted TCP captures and expected.json for statewall's replay tests.

Usage: /usr/bin/python3 tests/captures/craft.py [OUTDIR]      (default: this file's directory)
       /usr/bin/python3 tests/captures/craft.py --markdown    (print the per-packet tables)

Needs Debian's python3-scapy (hence /usr/bin/python3). Sends nothing: it only writes files.
Deterministic: fixed ISNs, ports, IP ids and timestamps, so reruns give identical bytes.

Captures are raw IP (pcap linktype 101, LINKTYPE_RAW: every record starts at the IPv4/IPv6
header). Client 198.51.100.2 (2001:db8:1::2), server 203.0.113.2 (2001:db8:2::2), as in the
lab. No window scaling and no timestamps are negotiated, so windows are plain byte counts
(65535) and nothing depends on PAWS. Every packet carries correct checksums.

Each packet is declared with the verdict a strict stateful firewall must give it:
PASS, or DROP(reason) with a reason name from tests/captures/EXPECTED.md. Index numbers in
expected.json are 1-based, in capture order. A dropped packet must not change the tracked
state, and the sequence numbers that follow assume exactly that.
"""

import json
import os
import sys

from scapy.all import (  # noqa: E402  (Debian python3-scapy)
    IP, IPv6, IPv6ExtHdrFragment, TCP, Ether, Raw, fragment, fragment6, wrpcap)

CLI4, SRV4 = "198.51.100.2", "203.0.113.2"
CLI6, SRV6 = "2001:db8:1::2", "2001:db8:2::2"
T0 = 1700000000.0  # fixed capture start time
LINKTYPE_RAW = 101
LINKTYPE_ETHERNET = 1
WIN = 65535
SYN_OPTS = [("MSS", 1460)]

PASS = None
# A fragment the gateway's kernel holds for reassembly: it gets no verdict of its own (the
# fragment that completes its datagram carries the datagram's).
HELD = "held"


def DROP(reason):
    return reason


class Capture:
    """Builds one capture: a list of (packet, verdict, comment)."""

    def __init__(self, name, ethernet=False):
        self.name = name
        self.rows = []
        self.ip_id = 1
        # Ethernet frames are padded to the 60-byte minimum, as on the wire.
        self.ethernet = ethernet
        # Seconds added to the capture time of the packets that follow (see `wait`).
        self.offset = 0.0
        self.times = []

    def add(self, pkt, verdict, comment):
        self.rows.append((pkt, verdict, comment))
        self.times.append(self.offset + len(self.times) * 0.01)

    def wait(self, seconds):
        """The packets added after this come `seconds` later."""
        self.offset += seconds

    def tcp(self, src_is_client, sport, dport, flags, seq=0, ack=0, payload=b"",
            win=WIN, v6=False, opts=None, verdict=PASS, comment=""):
        if v6:
            l3 = IPv6(src=CLI6 if src_is_client else SRV6,
                      dst=SRV6 if src_is_client else CLI6, hlim=64, fl=0)
        else:
            l3 = IP(src=CLI4 if src_is_client else SRV4,
                    dst=SRV4 if src_is_client else CLI4, ttl=64, id=self.ip_id, flags="DF")
            self.ip_id += 1
        l4 = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=win,
                 options=opts if opts is not None else [])
        pkt = l3 / l4
        if payload:
            pkt = pkt / Raw(load=payload)
        self.add(pkt, verdict, comment)

    def write(self, outdir):
        pkts = []
        for (pkt, _v, _c), at in zip(self.rows, self.times):
            p = pkt.__class__(bytes(pkt))  # freeze checksums/lengths
            if self.ethernet:
                frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02",
                                    type=0x86DD if IPv6 in p else 0x0800) / p)
                p = Ether(frame + bytes(max(0, 60 - len(frame))))
            p.time = T0 + at
            pkts.append(p)
        linktype = LINKTYPE_ETHERNET if self.ethernet else LINKTYPE_RAW
        wrpcap(os.path.join(outdir, self.name), pkts, linktype=linktype)

    def fragments(self, pkt, frags, verdict=PASS, comment=""):
        """`frags` of `pkt` in the order given: all held but the last, which completes the
        datagram and gets `verdict`."""
        for i, f in enumerate(frags):
            last = i == len(frags) - 1
            self.add(f, verdict if last else HELD, f"{comment} (fragment {i + 1}/{len(frags)})")

    def expected(self):
        drops = {str(i + 1): v for i, (_p, v, _c) in enumerate(self.rows)
                 if v is not None and v != HELD}
        held = sum(1 for (_p, v, _c) in self.rows if v == HELD)
        return {"drops": drops, "total": len(self.rows), "held": held}

    def markdown(self):
        out = [f"### {self.name}", "", "| # | dir | packet | verdict |", "|---|---|---|---|"]
        for i, (pkt, v, c) in enumerate(self.rows):
            if TCP in pkt:
                t = pkt[TCP]
                d = "c→s" if t.dport in (80, 8080) else "s→c"
                plen = len(t.payload)
                desc = f"{t.sprintf('%TCP.flags%')} seq={t.seq} ack={t.ack} len={plen} win={t.window}"
            else:
                src = pkt[IPv6].src if IPv6 in pkt else pkt[IP].src
                d = "c→s" if src in (CLI4, CLI6) else "s→c"
                desc = "fragment"
            if IPv6 in pkt:
                desc = "v6 " + desc
            verdict = {None: "pass", HELD: "held"}.get(v, f"**drop** `{v}`")
            out.append(f"| {i + 1} | {d} | {desc} — {c} | {verdict} |")
        out.append("")
        return "\n".join(out)


def craft_probes():
    """Packets that belong to no connection; each uses its own client port (no interplay)."""
    c = Capture("crafted-probes.pcap")
    P = 80
    # 1: bare ACK, no connection (ACK scan / stale flow): conntrack with loose=0 never picks up.
    c.tcp(True, 41001, P, "A", seq=1000, ack=2000, verdict=DROP("no_connection"),
          comment="bare ACK, no connection")
    # 2: FIN alone (FIN scan): FIN without ACK is an invalid flag combination.
    c.tcp(True, 41002, P, "F", seq=1000, verdict=DROP("tcp_fin_no_ack"),
          comment="FIN without ACK (FIN scan)")
    # 3: NULL scan: no flags at all.
    c.tcp(True, 41003, P, "", seq=1000, verdict=DROP("tcp_null"), comment="no flags (NULL scan)")
    # 4: XMAS scan: FIN+PSH+URG.
    c.tcp(True, 41004, P, "FPU", seq=1000, verdict=DROP("tcp_xmas"), comment="FIN+PSH+URG (XMAS scan)")
    # 5: SYN+FIN.
    c.tcp(True, 41005, P, "SF", seq=1000, opts=SYN_OPTS, verdict=DROP("tcp_syn_fin"),
          comment="SYN+FIN")
    # 6: SYN+RST.
    c.tcp(True, 41006, P, "SR", seq=1000, verdict=DROP("tcp_syn_rst"), comment="SYN+RST")
    # 7: FIN+ACK with no connection (stale close / FIN-ACK scan).
    c.tcp(True, 41007, P, "FA", seq=1000, ack=2000, verdict=DROP("no_connection"),
          comment="FIN+ACK, no connection")
    # 8: stray SYN/ACK from the server side with no SYN before it (SYN/ACK scan, backscatter).
    c.tcp(False, P, 41008, "SA", seq=5000, ack=1001, opts=SYN_OPTS,
          verdict=DROP("no_connection"), comment="stray SYN/ACK from server, no SYN seen")
    # 9: data segment (PSH+ACK with payload) with no connection.
    c.tcp(True, 41009, P, "PA", seq=1000, ack=2000, payload=b"GET / HTTP/1.0\r\n\r\n",
          verdict=DROP("no_connection"), comment="PSH+ACK with 18 bytes of data, no connection")
    # 10: bare RST with no connection.
    c.tcp(True, 41010, P, "R", seq=1000, verdict=DROP("no_connection"), comment="RST, no connection")
    # 11: FIN+PSH+URG+ACK+SYN+RST (all flags): invalid combination.
    c.tcp(True, 41011, P, "FSRPAU", seq=1000, ack=2000, verdict=DROP("tcp_syn_fin"),
          comment="all six flags set")
    # 12: IPv6 bare ACK, no connection.
    c.tcp(True, 41012, P, "A", seq=1000, ack=2000, v6=True, verdict=DROP("no_connection"),
          comment="IPv6 bare ACK, no connection")
    # 13: IPv6 XMAS.
    c.tcp(True, 41013, P, "FPU", seq=1000, v6=True, verdict=DROP("tcp_xmas"),
          comment="IPv6 FIN+PSH+URG (XMAS)")
    # 14: control: a plain SYN opens a new connection; state checks let it through
    #     (the rule set then decides).
    c.tcp(True, 41014, P, "S", seq=1000, opts=SYN_OPTS, verdict=PASS,
          comment="plain SYN (control: a valid new connection attempt)")
    return c


def handshake(c, sport, dport, cisn=1000, sisn=5000, v6=False):
    c.tcp(True, sport, dport, "S", seq=cisn, opts=SYN_OPTS, v6=v6, comment="SYN")
    c.tcp(False, dport, sport, "SA", seq=sisn, ack=cisn + 1, opts=SYN_OPTS, v6=v6, comment="SYN/ACK")
    c.tcp(True, sport, dport, "A", seq=cisn + 1, ack=sisn + 1, v6=v6, comment="ACK (established)")


def craft_window():
    c = Capture("crafted-window.pcap")
    C, S = 40100, 80
    handshake(c, C, S)                                                    # 1-3
    # 4: valid data 1001..1100
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"a" * 100, comment="100 bytes data")
    # 5: server acks it
    c.tcp(False, S, C, "A", seq=5001, ack=1101, comment="server ACKs the data")
    # 6: data starting 1,000,000 bytes past what the server's window (65535) allows
    c.tcp(True, C, S, "PA", seq=1101 + 1_000_000, ack=5001, payload=b"b" * 100,
          verdict=DROP("seq_above_window"), comment="data 1,000,000 bytes beyond the window")
    # 7: client ACKs 1,000,000 bytes the server never sent
    c.tcp(True, C, S, "A", seq=1101, ack=5001 + 1_000_000, verdict=DROP("ack_unsent_data"),
          comment="ACK for 1,000,000 bytes never sent by the server")
    # 8: server RST with seq far outside the client's receive window
    c.tcp(False, S, C, "R", seq=5001 + 10_000_000, verdict=DROP("rst_out_of_window"),
          comment="RST seq 10,000,000 past the expected one (outside the window)")
    # 9: server RST inside the window but not at the exact next sequence number
    #    (RFC 5961: the receiver answers with a challenge ACK; a middlebox must let it through
    #    and keep the connection, as Linux conntrack does)
    c.tcp(False, S, C, "R", seq=5001 + 1000, verdict=PASS,
          comment="RST in window but inexact (seq = next + 1000): passes, connection stays")
    # 10: client's challenge ACK (what a real stack sends after 9): still established
    c.tcp(True, C, S, "A", seq=1101, ack=5001, comment="challenge ACK from the client")
    # 11: server RST at exactly the next expected sequence number: valid, closes
    c.tcp(False, S, C, "R", seq=5001, verdict=PASS, comment="exact RST (seq = next): closes")
    # 12: client data after the valid RST
    c.tcp(True, C, S, "PA", seq=1101, ack=5001, payload=b"c" * 50, verdict=DROP("data_after_rst"),
          comment="50 bytes data after the exact RST")
    return c


def craft_close():
    c = Capture("crafted-close.pcap")
    C, S = 40200, 80
    handshake(c, C, S)                                                    # 1-3
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"q" * 100, comment="request, 100 bytes")
    c.tcp(False, S, C, "PA", seq=5001, ack=1101, payload=b"r" * 200, comment="response, 200 bytes")
    c.tcp(True, C, S, "A", seq=1101, ack=5201, comment="client ACKs response")
    # 7: client closes its side: FIN occupies seq 1101
    c.tcp(True, C, S, "FA", seq=1101, ack=5201, comment="client FIN/ACK (FIN_WAIT)")
    # 8: server ACKs the FIN
    c.tcp(False, S, C, "A", seq=5201, ack=1102, comment="server ACKs the FIN (CLOSE_WAIT)")
    # 9: client sends new data beyond its own FIN
    c.tcp(True, C, S, "PA", seq=1102, ack=5201, payload=b"x" * 10, verdict=DROP("data_after_fin"),
          comment="10 bytes of new data after the client's FIN")
    # 10: server may still send (half close): valid
    c.tcp(False, S, C, "PA", seq=5201, ack=1102, payload=b"s" * 20,
          comment="server still sends 20 bytes (half-closed)")
    c.tcp(True, C, S, "A", seq=1102, ack=5221, comment="client ACKs them")
    # 12: server closes
    c.tcp(False, S, C, "FA", seq=5221, ack=1102, comment="server FIN/ACK (LAST_ACK)")
    # 13: last ACK: TIME_WAIT
    c.tcp(True, C, S, "A", seq=1102, ack=5222, comment="client ACKs the FIN (TIME_WAIT)")
    # 14: data after the full close
    c.tcp(True, C, S, "PA", seq=1102, ack=5222, payload=b"y" * 50, verdict=DROP("data_after_close"),
          comment="50 bytes of data after the full close")
    c.tcp(False, S, C, "PA", seq=5222, ack=1102, payload=b"z" * 50,
          verdict=DROP("data_after_close"), comment="server data after the full close")
    # 16-18: a new SYN on the same tuple with a new ISN reopens it
    c.tcp(True, C, S, "S", seq=900000, opts=SYN_OPTS, comment="new SYN reusing the tuple (reopen)")
    c.tcp(False, S, C, "SA", seq=700000, ack=900001, opts=SYN_OPTS, comment="SYN/ACK of the new connection")
    c.tcp(True, C, S, "A", seq=900001, ack=700001, comment="ACK: new connection established")
    return c


def craft_simopen():
    c = Capture("crafted-simopen.pcap")
    C, S = 40300, 8080
    c.tcp(True, C, S, "S", seq=1000, opts=SYN_OPTS, comment="SYN from client side")
    c.tcp(False, S, C, "S", seq=5000, opts=SYN_OPTS, comment="SYN from server side, crossing (simultaneous open)")
    c.tcp(True, C, S, "SA", seq=1000, ack=5001, opts=SYN_OPTS, comment="client SYN/ACK")
    c.tcp(False, S, C, "SA", seq=5000, ack=1001, opts=SYN_OPTS, comment="server SYN/ACK")
    c.tcp(True, C, S, "A", seq=1001, ack=5001, comment="client ACK")
    c.tcp(False, S, C, "A", seq=5001, ack=1001, comment="server ACK (established)")
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"h" * 20, comment="20 bytes client data")
    c.tcp(False, S, C, "PA", seq=5001, ack=1021, payload=b"i" * 30, comment="30 bytes server data")
    c.tcp(True, C, S, "A", seq=1021, ack=5031, comment="client ACK")
    return c


def craft_retrans():
    c = Capture("crafted-retrans.pcap")
    C, S = 40400, 80
    c.tcp(True, C, S, "S", seq=1000, opts=SYN_OPTS, comment="SYN")
    c.tcp(True, C, S, "S", seq=1000, opts=SYN_OPTS, comment="retransmitted SYN")
    c.tcp(False, S, C, "SA", seq=5000, ack=1001, opts=SYN_OPTS, comment="SYN/ACK")
    c.tcp(False, S, C, "SA", seq=5000, ack=1001, opts=SYN_OPTS, comment="retransmitted SYN/ACK")
    c.tcp(True, C, S, "A", seq=1001, ack=5001, comment="ACK (established)")
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"d" * 100, comment="100 bytes data")
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"d" * 100, comment="retransmitted data")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, comment="server ACKs the data")
    c.tcp(True, C, S, "A", seq=1100, ack=5001, comment="keepalive probe seq = next-1, 0 bytes")
    c.tcp(True, C, S, "A", seq=1100, ack=5001, payload=b"\x00",
          comment="keepalive probe seq = next-1, 1 garbage byte (BSD style)")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, comment="server answers the keepalive")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, win=0, comment="server advertises a zero window")
    c.tcp(True, C, S, "A", seq=1100, ack=5001, comment="zero-window probe, Linux style (seq = next-1, 0 bytes)")
    c.tcp(True, C, S, "PA", seq=1101, ack=5001, payload=b"e",
          comment="zero-window probe, 1 byte at the next sequence number")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, win=0, comment="server: window still zero")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, win=WIN, comment="window update (window reopens)")
    c.tcp(True, C, S, "PA", seq=1101, ack=5001, payload=b"e" * 100, comment="100 bytes data after the window update")
    c.tcp(False, S, C, "A", seq=5001, ack=1201, comment="server ACKs")
    return c


def craft_padding():
    """Ethernet frames padded to 60 bytes: a pure ACK's padding is not data (the IP header's
    length says where the packet ends)."""
    c = Capture("crafted-padding.pcap", ethernet=True)
    C, S = 40500, 80
    handshake(c, C, S)                                                    # 1-3 (padded)
    c.tcp(True, C, S, "PA", seq=1001, ack=5001, payload=b"q" * 10, comment="request, 10 bytes")
    c.tcp(False, S, C, "A", seq=5001, ack=1011, comment="padded ACK")
    # 6: the server's last data comes with its FIN
    c.tcp(False, S, C, "FPA", seq=5001, ack=1011, payload=b"r" * 30,
          comment="response, 30 bytes, with the server's FIN")
    c.tcp(True, C, S, "A", seq=1011, ack=5032, comment="padded ACK of the response and FIN")
    c.tcp(True, C, S, "FA", seq=1011, ack=5032, comment="client FIN/ACK (padded)")
    # 9: the last ACK, padded: 6 bytes of padding are not data after the server's FIN
    c.tcp(False, S, C, "A", seq=5032, ack=1012, comment="last ACK (padded): TIME_WAIT")
    c.tcp(True, C, S, "S", seq=80000, opts=SYN_OPTS, v6=True, comment="IPv6 SYN")
    c.tcp(False, S, C, "SA", seq=90000, ack=80001, opts=SYN_OPTS, v6=True, comment="IPv6 SYN/ACK")
    c.tcp(True, C, S, "A", seq=80001, ack=90001, v6=True, comment="IPv6 ACK (padding-free)")
    return c


def craft_years():
    """Two captures concatenated, 14 years apart: entry times must not saturate."""
    c = Capture("crafted-years.pcap")
    handshake(c, 40600, 80)                                               # 1-3
    c.tcp(True, 40600, 80, "FA", seq=1001, ack=5001, comment="client FIN")
    c.tcp(False, 80, 40600, "FA", seq=5001, ack=1002, comment="server FIN")
    c.tcp(True, 40600, 80, "A", seq=1002, ack=5002, comment="last ACK")
    c.wait(14 * 365.25 * 86400)
    handshake(c, 40601, 80, cisn=2000, sisn=6000)                         # 7-9, 14 years on
    c.tcp(True, 40601, 80, "PA", seq=2001, ack=6001, payload=b"late" * 5, comment="data")
    c.tcp(False, 80, 40601, "A", seq=6001, ack=2021, comment="server ACKs it")
    c.wait(130)
    # 12: 130 s later the first connection of this second half would still be ESTABLISHED
    c.tcp(True, 40601, 80, "PA", seq=2021, ack=6001, payload=b"more", comment="data 130 s later")
    return c


def craft_reuse():
    """Port reuse: a new SYN (random-looking ISN, window scaling, SACK) on a tuple whose old
    connection is half closed (FIN_WAIT, CLOSE_WAIT, LAST_ACK). Linux ignores the SYN and
    resynchronises on the SYN/ACK that answers it, keeping the SYN's options."""
    c = Capture("crafted-reuse.pcap")
    ws = SYN_OPTS + [("SAckOK", b""), ("WScale", 7)]
    for n, (cisn, new_isn) in enumerate([(1000, 3_000_000_000), (2000, 500), (3000, 2_000_000)]):
        C, S = 40700 + n, 80
        handshake(c, C, S, cisn=cisn, sisn=5000)
        c.tcp(True, C, S, "FA", seq=cisn + 1, ack=5001, comment="client FIN (FIN_WAIT)")
        if n >= 1:
            c.tcp(False, S, C, "A", seq=5001, ack=cisn + 2, comment="server ACKs it (CLOSE_WAIT)")
        if n == 2:
            c.tcp(False, S, C, "FA", seq=5001, ack=cisn + 2, comment="server FIN (LAST_ACK)")
        c.tcp(True, C, S, "S", seq=new_isn, opts=ws, comment="new SYN on the tuple (ignored)")
        c.tcp(False, S, C, "SA", seq=700000, ack=new_isn + 1, opts=ws,
              comment="SYN/ACK answering it: resynchronised")
        c.tcp(True, C, S, "A", seq=new_isn + 1, ack=700001, win=512,
              comment="ACK, window 512 << 7")
        # 64 KiB of data in flight: only within the window when the SYN's scale was kept
        c.tcp(False, S, C, "PA", seq=700001, ack=new_isn + 1, payload=b"w" * 1400, win=512,
              comment="data")
        c.tcp(True, C, S, "A", seq=new_isn + 1, ack=701401, win=512, comment="ACK")
        c.tcp(False, S, C, "PA", seq=701401 + 60000, ack=new_isn + 1, payload=b"x" * 1000,
              win=512, comment="data 60000 bytes on (within 512 << 7)")
    return c


def craft_fragments():
    """Fragments, as the gateway's kernel reassembles them before statewall: a SYN in 8-byte
    fragments, its TCP header split (suricata-verify bug-6887), last fragment first; data with
    a duplicated fragment; data whose fragments overlap (RFC 5722: the datagram is discarded,
    the sender's retransmission passes); the same over IPv6."""
    c = Capture("crafted-fragments.pcap")
    C, S = 40800, 80
    syn = IP(src=CLI4, dst=SRV4, ttl=64, id=0x6887) / TCP(
        sport=C, dport=S, flags="S", seq=1000, window=WIN, options=SYN_OPTS)
    frags = fragment(IP(bytes(syn)), fragsize=8)
    c.fragments(syn, frags[::-1], comment="SYN in 8-byte fragments, last first")
    c.tcp(False, S, C, "SA", seq=5000, ack=1001, opts=SYN_OPTS, comment="SYN/ACK")
    c.tcp(True, C, S, "A", seq=1001, ack=5001, comment="ACK (established)")
    data = IP(src=CLI4, dst=SRV4, ttl=64, id=0x100) / TCP(
        sport=C, dport=S, flags="PA", seq=1001, ack=5001, window=WIN) / Raw(b"d" * 100)
    f = fragment(IP(bytes(data)), fragsize=48)
    c.fragments(data, [f[0], f[1], f[0], f[2]], comment="100 bytes in 3 fragments, the first twice")
    c.tcp(False, S, C, "A", seq=5001, ack=1101, comment="server ACKs the 100 bytes")
    # Overlap: fragment 2 starts inside fragment 1 (a different byte 16..24 for each reader).
    more = IP(src=CLI4, dst=SRV4, ttl=64, id=0x101) / TCP(
        sport=C, dport=S, flags="PA", seq=1101, ack=5001, window=WIN) / Raw(b"e" * 40)
    raw = bytes(more)[20:]
    first = IP(src=CLI4, dst=SRV4, ttl=64, id=0x101, flags="MF", frag=0, proto=6) / Raw(raw[:32])
    second = IP(src=CLI4, dst=SRV4, ttl=64, id=0x101, frag=2, proto=6) / Raw(raw[16:])
    c.add(first, HELD, "40 bytes: first fragment, bytes 0..32")
    c.add(second, HELD, "second fragment overlapping it (16..60): datagram discarded")
    c.tcp(True, C, S, "PA", seq=1101, ack=5001, payload=b"e" * 40, comment="retransmitted whole")
    c.tcp(False, S, C, "A", seq=5001, ack=1141, comment="server ACKs it")
    # IPv6: a first fragment must hold the whole header chain (RFC 8200 4.5); one with 8
    # bytes of the TCP header goes on unreassembled (Linux: INVALID), its followers wait in
    # vain. The SYN sent again in 24-byte fragments passes.
    def syn6(frag_id):
        return IPv6(src=CLI6, dst=SRV6, hlim=64, fl=0) / IPv6ExtHdrFragment(id=frag_id) / TCP(
            sport=C + 1, dport=S, flags="S", seq=3000, window=WIN,
            options=SYN_OPTS + [("SAckOK", b""), ("Timestamp", (1, 0))])  # a 36-byte header
    first, *rest = fragment6(IPv6(bytes(syn6(0x6887))), 56)
    c.add(first, DROP("malformed_fragment"), "v6 SYN: first 8-byte fragment, TCP header cut")
    for f in rest:
        c.add(f, HELD, "v6 SYN: a later fragment (never completed)")
    c.fragments(syn6(0x6888), fragment6(IPv6(bytes(syn6(0x6888))), 72),
                comment="v6 SYN again in 24-byte fragments")
    c.tcp(False, S, C + 1, "SA", seq=7000, ack=3001, opts=SYN_OPTS, v6=True, comment="SYN/ACK")
    c.tcp(True, C + 1, S, "A", seq=3001, ack=7001, v6=True, comment="ACK (established)")
    return c


ALL = [craft_probes, craft_window, craft_close, craft_simopen, craft_retrans, craft_padding,
       craft_years, craft_reuse, craft_fragments]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    caps = [f() for f in ALL]
    if args and args[0] == "--markdown":
        for c in caps:
            print(c.markdown())
        return
    outdir = args[0] if args else here
    os.makedirs(outdir, exist_ok=True)
    expected = {}
    for c in caps:
        c.write(outdir)
        expected[c.name] = c.expected()
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    for c in caps:
        print(f"{c.name}: {len(c.rows)} packets, {len(c.expected()['drops'])} drops")


if __name__ == "__main__":
    main()
