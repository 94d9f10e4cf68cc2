#!/usr/bin/python3
"""The crafted packets of scripts/capture-kernel-log: one of each shape a drop line shows.

Sent from the lab's client toward the server (documentation addresses only), through the
gateway that logs them with the kernel's -j LOG. One packet each, 50 ms apart, in a fixed
order (the capture pairs frames and kernel lines by order).
"""

import time

from scapy.all import (  # Debian python3-scapy
    ICMP,
    IP,
    TCP,
    UDP,
    AH,
    ESP,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrDestOpt,
    ICMPv6EchoRequest,
    ICMPv6DestUnreach,
    ICMPv6PacketTooBig,
    Raw,
    send,
)

C4, S4 = "198.51.100.2", "203.0.113.2"
C6, S6 = "2001:db8:1::2", "2001:db8:2::2"

PACKETS = [
    # nmap's stealth shapes and an ACK probe, as nmap sends them (window 1024).
    IP(src=C4, dst=S4, id=1001, ttl=48) / TCP(sport=40001, dport=22, flags="S", window=1024,
                                           options=[("MSS", 1460)]),
    IP(src=C4, dst=S4, id=1002, ttl=48) / TCP(sport=40002, dport=23, flags="F", window=1024),
    IP(src=C4, dst=S4, id=1003, ttl=48) / TCP(sport=40003, dport=24, flags="FPU", window=1024,
                                           urgptr=0),
    IP(src=C4, dst=S4, id=1004, ttl=48) / TCP(sport=40004, dport=25, flags="", window=1024),
    IP(src=C4, dst=S4, id=1005, ttl=48, flags="DF") / TCP(sport=40005, dport=26, flags="A",
                                                       window=1024),
    # Every flag, the reserved bits and AE, an urgent pointer, TOS with precedence bits.
    IP(src=C4, dst=S4, id=1006, tos=0xb8) / TCP(sport=40006, dport=27, flags=0xff,
                                              reserved=7, window=512, urgptr=77),
    IP(src=C4, dst=S4, id=1007, tos=0x03) / TCP(sport=40007, dport=28, flags="SE", reserved=1),
    # AE (the former NS bit, the flag word's ninth flag).
    IP(src=C4, dst=S4, id=1017) / TCP(sport=40017, dport=29, flags=0x101),
    # UDP, ICMP echo, an ICMP error quoting a UDP datagram, a fragment needed.
    IP(src=C4, dst=S4, id=1008) / UDP(sport=5353, dport=53) / Raw(b"query"),
    IP(src=C4, dst=S4, id=1009) / ICMP(type=8, code=0, id=0x1234, seq=7) / Raw(b"ping"),
    IP(src=C4, dst=S4, id=1010) / ICMP(type=3, code=3)
    / IP(src=S4, dst=C4, id=77, ttl=60) / UDP(sport=53, dport=5353),
    IP(src=C4, dst=S4, id=1011) / ICMP(type=3, code=4, nexthopmtu=1400)
    / IP(src=S4, dst=C4, id=78) / TCP(sport=80, dport=40000, flags="A"),
    IP(src=C4, dst=S4, id=1012) / ICMP(type=13),
    # Fragments: the first, and one further in (no transport header).
    IP(src=C4, dst=S4, id=1013, flags="MF", frag=0) / TCP(sport=40013, dport=80, flags="A")
    / Raw(b"x" * 4),
    IP(src=C4, dst=S4, id=1014, frag=100, proto=6) / Raw(b"y" * 16),
    # Other protocols.
    IP(src=C4, dst=S4, id=1015) / ESP(spi=0xabcdef, seq=1) / Raw(b"z" * 8),
    IP(src=C4, dst=S4, id=1016, proto=47) / Raw(b"\x00" * 8),
    # IPv6: TCP with a flow label and a traffic class, UDP, echo, errors, extension headers.
    IPv6(src=C6, dst=S6, hlim=52, tc=0x28, fl=0x12345) / TCP(sport=40101, dport=22, flags="FPU",
                                                            window=1024),
    IPv6(src=C6, dst=S6) / TCP(sport=40102, dport=23, flags="A", window=1024),
    IPv6(src=C6, dst=S6) / UDP(sport=5353, dport=53) / Raw(b"q6"),
    IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(id=0x4321, seq=9),
    IPv6(src=C6, dst=S6) / ICMPv6DestUnreach(code=4)
    / IPv6(src=S6, dst=C6) / UDP(sport=53, dport=5353),
    IPv6(src=C6, dst=S6) / ICMPv6PacketTooBig(mtu=1280)
    / IPv6(src=S6, dst=C6) / TCP(sport=80, dport=40000, flags="A"),
    IPv6(src=C6, dst=S6) / IPv6ExtHdrDestOpt() / TCP(sport=40103, dport=24, flags="S"),
    IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(offset=0, m=1, id=0xdeadbeef)
    / UDP(sport=5353, dport=53) / Raw(b"f" * 8),
    IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(offset=10, m=0, id=0xdeadbeef, nh=17)
    / Raw(b"g" * 8),
]

for p in PACKETS:
    send(p, verbose=False)
    time.sleep(0.05)
