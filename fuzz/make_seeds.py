#!/usr/bin/env python3
"""Writes the seed corpus: corpus/engine (record streams) and corpus/decode (single packets).

Addresses: 198.51.100.2 / 203.0.113.2 and 2001:db8:1::2 / 2001:db8:2::2.
"""
import os
import struct


def ip4(src, dst, proto, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                    bytes(src), bytes(dst))
    return h + payload


def ip6(src, dst, proto, payload):
    return struct.pack('!IHBB16s16s', 6 << 28, len(payload), proto, 64, bytes(src),
                       bytes(dst)) + payload


def tcp(sp, dp, seq, ack, flags, data=b''):
    return struct.pack('!HHIIBBHHH', sp, dp, seq, ack, 5 << 4, flags, 64000, 0, 0) + data


C4, S4 = [198, 51, 100, 2], [203, 0, 113, 2]
C6 = [0x20, 1, 0xd, 0xb8, 0, 1] + [0] * 9 + [2]
S6 = [0x20, 1, 0xd, 0xb8, 0, 2] + [0] * 9 + [2]
SYN, ACK, FIN, PSH = 2, 16, 1, 8


def records(pkts):
    return b''.join(bytes([1]) + struct.pack('<H', len(p)) + p for p in pkts)


def conv(ip, c, s):
    steps = [(1, SYN, 100, 0, b''), (0, SYN | ACK, 900, 101, b''), (1, ACK, 101, 901, b''),
             (1, ACK | PSH, 101, 901, b'x' * 10), (0, ACK, 901, 111, b''),
             (1, FIN | ACK, 111, 901, b''), (0, FIN | ACK, 901, 112, b''),
             (1, ACK, 112, 902, b'')]
    return records(ip(c, s, 6, tcp(40000, 80, sq, ak, f, d)) if fc
                   else ip(s, c, 6, tcp(80, 40000, sq, ak, f, d))
                   for fc, f, sq, ak, d in steps)


def udp(ip, c, s):
    return records([ip(c, s, 17, struct.pack('!HHHH', 5353, 53, 12, 0) + b'abcd'),
                    ip(s, c, 17, struct.pack('!HHHH', 53, 5353, 12, 0) + b'abcd')])


def icmp(c, s):
    inner = ip4(c, s, 6, tcp(40000, 80, 101, 901, ACK))[:28]
    return records([ip4(c, s, 1, bytes([8, 0, 0, 0, 0, 7, 0, 1])),
                    ip4(s, c, 1, bytes([0, 0, 0, 0, 0, 7, 0, 1])),
                    ip4(s, c, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + inner)])


seeds = {'tcp4': conv(ip4, C4, S4), 'tcp6': conv(ip6, C6, S6), 'udp4': udp(ip4, C4, S4),
         'udp6': udp(ip6, C6, S6), 'icmp4': icmp(C4, S4),
         'pickup4': records([ip4(C4, S4, 6, tcp(40000, 80, 5, 6, ACK))])}
here = os.path.dirname(os.path.abspath(__file__))
for d in ('engine', 'decode'):
    os.makedirs(os.path.join(here, 'corpus', d), exist_ok=True)
for name, stream in seeds.items():
    open(os.path.join(here, 'corpus/engine', name), 'wb').write(stream)
    rest, i = stream, 0
    while len(rest) >= 3:
        n = struct.unpack('<H', rest[1:3])[0]
        p, rest = rest[3:3 + n], rest[3 + n:]
        open(os.path.join(here, f'corpus/decode/{name}_{i}'), 'wb').write(bytes(3) + p)
        open(os.path.join(here, f'corpus/decode/{name}_{i}w'), 'wb').write(
            bytes([1]) + struct.pack('<H', len(p) + 100) + p)
        i += 1
