#!/usr/bin/env python3
"""Small stdlib-only pcap helper for scripts/kernel-invalid (no scapy needed).

Usage:
  pcaptool.py info FILE             print "linktype=N packets=M"
  pcaptool.py toeth IN OUT          rewrite to Ethernet (linktype 1) for replay:
                                    - accepts Ethernet (1), raw IP (101, 12, 228, 229),
                                      Linux cooked (113, 276) and BSD loopback (0, 108)
                                      captures, classic pcap only
                                    - keeps only IPv4/IPv6 packets (drops ARP etc.)
                                    - raises a TTL / hop limit below 2 to 64 and rewrites
                                      the IPv4 header checksum, so that the replay gateway
                                      forwards every packet (conntrack confirms an entry
                                      only when its packet leaves the gateway)
                                    - rewrites the IPv6 loopback address ::1 (source or
                                      destination) to 2001:db8:ff::1: Linux discards
                                      packets with ::1 arriving on a non-loopback interface
                                      before netfilter (ip6_rcv_core), so conntrack would
                                      never judge the many captures taken on lo
                                    - pads every packet truncated by a snaplen with zeros up
                                      to the length its IP header announces, so the kernel
                                      accepts it (checksums over the padding are then wrong:
                                      the replay gateway runs with nf_conntrack_checksum=0)
                                    - placeholder MACs 02:00:00:00:00:01/02
                                    prints "kept=N dropped=M"
  pcaptool.py toeth IN OUT CIDRS C2S_SMAC C2S_DMAC S2C_SMAC S2C_DMAC
                                    same, and set the MACs by direction: packets whose
                                    source is in one of the comma-separated CIDRS (the
                                    client side) get C2S_*, all others S2C_*. (tcprewrite
                                    4.4.3 mangles IPv6 destination MACs, hence this.)
  pcaptool.py split IN DIR          write each packet i (1-based) to DIR/NNNNNN.pcap and print
                                    "i dstmac" lines (direction is told by the destination MAC)
"""

import ipaddress
import os
import socket
import struct
import sys

ETH, RAW_A, RAW_B, IPV4, IPV6, SLL, SLL2, NULL, LOOP = 1, 101, 12, 228, 229, 113, 276, 0, 108


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit(f"{path}: not a pcap file")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file (pcapng is not supported)")
    nsec = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    _vmaj, _vmin, _tz, _sig, snap, linktype = struct.unpack(e + "HHiIII", data[4:24])
    pkts = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        pkts.append((sec, frac, orig, data[off:off + incl]))
        off += incl
    return {"endian": e, "nsec": nsec, "snap": snap, "linktype": linktype & 0xFFFF,
            "hdr": data[:24], "pkts": pkts}


def write_pcap(path, cap, linktype, pkts):
    e = cap["endian"]
    magic = 0xA1B23C4D if cap["nsec"] else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for sec, frac, orig, buf in pkts:
            f.write(struct.pack(e + "IIII", sec, frac, len(buf), max(orig, len(buf))))
            f.write(buf)


def l3_of(linktype, buf):
    """Return (ethertype, l3 bytes) or None for non-IP."""
    if linktype == ETH:
        if len(buf) < 14:
            return None
        et = struct.unpack("!H", buf[12:14])[0]
        off = 14
        while et in (0x8100, 0x88A8, 0x9100) and len(buf) >= off + 4:  # VLAN tags
            et = struct.unpack("!H", buf[off + 2:off + 4])[0]
            off += 4
        l3 = buf[off:]
    elif linktype in (RAW_A, RAW_B, IPV4, IPV6):
        if not buf:
            return None
        v = buf[0] >> 4
        et = 0x0800 if v == 4 else 0x86DD if v == 6 else None
        l3 = buf
    elif linktype == SLL:
        if len(buf) < 16:
            return None
        et = struct.unpack("!H", buf[14:16])[0]
        l3 = buf[16:]
    elif linktype == SLL2:
        if len(buf) < 20:
            return None
        et = struct.unpack("!H", buf[0:2])[0]
        l3 = buf[20:]
    elif linktype in (NULL, LOOP):
        # 4-byte address family (host or network order): tell the family by the IP version
        if len(buf) < 5:
            return None
        l3 = buf[4:]
        v = l3[0] >> 4
        et = 0x0800 if v == 4 else 0x86DD if v == 6 else None
    else:
        raise SystemExit(f"unsupported linktype {linktype}")
    if et not in (0x0800, 0x86DD) or not l3:
        return None
    return et, l3


def pad_l3(et, l3):
    if et == 0x0800 and len(l3) >= 20:
        want = struct.unpack("!H", l3[2:4])[0]
    elif et == 0x86DD and len(l3) >= 40:
        want = 40 + struct.unpack("!H", l3[4:6])[0]
    else:
        return l3
    if want > len(l3):
        l3 = l3 + bytes(want - len(l3))
    return l3


def ip_checksum(hdr):
    s = 0
    for i in range(0, len(hdr) - 1, 2):
        s += (hdr[i] << 8) | hdr[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")
# A documentation address outside the lab's subnets (2001:db8:1::/64, 2001:db8:2::/64).
LOOPBACK6_STANDIN = socket.inet_pton(socket.AF_INET6, "2001:db8:ff::1")


def forwardable(et, l3):
    """TTL / hop limit at least 2 (the gateway forwards it), IPv4 header checksum right,
    IPv6 loopback addresses replaced (the kernel drops them before conntrack sees them)."""
    b = bytearray(l3)
    if et == 0x0800 and len(b) >= 20:
        ihl = (b[0] & 0x0F) * 4
        if b[8] < 2:
            b[8] = 64
        if 20 <= ihl <= len(b):
            b[10:12] = b"\0\0"
            b[10:12] = struct.pack("!H", ip_checksum(bytes(b[:ihl])))
    elif et == 0x86DD and len(b) >= 40:
        if b[7] < 2:
            b[7] = 64
        for at in (8, 24):  # source, destination
            if b[at:at + 16] == LOOPBACK6:
                b[at:at + 16] = LOOPBACK6_STANDIN
    return bytes(b)


def cmd_info(path):
    cap = read_pcap(path)
    print(f"linktype={cap['linktype']} packets={len(cap['pkts'])}")


def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def src_addr(et, l3):
    if et == 0x0800 and len(l3) >= 20:
        return ipaddress.ip_address(socket.inet_ntop(socket.AF_INET, l3[12:16]))
    if et == 0x86DD and len(l3) >= 40:
        return ipaddress.ip_address(socket.inet_ntop(socket.AF_INET6, l3[8:24]))
    return None


def cmd_toeth(src, dst, cidrs=None, c2s=None, s2c=None):
    cap = read_pcap(src)
    out, dropped = [], 0
    nets = [ipaddress.ip_network(c.strip("[]"), strict=False) for c in cidrs.split(",")] if cidrs else []
    c2s = c2s or (mac("020000000001"), mac("020000000002"))  # (smac, dmac)
    s2c = s2c or c2s
    for sec, frac, _orig, buf in cap["pkts"]:
        r = l3_of(cap["linktype"], buf)
        if r is None:
            dropped += 1
            continue
        et, l3 = r
        l3 = forwardable(et, pad_l3(et, l3))
        a = src_addr(et, l3)
        client = a is not None and any(a.version == n.version and a in n for n in nets)
        smac, dmac = c2s if client or not nets else s2c
        frame = dmac + smac + struct.pack("!H", et) + l3
        out.append((sec, frac, len(frame), frame))
    write_pcap(dst, cap, ETH, out)
    print(f"kept={len(out)} dropped={dropped}")


def cmd_split(src, outdir):
    cap = read_pcap(src)
    os.makedirs(outdir, exist_ok=True)
    for i, p in enumerate(cap["pkts"], 1):
        write_pcap(os.path.join(outdir, f"{i:06d}.pcap"), cap, cap["linktype"], [p])
        mac = p[3][:6].hex(":") if cap["linktype"] == ETH else "-"
        print(i, mac)


def main(argv):
    if len(argv) == 2 and argv[0] == "info":
        cmd_info(argv[1])
    elif len(argv) == 3 and argv[0] == "toeth":
        cmd_toeth(argv[1], argv[2])
    elif len(argv) == 8 and argv[0] == "toeth":
        cmd_toeth(argv[1], argv[2], argv[3], (mac(argv[4]), mac(argv[5])),
                  (mac(argv[6]), mac(argv[7])))
    elif len(argv) == 3 and argv[0] == "split":
        cmd_split(argv[1], argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
