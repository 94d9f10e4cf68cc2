//! The one packet factory of every test: unit tests, integration and property tests, benches,
//! examples and fuzz seeds (compiled with `cfg(test)` or the `testing` feature, which the
//! crate's own dev-dependency on itself turns on for `tests/`, `benches/` and `examples/`).
//!
//! Builders write complete IP packets byte by byte, checksums included, so that any flag byte
//! (NULL, XMAS, SYN+FIN...) and any field can be set: [`tcp`], [`udp`], [`icmp`] (echo
//! requests and replies, errors quoting a packet, any other type) and [`ip`] (any protocol),
//! for IPv4 and IPv6, with TCP options (MSS, window scale, SACK-permitted, SACK blocks,
//! timestamps), IPv6 extension headers, fragments, and header-only buffers (the IP length
//! counts a payload the buffer does not hold, as NFQUEUE delivers it).
//!
//! [`Pair`] names the two ends of a flow between the documentation addresses
//! (`198.51.100.2` ↔ `203.0.113.2`, `2001:db8:1::2` ↔ `2001:db8:2::2`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::TcpFlags;
use crate::proto;

/// The client of the IPv4 lab.
pub const CLIENT4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
/// The server of the IPv4 lab.
pub const SERVER4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
/// The client of the IPv6 lab.
pub const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2));
/// The server of the IPv6 lab.
pub const SERVER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2));

/// SYN, the [`TcpFlags`] bit.
pub const SYN: u8 = TcpFlags::SYN;
/// ACK.
pub const ACK: u8 = TcpFlags::ACK;
/// FIN.
pub const FIN: u8 = TcpFlags::FIN;
/// RST.
pub const RST: u8 = TcpFlags::RST;
/// PSH.
pub const PSH: u8 = TcpFlags::PSH;
/// URG.
pub const URG: u8 = TcpFlags::URG;
/// ECE.
pub const ECE: u8 = TcpFlags::ECE;
/// CWR.
pub const CWR: u8 = TcpFlags::CWR;

/// Which end of a [`Pair`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that opens the flow.
    Client,
    /// The other end.
    Server,
}

/// The two ends of a flow: addresses and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    /// The client's address.
    pub client: IpAddr,
    /// The server's address.
    pub server: IpAddr,
    /// The client's port (or ICMP echo identifier).
    pub cport: u16,
    /// The server's port.
    pub sport: u16,
}

impl Pair {
    /// IPv4 lab, client port 40000, server port 80.
    pub const V4: Pair = Pair {
        client: CLIENT4,
        server: SERVER4,
        cport: 40000,
        sport: 80,
    };
    /// IPv6 lab, client port 40000, server port 80.
    pub const V6: Pair = Pair {
        client: CLIENT6,
        server: SERVER6,
        cport: 40000,
        sport: 80,
    };
    /// Both families.
    pub const BOTH: [Pair; 2] = [Pair::V4, Pair::V6];

    /// The same ends with other ports.
    pub fn ports(self, cport: u16, sport: u16) -> Pair {
        Pair {
            cport,
            sport,
            ..self
        }
    }

    /// Whether this is the IPv6 lab.
    pub fn is_v6(&self) -> bool {
        self.client.is_ipv6()
    }

    /// `(src, dst, src port, dst port)` of a packet sent by `side`.
    pub fn from(&self, side: Side) -> (IpAddr, IpAddr, u16, u16) {
        match side {
            Side::Client => (self.client, self.server, self.cport, self.sport),
            Side::Server => (self.server, self.client, self.sport, self.cport),
        }
    }

    /// A TCP segment from `side` with these flags, sequence and acknowledgment numbers (the
    /// acknowledgment field is written only with ACK, as stacks do).
    pub fn tcp(&self, side: Side, flags: u8, seq: u32, ack: u32) -> Tcp {
        let (src, dst, sp, dp) = self.from(side);
        let ack = if flags & ACK != 0 { ack } else { 0 };
        tcp(src, dst).ports(sp, dp).flags(flags).seq(seq).ack(ack)
    }

    /// A UDP datagram from `side`.
    pub fn udp(&self, side: Side) -> Udp {
        let (src, dst, sp, dp) = self.from(side);
        udp(src, dst).ports(sp, dp)
    }

    /// An ICMP / ICMPv6 echo request (from `side`) or reply, identifier `cport`, sequence 1,
    /// payload `ping`.
    pub fn echo(&self, side: Side, request: bool) -> Icmp {
        let (src, dst, _, _) = self.from(side);
        let i = if request {
            icmp(src, dst).echo_request(self.cport, 1)
        } else {
            icmp(src, dst).echo_reply(self.cport, 1)
        };
        i.body(b"ping")
    }
}

/// The IP part of a packet under construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ip {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    id: u16,
    dont_fragment: bool,
    flow_label: u32,
    /// IPv6 extension headers (next-header numbers 0, 43, 60), in order, 8 bytes each.
    ext: Vec<u8>,
    /// Fragment offset (8-byte units) and "more fragments".
    fragment: Option<(u16, bool)>,
}

impl Ip {
    fn new(src: IpAddr, dst: IpAddr) -> Ip {
        assert_eq!(src.is_ipv4(), dst.is_ipv4(), "one family per packet");
        Ip {
            src,
            dst,
            ttl: 64,
            tos: 0,
            id: 1,
            dont_fragment: false,
            flow_label: 0,
            ext: Vec::new(),
            fragment: None,
        }
    }

    /// The packet around a transport part of `proto`: `l4` is what the buffer holds, and the
    /// IP lengths count `missing` more bytes after it (a header-only capture).
    fn wrap(&self, proto: u8, l4: &[u8], missing: usize) -> Vec<u8> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(20 + l4.len() + missing).expect("fits IPv4");
                let mut h = vec![0x45, self.tos];
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&self.id.to_be_bytes());
                let (offset, more) = self.fragment.unwrap_or((0, false));
                let flags = (u16::from(self.dont_fragment) << 14) | (u16::from(more) << 13);
                h.extend_from_slice(&(flags | (offset & 0x1fff)).to_be_bytes());
                h.extend_from_slice(&[self.ttl, proto, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                let sum = checksum(&[&h]);
                h[10..12].copy_from_slice(&sum.to_be_bytes());
                h.extend_from_slice(l4);
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                // Extension headers, each naming the next; a fragment header last.
                let mut chain: Vec<(u8, Vec<u8>)> = self
                    .ext
                    .iter()
                    .map(|&kind| (kind, vec![0, 0, 1, 4, 0, 0, 0, 0]))
                    .collect();
                if let Some((offset, more)) = self.fragment {
                    let field = (offset << 3) | u16::from(more);
                    let mut f = vec![0, 0];
                    f.extend_from_slice(&field.to_be_bytes());
                    f.extend_from_slice(&u32::from(self.id).to_be_bytes());
                    chain.push((44, f));
                }
                let mut ext = Vec::new();
                for i in 0..chain.len() {
                    let next = chain.get(i + 1).map_or(proto, |(k, _)| *k);
                    let mut h = chain[i].1.clone();
                    h[0] = next;
                    ext.extend_from_slice(&h);
                }
                let first = chain.first().map_or(proto, |(k, _)| *k);
                let payload = u16::try_from(ext.len() + l4.len() + missing).expect("fits IPv6");
                let word =
                    (6u32 << 28) | (u32::from(self.tos) << 20) | (self.flow_label & 0xf_ffff);
                let mut h = word.to_be_bytes().to_vec();
                h.extend_from_slice(&payload.to_be_bytes());
                h.extend_from_slice(&[first, self.ttl]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&ext);
                h.extend_from_slice(l4);
                h
            }
            _ => unreachable!("checked in Ip::new"),
        }
    }

    /// The pseudo-header sum of a transport checksum over `len` bytes of `proto`.
    fn pseudo(&self, proto: u8, len: usize) -> Vec<u8> {
        let mut p = Vec::new();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&[0, proto]);
                p.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, proto]);
            }
            _ => unreachable!("checked in Ip::new"),
        }
        p
    }
}

/// Common IP settings of the builders.
macro_rules! ip_setters {
    () => {
        /// TTL / hop limit (default 64).
        pub fn ttl(mut self, ttl: u8) -> Self {
            self.ip.ttl = ttl;
            self
        }
        /// IPv4 TOS / IPv6 traffic class.
        pub fn tos(mut self, tos: u8) -> Self {
            self.ip.tos = tos;
            self
        }
        /// IPv4 identification (and the IPv6 fragment header's).
        pub fn id(mut self, id: u16) -> Self {
            self.ip.id = id;
            self
        }
        /// IPv4 "don't fragment".
        pub fn dont_fragment(mut self) -> Self {
            self.ip.dont_fragment = true;
            self
        }
        /// IPv6 flow label.
        pub fn flow_label(mut self, label: u32) -> Self {
            self.ip.flow_label = label;
            self
        }
        /// An IPv6 hop-by-hop options header (8 bytes of padding) before the next header.
        pub fn hop_by_hop(mut self) -> Self {
            self.ip.ext.push(0);
            self
        }
        /// An IPv6 destination options header.
        pub fn dest_options(mut self) -> Self {
            self.ip.ext.push(60);
            self
        }
        /// Marks the packet as a fragment at `offset` 8-byte units, more to come or not (an
        /// IPv6 fragment header). The transport part is written as is: for a non-first
        /// fragment it is just data.
        pub fn fragment(mut self, offset: u16, more: bool) -> Self {
            self.ip.fragment = Some((offset, more));
            self
        }
    };
}

/// A TCP segment builder ([`tcp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    ip: Ip,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    options: Vec<u8>,
    payload: usize,
    header_only: bool,
}

/// A TCP segment from `src` to `dst`: ports 40000 → 80, no flags, window 64000.
pub fn tcp(src: IpAddr, dst: IpAddr) -> Tcp {
    Tcp {
        ip: Ip::new(src, dst),
        sport: 40000,
        dport: 80,
        seq: 0,
        ack: 0,
        flags: 0,
        window: 64000,
        urgent: 0,
        options: Vec::new(),
        payload: 0,
        header_only: false,
    }
}

impl Tcp {
    ip_setters!();

    /// Source and destination ports.
    pub fn ports(mut self, sport: u16, dport: u16) -> Tcp {
        self.sport = sport;
        self.dport = dport;
        self
    }
    /// The raw flag byte.
    pub fn flags(mut self, flags: u8) -> Tcp {
        self.flags = flags;
        self
    }
    /// Sequence number.
    pub fn seq(mut self, seq: u32) -> Tcp {
        self.seq = seq;
        self
    }
    /// Acknowledgment number (the field only: set ACK in the flags for it to count).
    pub fn ack(mut self, ack: u32) -> Tcp {
        self.ack = ack;
        self
    }
    /// Window field (unscaled).
    pub fn window(mut self, window: u16) -> Tcp {
        self.window = window;
        self
    }
    /// Urgent pointer.
    pub fn urgent(mut self, urgent: u16) -> Tcp {
        self.urgent = urgent;
        self
    }
    /// `len` zero bytes of payload.
    pub fn payload(mut self, len: usize) -> Tcp {
        self.payload = len;
        self
    }
    /// The buffer ends after the TCP header; the IP length still counts the payload (as
    /// NFQUEUE delivers a packet with a copy range of headers only).
    pub fn header_only(mut self) -> Tcp {
        self.header_only = true;
        self
    }
    /// Maximum segment size option.
    pub fn mss(mut self, mss: u16) -> Tcp {
        self.options.extend_from_slice(&[2, 4]);
        self.options.extend_from_slice(&mss.to_be_bytes());
        self
    }
    /// Window scale option (with a NOP before it, as stacks align it).
    pub fn wscale(mut self, shift: u8) -> Tcp {
        self.options.extend_from_slice(&[1, 3, 3, shift]);
        self
    }
    /// SACK-permitted option.
    pub fn sack_permitted(mut self) -> Tcp {
        self.options.extend_from_slice(&[4, 2]);
        self
    }
    /// SACK blocks `(left, right)` (with two NOPs before them).
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Tcp {
        let len = u8::try_from(2 + 8 * blocks.len()).expect("at most 4 blocks");
        self.options.extend_from_slice(&[1, 1, 5, len]);
        for (l, r) in blocks {
            self.options.extend_from_slice(&l.to_be_bytes());
            self.options.extend_from_slice(&r.to_be_bytes());
        }
        self
    }
    /// Timestamps option (value, echo reply), with two NOPs before it.
    pub fn timestamps(mut self, value: u32, echo: u32) -> Tcp {
        self.options.extend_from_slice(&[1, 1, 8, 10]);
        self.options.extend_from_slice(&value.to_be_bytes());
        self.options.extend_from_slice(&echo.to_be_bytes());
        self
    }

    /// The packet.
    pub fn build(&self) -> Vec<u8> {
        let mut opts = self.options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0); // end of options
        }
        assert!(opts.len() <= 40, "TCP options fit 40 bytes");
        let doff = u8::try_from(20 + opts.len()).expect("fits") / 4;
        let mut seg = Vec::with_capacity(20 + opts.len() + self.payload);
        seg.extend_from_slice(&self.sport.to_be_bytes());
        seg.extend_from_slice(&self.dport.to_be_bytes());
        seg.extend_from_slice(&self.seq.to_be_bytes());
        seg.extend_from_slice(&self.ack.to_be_bytes());
        seg.extend_from_slice(&[doff << 4, self.flags]);
        seg.extend_from_slice(&self.window.to_be_bytes());
        seg.extend_from_slice(&[0, 0]);
        seg.extend_from_slice(&self.urgent.to_be_bytes());
        seg.extend_from_slice(&opts);
        let header = seg.len();
        seg.resize(header + self.payload, 0);
        let pseudo = self.ip.pseudo(proto::TCP, seg.len());
        let sum = checksum(&[&pseudo, &seg]);
        seg[16..18].copy_from_slice(&sum.to_be_bytes());
        let missing = if self.header_only {
            seg.truncate(header);
            self.payload
        } else {
            0
        };
        self.ip.wrap(proto::TCP, &seg, missing)
    }
}

/// A UDP datagram builder ([`udp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Udp {
    ip: Ip,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
}

/// A UDP datagram from `src` to `dst`: ports 5353 → 53, no payload.
pub fn udp(src: IpAddr, dst: IpAddr) -> Udp {
    Udp {
        ip: Ip::new(src, dst),
        sport: 5353,
        dport: 53,
        payload: Vec::new(),
    }
}

impl Udp {
    ip_setters!();

    /// Source and destination ports.
    pub fn ports(mut self, sport: u16, dport: u16) -> Udp {
        self.sport = sport;
        self.dport = dport;
        self
    }
    /// `len` zero bytes of payload.
    pub fn payload(mut self, len: usize) -> Udp {
        self.payload = vec![0; len];
        self
    }
    /// This payload.
    pub fn data(mut self, data: &[u8]) -> Udp {
        self.payload = data.to_vec();
        self
    }

    /// The packet.
    pub fn build(&self) -> Vec<u8> {
        let len = u16::try_from(8 + self.payload.len()).expect("fits UDP");
        let mut d = Vec::with_capacity(usize::from(len));
        d.extend_from_slice(&self.sport.to_be_bytes());
        d.extend_from_slice(&self.dport.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&self.payload);
        let sum = checksum(&[&self.ip.pseudo(proto::UDP, d.len()), &d]);
        // 0 means "no checksum" in UDP: an all-ones sum is written as 0xffff.
        let sum = if sum == 0 { 0xffff } else { sum };
        d[6..8].copy_from_slice(&sum.to_be_bytes());
        self.ip.wrap(proto::UDP, &d, 0)
    }
}

/// An ICMP / ICMPv6 message builder ([`icmp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icmp {
    ip: Ip,
    icmp_type: u8,
    code: u8,
    /// The 4 bytes after the checksum (identifier and sequence, or unused).
    rest: [u8; 4],
    body: Vec<u8>,
}

/// An ICMP (IPv4) or ICMPv6 (IPv6) message from `src` to `dst`; set its kind with the methods.
pub fn icmp(src: IpAddr, dst: IpAddr) -> Icmp {
    Icmp {
        ip: Ip::new(src, dst),
        icmp_type: 0,
        code: 0,
        rest: [0; 4],
        body: Vec::new(),
    }
}

impl Icmp {
    ip_setters!();

    fn v6(&self) -> bool {
        self.ip.src.is_ipv6()
    }

    /// Echo request (type 8 / 128).
    pub fn echo_request(mut self, id: u16, seq: u16) -> Icmp {
        self.icmp_type = if self.v6() { 128 } else { 8 };
        self.echo(id, seq)
    }
    /// Echo reply (type 0 / 129).
    pub fn echo_reply(mut self, id: u16, seq: u16) -> Icmp {
        self.icmp_type = if self.v6() { 129 } else { 0 };
        self.echo(id, seq)
    }
    fn echo(mut self, id: u16, seq: u16) -> Icmp {
        self.code = 0;
        self.rest[..2].copy_from_slice(&id.to_be_bytes());
        self.rest[2..].copy_from_slice(&seq.to_be_bytes());
        self
    }
    /// Port unreachable (type 3 code 3 / type 1 code 4) quoting `original`.
    pub fn port_unreachable(mut self, original: &[u8]) -> Icmp {
        (self.icmp_type, self.code) = if self.v6() { (1, 4) } else { (3, 3) };
        self.rest = [0; 4];
        self.body = original.to_vec();
        self
    }
    /// Time exceeded in transit (type 11 / 3, code 0) quoting `original`.
    pub fn time_exceeded(mut self, original: &[u8]) -> Icmp {
        self.icmp_type = if self.v6() { 3 } else { 11 };
        self.code = 0;
        self.rest = [0; 4];
        self.body = original.to_vec();
        self
    }
    /// Any type and code (router advertisements, timestamps, ...).
    pub fn kind(mut self, icmp_type: u8, code: u8) -> Icmp {
        self.icmp_type = icmp_type;
        self.code = code;
        self
    }
    /// The message body (echo data, or the quoted packet).
    pub fn body(mut self, body: &[u8]) -> Icmp {
        self.body = body.to_vec();
        self
    }

    /// The packet.
    pub fn build(&self) -> Vec<u8> {
        let mut m = vec![self.icmp_type, self.code, 0, 0];
        m.extend_from_slice(&self.rest);
        m.extend_from_slice(&self.body);
        let (proto, sum) = if self.v6() {
            let pseudo = self.ip.pseudo(proto::ICMPV6, m.len());
            (proto::ICMPV6, checksum(&[&pseudo, &m]))
        } else {
            (proto::ICMP, checksum(&[&m]))
        };
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        self.ip.wrap(proto, &m, 0)
    }
}

/// A packet of any other protocol builder ([`ip`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raw {
    ip: Ip,
    proto: u8,
    payload: Vec<u8>,
}

/// A packet of IP protocol `proto` (GRE, ESP, SCTP...) from `src` to `dst` carrying `payload`
/// as is.
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8]) -> Raw {
    Raw {
        ip: Ip::new(src, dst),
        proto,
        payload: payload.to_vec(),
    }
}

impl Raw {
    ip_setters!();

    /// The packet.
    pub fn build(&self) -> Vec<u8> {
        self.ip.wrap(self.proto, &self.payload, 0)
    }
}

/// The fuzzers' seed conversations (written by `examples/fuzz_seeds.rs`): a TCP connection
/// with data and a full close in each family, a UDP exchange in each family, an ICMP echo and an
/// ICMP error quoting the tracked flow, and one mid-stream segment (for pickup mode).
pub fn fuzz_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let conversation = |p: Pair| {
        let (c, s) = (Side::Client, Side::Server);
        vec![
            p.tcp(c, SYN, 100, 0).build(),
            p.tcp(s, SYN | ACK, 900, 101).build(),
            p.tcp(c, ACK, 101, 901).build(),
            p.tcp(c, ACK | PSH, 101, 901).payload(10).build(),
            p.tcp(s, ACK, 901, 111).build(),
            p.tcp(c, FIN | ACK, 111, 901).build(),
            p.tcp(s, FIN | ACK, 901, 112).build(),
            p.tcp(c, ACK, 112, 902).build(),
        ]
    };
    let datagrams = |p: Pair| {
        let p = p.ports(5353, 53);
        vec![
            p.udp(Side::Client).data(b"abcd").build(),
            p.udp(Side::Server).data(b"abcd").build(),
        ]
    };
    let v4 = Pair::V4;
    let request = icmp(CLIENT4, SERVER4).echo_request(7, 1).build();
    let icmp4 = vec![
        request.clone(),
        icmp(SERVER4, CLIENT4).echo_reply(7, 1).build(),
        icmp(SERVER4, CLIENT4).port_unreachable(&request).build(),
    ];
    vec![
        ("tcp4", conversation(Pair::V4)),
        ("tcp6", conversation(Pair::V6)),
        ("udp4", datagrams(Pair::V4)),
        ("udp6", datagrams(Pair::V6)),
        ("icmp4", icmp4),
        ("pickup4", vec![v4.tcp(Side::Client, ACK, 5, 6).build()]),
    ]
}

/// Splits a whole IP packet into fragments as a sender would: at most `size` data bytes each
/// (rounded down to a multiple of 8, at least 8). IPv4 copies the header (and so the packet's
/// identifier) into each fragment; IPv6 puts everything after the fixed header (extension
/// headers included) into the fragmentable part, behind a fragment header with identifier
/// `id`.
pub fn fragments(packet: &[u8], size: usize, id: u32) -> Vec<Vec<u8>> {
    let size = (size & !7).max(8);
    let v4 = packet[0] >> 4 == 4;
    let head = if v4 {
        usize::from(packet[0] & 0x0f) * 4
    } else {
        40
    };
    let body = &packet[head..];
    let mut out = Vec::new();
    for (i, chunk) in body.chunks(size).enumerate() {
        let offset = u16::try_from(i * size / 8).expect("offset fits");
        let more = (i + 1) * size < body.len();
        let mut f = packet[..head].to_vec();
        if v4 {
            let total = u16::try_from(head + chunk.len()).expect("fits IPv4");
            f[2..4].copy_from_slice(&total.to_be_bytes());
            let field = (u16::from(f[6] & 0x40) << 8) | (u16::from(more) << 13) | offset;
            f[6..8].copy_from_slice(&field.to_be_bytes());
            f[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum(&[&f]);
            f[10..12].copy_from_slice(&sum.to_be_bytes());
        } else {
            let payload = u16::try_from(8 + chunk.len()).expect("fits IPv6");
            f[4..6].copy_from_slice(&payload.to_be_bytes());
            f[6] = 44;
            f.extend_from_slice(&[packet[6], 0]);
            f.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(chunk);
        out.push(f);
    }
    out
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                None => odd = Some(b),
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Family, IcmpKind, Packet, PacketMeta, Seq, Transport};
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn decode(bytes: &[u8]) -> Packet<'_> {
        Packet::decode(bytes, &PacketMeta::default()).expect("decodes")
    }

    #[test]
    fn tcp_in_both_families_parses_with_valid_checksums() {
        for pair in Pair::BOTH {
            let bytes = pair
                .tcp(Side::Client, SYN, 100, 0)
                .mss(1460)
                .sack_permitted()
                .timestamps(7, 0)
                .wscale(7)
                .payload(10)
                .build();
            let s = SlicedPacket::from_ip(&bytes).expect("etherparse parses it");
            let Some(TransportSlice::Tcp(t)) = &s.transport else {
                panic!("not TCP")
            };
            let sum = match &s.net {
                Some(NetSlice::Ipv4(ip)) => {
                    assert_eq!(
                        ip.header().to_header().calc_header_checksum(),
                        ip.header().header_checksum()
                    );
                    t.calc_checksum_ipv4(ip.header().source(), ip.header().destination())
                }
                Some(NetSlice::Ipv6(ip)) => {
                    t.calc_checksum_ipv6(ip.header().source(), ip.header().destination())
                }
                _ => panic!("not IP"),
            };
            assert_eq!(sum.expect("checksum"), t.checksum());
            let p = decode(&bytes);
            let h = p.tcp().expect("tcp");
            assert_eq!((h.sport, h.dport, h.seq), (40000, 80, Seq(100)));
            assert_eq!(h.options.mss, Some(1460));
            assert_eq!(h.options.wscale, Some(7));
            assert!(h.options.sack_permitted);
            assert_eq!(h.options.timestamps, Some((7, 0)));
            assert_eq!(h.payload_len, 10);
            assert_eq!(p.family == Family::V6, pair.is_v6());
        }
    }

    #[test]
    fn any_flag_byte_and_sack_blocks() {
        let bytes = tcp(CLIENT4, SERVER4)
            .flags(FIN | PSH | URG)
            .sack(&[(1, 9), (10, 20)])
            .build();
        let h = *decode(&bytes).tcp().expect("tcp");
        assert_eq!(h.flags, TcpFlags(FIN | PSH | URG));
        assert_eq!(h.options.sack_right_edge, Some(Seq(20)));
    }

    #[test]
    fn header_only_buffers_keep_the_lengths() {
        let bytes = Pair::V4
            .tcp(Side::Client, ACK, 1, 1)
            .payload(1000)
            .header_only()
            .build();
        assert_eq!(bytes.len(), 40);
        let p = decode(&bytes);
        assert_eq!((p.len, p.tcp().map(|t| t.payload_len)), (1040, Some(1000)));
    }

    #[test]
    fn udp_icmp_and_other_protocols() {
        for pair in Pair::BOTH {
            let d = pair.udp(Side::Client).payload(5).build();
            assert_eq!(decode(&d).ports(), (40000, 80));
            let e = decode(&pair.echo(Side::Client, true).build()).transport;
            let Transport::Icmp(h) = e else {
                panic!("not icmp")
            };
            assert_eq!(h.kind, IcmpKind::EchoRequest { id: 40000 });
            let err = icmp(pair.server, pair.client).port_unreachable(&d).build();
            let Transport::Icmp(h) = decode(&err).transport else {
                panic!("not icmp")
            };
            let IcmpKind::Error(q) = h.kind else {
                panic!("not an error")
            };
            assert_eq!((q.src, q.sport, q.dport), (pair.client, 40000, 80));
            let gre = ip(pair.client, pair.server, 47, &[0; 8]).build();
            assert_eq!(decode(&gre).transport, Transport::Other);
        }
    }

    #[test]
    fn icmp_checksums_verify() {
        let v4 = icmp(CLIENT4, SERVER4)
            .echo_request(7, 1)
            .body(b"ping")
            .build();
        assert_eq!(checksum(&[&v4[20..]]), 0);
        let v6 = icmp(CLIENT6, SERVER6)
            .echo_request(7, 1)
            .body(b"ping")
            .build();
        let pseudo = Ip::new(CLIENT6, SERVER6).pseudo(proto::ICMPV6, v6.len() - 40);
        assert_eq!(checksum(&[&pseudo, &v6[40..]]), 0);
    }

    #[test]
    fn extension_headers_and_fragments() {
        let hbh = tcp(CLIENT6, SERVER6)
            .flags(SYN)
            .hop_by_hop()
            .dest_options()
            .build();
        let p = decode(&hbh);
        assert_eq!(p.tcp().map(|t| t.flags), Some(TcpFlags(SYN)));
        assert_eq!(p.len, 40 + 16 + 20);
        for (src, dst) in [(CLIENT4, SERVER4), (CLIENT6, SERVER6)] {
            let later = udp(src, dst).payload(16).fragment(4, false).build();
            assert_eq!(decode(&later).transport, Transport::Fragment);
            let first = udp(src, dst).payload(16).fragment(0, true).build();
            assert!(matches!(decode(&first).transport, Transport::Udp { .. }));
        }
    }

    #[test]
    fn the_fuzz_seeds_are_valid_traffic() {
        use crate::engine::{Engine, EngineConfig};
        use crate::time::Timestamp;
        for (name, packets) in fuzz_seeds() {
            let e = Engine::new(EngineConfig::default());
            if name == "pickup4" {
                e.set_pickup_until(Some(Timestamp::from_secs(10)));
            }
            for (i, p) in packets.iter().enumerate() {
                let d = e.process(p, &PacketMeta::default(), Timestamp::from_secs(1));
                assert!(d.accepted(), "{name} #{i}: {:?}", d.reason());
            }
            assert_eq!(e.stats().related, u64::from(name == "icmp4"), "{name}");
        }
    }

    #[test]
    fn ip_fields_are_written() {
        let p = udp(CLIENT4, SERVER4)
            .tos(0xb8)
            .id(0x1234)
            .dont_fragment()
            .ttl(3)
            .build();
        let d = decode(&p);
        assert_eq!(
            (d.ip.tos, d.ip.id, d.ip.dont_fragment, d.ttl),
            (0xb8, 0x1234, true, 3)
        );
        let p = udp(CLIENT6, SERVER6).tos(0xa5).flow_label(0x5bcde).build();
        assert_eq!(
            (decode(&p).ip.tos, decode(&p).ip.flow_label),
            (0xa5, 0x5bcde)
        );
    }
}
