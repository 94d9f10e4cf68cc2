//! A packet in the kernel's `-j LOG` format (the `nf_log_syslog` module of Linux 6.x, default
//! log flags: no TCP sequence numbers, no TCP or IP options, no UID, no MAC decoding), so that
//! psad, CrowdSec's and fail2ban's iptables parsers and SIEMs read statewall's lines as they
//! read the kernel's:
//!
//! ```text
//! IN=g0 OUT=g1 MAC=02:..:08:00 SRC=198.51.100.2 DST=203.0.113.2 LEN=40 TOS=0x00 PREC=0x00
//! TTL=63 ID=54321 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=1024 RES=0x00 ACK URGP=0
//! ```
//!
//! Every field is followed by one space, as in the kernel's lines. The fields, their order and
//! their spelling follow the kernel: `TOS=`/`PREC=` in upper-case hex, `RES=` in lower-case
//! hex, the flags in the order `AE CWR ECE URG ACK PSH RST SYN FIN`, IPv6 addresses in full
//! (eight groups of four digits), `MAC=` only for packets that came in on an interface, the
//! packet quoted by an ICMP error in brackets, `INCOMPLETE [N bytes]` for a header that is cut.
//! Not written, as the kernel does not write them without extra flags or data statewall does
//! not have: `OPT (...)`, `SEQ=`/`ACK=`, `UID=`/`GID=`, `MARK=`, `PHYSIN=`/`PHYSOUT=`.
//!
//! The fields come from the packet's header bytes ([`HeaderBytes`](crate::event::HeaderBytes))
//! and its length on the wire; nothing here can fail or panic on odd bytes.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::event::LoggedPacket;
use crate::packet::Family;
use crate::proto;

/// ICMP and ICMPv6 types the format knows.
mod icmp {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
    pub const ADDRESS: u8 = 17;
    pub const ADDRESS_REPLY: u8 = 18;
    pub const FRAG_NEEDED: u8 = 4;
    pub const V6_DEST_UNREACH: u8 = 1;
    pub const V6_PKT_TOOBIG: u8 = 2;
    pub const V6_TIME_EXCEED: u8 = 3;
    pub const V6_PARAMPROB: u8 = 4;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
}

/// IPv6 extension headers.
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const ESP: u8 = 50;
const AH: u8 = 51;
const NONE: u8 = 59;
const DSTOPTS: u8 = 60;
const UDPLITE: u8 = 136;

/// Appends `IN=… OUT=… [MAC=…] SRC=… …` for `p`, every field followed by a space.
pub fn write_packet(out: &mut String, p: &LoggedPacket) {
    let name = |i: Option<crate::event::IfName>| i.map(|n| n.to_string()).unwrap_or_default();
    let _ = write!(out, "IN={} OUT={} ", name(p.in_iface), name(p.out_iface));
    if p.in_iface.is_some() {
        out.push_str("MAC=");
        if let Some(mac) = p.mac {
            for (i, b) in mac.iter().enumerate() {
                let sep = if i == 0 { "" } else { ":" };
                let _ = write!(out, "{sep}{b:02x}");
            }
        }
        out.push(' ');
    }
    let view = View {
        b: p.head.as_slice(),
        skb_len: p.len,
    };
    match p.family {
        Family::V4 => view.ipv4(out, 0, Some(p.len)),
        Family::V6 => view.ipv6(out, 0, true),
    }
}

/// The header bytes of one packet, and its full length (for `INCOMPLETE [N bytes]`).
struct View<'a> {
    b: &'a [u8],
    skb_len: usize,
}

impl View<'_> {
    fn get(&self, at: usize, n: usize) -> Option<&[u8]> {
        self.b.get(at..at.checked_add(n)?)
    }

    fn u8(&self, at: usize) -> Option<u8> {
        self.b.get(at).copied()
    }

    fn u16(&self, at: usize) -> Option<u16> {
        self.get(at, 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.get(at, 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn incomplete(&self, out: &mut String, at: usize) {
        let _ = write!(
            out,
            "INCOMPLETE [{} bytes] ",
            self.skb_len.saturating_sub(at)
        );
    }

    /// The IPv4 header at `at`; `len` is the packet's length when it is the logged packet
    /// (`None` for a packet quoted by an ICMP error, whose own header says its length).
    fn ipv4(&self, out: &mut String, at: usize, len: Option<usize>) {
        let Some(h) = self.get(at, 20) else {
            out.push_str("TRUNCATED");
            return;
        };
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        let tot_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let tos = h[1];
        let _ = write!(
            out,
            "SRC={src} DST={dst} LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
            len.unwrap_or(tot_len),
            tos & 0x1e,
            tos & 0xe0,
            h[8],
            u16::from_be_bytes([h[4], h[5]]),
        );
        let frag = u16::from_be_bytes([h[6], h[7]]);
        for (bit, name) in [(0x8000, "CE "), (0x4000, "DF "), (0x2000, "MF ")] {
            if frag & bit != 0 {
                out.push_str(name);
            }
        }
        let offset = frag & 0x1fff;
        if offset != 0 {
            let _ = write!(out, "FRAG:{offset} ");
        }
        let fragment = offset != 0;
        let l4 = at + usize::from(h[0] & 0x0f) * 4;
        match h[9] {
            proto::TCP => self.tcp(out, l4, fragment),
            proto::UDP | UDPLITE => self.udp(out, h[9], l4, fragment),
            proto::ICMP => self.icmp(out, l4, fragment, len.is_some()),
            AH => {
                if !fragment {
                    out.push_str("PROTO=AH ");
                    match self.get(l4, 12) {
                        Some(_) => self.spi(out, l4 + 4),
                        None => self.incomplete(out, l4),
                    }
                }
            }
            ESP => {
                out.push_str("PROTO=ESP ");
                if !fragment {
                    match self.get(l4, 8) {
                        Some(_) => self.spi(out, l4),
                        None => self.incomplete(out, l4),
                    }
                }
            }
            other => {
                let _ = write!(out, "PROTO={other} ");
            }
        }
    }

    fn spi(&self, out: &mut String, at: usize) {
        let _ = write!(out, "SPI=0x{:x} ", self.u32(at).unwrap_or_default());
    }

    fn tcp(&self, out: &mut String, at: usize, fragment: bool) {
        out.push_str("PROTO=TCP ");
        if fragment {
            return;
        }
        let Some(t) = self.get(at, 20) else {
            self.incomplete(out, at);
            return;
        };
        let _ = write!(
            out,
            "SPT={} DPT={} WINDOW={} RES=0x{:02x} ",
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
            u16::from_be_bytes([t[14], t[15]]),
            // The three reserved bits of the flag word (the fourth is AE, a flag).
            (t[12] & 0x0e) << 2,
        );
        if t[12] & 0x01 != 0 {
            out.push_str("AE ");
        }
        const FLAGS: [(u8, &str); 8] = [
            (0x80, "CWR "),
            (0x40, "ECE "),
            (0x20, "URG "),
            (0x10, "ACK "),
            (0x08, "PSH "),
            (0x04, "RST "),
            (0x02, "SYN "),
            (0x01, "FIN "),
        ];
        for (bit, name) in FLAGS {
            if t[13] & bit != 0 {
                out.push_str(name);
            }
        }
        let _ = write!(out, "URGP={} ", u16::from_be_bytes([t[18], t[19]]));
    }

    fn udp(&self, out: &mut String, protocol: u8, at: usize, fragment: bool) {
        out.push_str(if protocol == UDPLITE {
            "PROTO=UDPLITE "
        } else {
            "PROTO=UDP "
        });
        if fragment {
            return;
        }
        match self.get(at, 8) {
            Some(u) => {
                let _ = write!(
                    out,
                    "SPT={} DPT={} LEN={} ",
                    u16::from_be_bytes([u[0], u[1]]),
                    u16::from_be_bytes([u[2], u[3]]),
                    u16::from_be_bytes([u[4], u[5]]),
                );
            }
            None => self.incomplete(out, at),
        }
    }

    /// ICMP at `at`; `outer`: the logged packet (errors quote a packet, shown once, not
    /// recursively).
    fn icmp(&self, out: &mut String, at: usize, fragment: bool, outer: bool) {
        out.push_str("PROTO=ICMP ");
        if fragment {
            return;
        }
        let (Some(ty), Some(code), Some(_)) = (self.u8(at), self.u8(at + 1), self.get(at, 8))
        else {
            self.incomplete(out, at);
            return;
        };
        let _ = write!(out, "TYPE={ty} CODE={code} ");
        let required = match ty {
            icmp::ECHO_REPLY | icmp::ECHO => 4,
            icmp::DEST_UNREACH
            | icmp::SOURCE_QUENCH
            | icmp::REDIRECT
            | icmp::TIME_EXCEEDED
            | icmp::PARAMETER_PROBLEM => 8 + 20,
            icmp::TIMESTAMP | icmp::TIMESTAMP_REPLY => 20,
            icmp::ADDRESS | icmp::ADDRESS_REPLY => 12,
            _ => 0,
        };
        if self.skb_len.saturating_sub(at) < required {
            self.incomplete(out, at);
            return;
        }
        match ty {
            icmp::ECHO_REPLY | icmp::ECHO => {
                let _ = write!(
                    out,
                    "ID={} SEQ={} ",
                    self.u16(at + 4).unwrap_or_default(),
                    self.u16(at + 6).unwrap_or_default()
                );
            }
            icmp::PARAMETER_PROBLEM => {
                let _ = write!(out, "PARAMETER={} ", self.u8(at + 4).unwrap_or_default());
            }
            icmp::REDIRECT | icmp::DEST_UNREACH | icmp::SOURCE_QUENCH | icmp::TIME_EXCEEDED => {
                if ty == icmp::REDIRECT {
                    let g = self.get(at + 4, 4).unwrap_or(&[0; 4]);
                    let _ = write!(out, "GATEWAY={} ", Ipv4Addr::new(g[0], g[1], g[2], g[3]));
                }
                if outer {
                    out.push('[');
                    self.ipv4(out, at + 8, None);
                    out.push_str("] ");
                }
                if ty == icmp::DEST_UNREACH && code == icmp::FRAG_NEEDED {
                    let _ = write!(out, "MTU={} ", self.u16(at + 6).unwrap_or_default());
                }
            }
            _ => {}
        }
    }

    /// The IPv6 header at `at`; `outer`: the logged packet (not one quoted by an ICMPv6 error).
    fn ipv6(&self, out: &mut String, at: usize, outer: bool) {
        let Some(h) = self.get(at, 40) else {
            out.push_str("TRUNCATED");
            return;
        };
        let addr = |b: &[u8]| {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            Ipv6Addr::from(o)
        };
        let full = |a: Ipv6Addr| {
            let s = a.segments();
            format!(
                "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
            )
        };
        let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let _ = write!(
            out,
            "SRC={} DST={} LEN={} TC={} HOPLIMIT={} FLOWLBL={} ",
            full(addr(&h[8..24])),
            full(addr(&h[24..40])),
            usize::from(u16::from_be_bytes([h[4], h[5]])) + 40,
            (word & 0x0ff0_0000) >> 20,
            h[7],
            word & 0x000f_ffff,
        );
        let mut fragment = false;
        let mut ptr = at + 40;
        let mut next = h[6];
        while next != NONE && matches!(next, HOPOPTS | ROUTING | FRAGMENT | ESP | AH | DSTOPTS) {
            let (Some(nh), Some(hlen)) = (self.u8(ptr), self.u8(ptr + 1)) else {
                out.push_str("TRUNCATED");
                return;
            };
            let len = match next {
                FRAGMENT => {
                    out.push_str("FRAG:");
                    let (Some(off), Some(id)) = (self.u16(ptr + 2), self.u32(ptr + 4)) else {
                        out.push_str("TRUNCATED ");
                        return;
                    };
                    let _ = write!(out, "{} ", off & 0xfff8);
                    if off & 0x0001 != 0 {
                        out.push_str("INCOMPLETE ");
                    }
                    let _ = write!(out, "ID:{id:08x} ");
                    fragment = off & 0xfff8 != 0;
                    8
                }
                DSTOPTS | ROUTING | HOPOPTS => {
                    if fragment {
                        return;
                    }
                    (usize::from(hlen) + 1) * 8
                }
                AH => (usize::from(hlen) + 2) * 4,
                // ESP: nothing after it can be read.
                _ => return,
            };
            next = nh;
            ptr += len;
        }
        match next {
            proto::TCP => self.tcp(out, ptr, fragment),
            proto::UDP | UDPLITE => self.udp(out, next, ptr, fragment),
            proto::ICMPV6 => self.icmpv6(out, ptr, fragment, outer),
            other => {
                let _ = write!(out, "PROTO={other} ");
            }
        }
    }

    fn icmpv6(&self, out: &mut String, at: usize, fragment: bool, outer: bool) {
        out.push_str("PROTO=ICMPv6 ");
        if fragment {
            return;
        }
        let (Some(ty), Some(code), Some(_)) = (self.u8(at), self.u8(at + 1), self.get(at, 8))
        else {
            self.incomplete(out, at);
            return;
        };
        let _ = write!(out, "TYPE={ty} CODE={code} ");
        match ty {
            icmp::V6_ECHO_REQUEST | icmp::V6_ECHO_REPLY => {
                let _ = write!(
                    out,
                    "ID={} SEQ={} ",
                    self.u16(at + 4).unwrap_or_default(),
                    self.u16(at + 6).unwrap_or_default()
                );
            }
            icmp::V6_PARAMPROB
            | icmp::V6_DEST_UNREACH
            | icmp::V6_PKT_TOOBIG
            | icmp::V6_TIME_EXCEED => {
                if ty == icmp::V6_PARAMPROB {
                    let _ = write!(out, "POINTER={:08x} ", self.u32(at + 4).unwrap_or_default());
                }
                if outer {
                    out.push('[');
                    self.ipv6(out, at + 8, false);
                    out.push_str("] ");
                }
                if ty == icmp::V6_PKT_TOOBIG {
                    let _ = write!(out, "MTU={} ", self.u32(at + 4).unwrap_or_default());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Packet, PacketMeta};

    /// Pairs of (Ethernet frame as it reached the gateway, the kernel's line), captured by
    /// scripts/capture-kernel-log from Linux's own `-j LOG` in the FORWARD chain.
    const KERNEL: &str = include_str!("kernel_lines.txt");

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn lines_are_the_kernels_own() {
        let lines: Vec<&str> = KERNEL.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(lines.len() >= 50, "the capture has {} lines", lines.len());
        for pair in lines.chunks(2) {
            let (frame, kernel) = (hex(pair[0]), pair[1]);
            let mut mac = [0u8; 14];
            mac.copy_from_slice(&frame[..14]);
            // The FORWARD hook sees the packet after the TTL / hop limit was decremented.
            let mut ip = frame[14..].to_vec();
            if ip[0] >> 4 == 4 {
                ip[8] -= 1;
            } else {
                ip[7] -= 1;
            }
            let meta = PacketMeta {
                wire_len: Some(ip.len()),
                in_iface: Some("g0"),
                out_iface: Some("g1"),
                mac: Some(mac),
                fastpath: false,
                admitted: false,
            };
            let pkt = Packet::decode(&ip, &meta).expect("the capture decodes");
            let mut line = String::new();
            write_packet(&mut line, &LoggedPacket::of(&pkt, &meta));
            assert_eq!(line, kernel);
        }
    }

    #[test]
    fn packets_from_the_host_have_no_mac_and_odd_bytes_never_panic() {
        let pkt_bytes = crate::testing::Pair::V6
            .ports(40000, 443)
            .tcp(crate::testing::Side::Client, 0x02, 1, 0)
            .build();
        let meta = PacketMeta {
            out_iface: Some("eth1"),
            ..PacketMeta::default()
        };
        let pkt = Packet::decode(&pkt_bytes, &meta).expect("decodes");
        let mut logged = LoggedPacket::of(&pkt, &meta);
        let mut line = String::new();
        write_packet(&mut line, &logged);
        assert!(
            line.starts_with("IN= OUT=eth1 SRC=2001:0db8:0001:"),
            "{line}"
        );
        // Header bytes cut anywhere, or garbage: a line, never a panic.
        for n in 0..pkt_bytes.len() {
            logged.head = crate::event::HeaderBytes::new(&pkt_bytes[..n]);
            let mut line = String::new();
            write_packet(&mut line, &logged);
            assert!(line.starts_with("IN= OUT=eth1 "));
            if n < 40 {
                assert!(line.ends_with("TRUNCATED"), "{line}");
            }
        }
        logged.head = crate::event::HeaderBytes::new(&[0xff; 160]);
        let mut line = String::new();
        write_packet(&mut line, &logged);
    }
}
