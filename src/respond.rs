//! Replies statewall sends on its own: TCP RST and ICMP unreachable packets.
//!
//! Two steps, both pure. First the engine decides an answer from the packet it already decoded:
//! [`rst_answering`] and [`unreachable_answering`] return the [`Rst`] or [`Unreachable`] with
//! every field set, or `None` when the RFCs say that no answer must be sent (a RST is never
//! answered, an ICMP error never triggers another one, a non-first fragment or a multicast
//! destination gets nothing, ...). Then the I/O layer builds the bytes with [`rst_packet`] and
//! [`unreachable_packet`] (IP header included, checksums filled in) and sends them through
//! [`crate::io::rawsend::RawSender`]. Nothing here touches a socket, and nothing parses a packet.
//!
//! Every answer looks the same whatever the probe: fixed TTL / hop limit, window 0, no TCP
//! options, a caller-drawn random IPv4 ID. That keeps statewall's answers from leaking which
//! rule or state produced them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    icmpv4, icmpv6, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, TcpHeader as WireTcp,
};

use crate::packet::{Family, Packet, Seq, TcpHeader, Transport};
use crate::verdict::{Rst, Unreachable};

/// Per-answer parameters chosen by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyOptions {
    /// IPv4 TTL / IPv6 hop limit of the answer (the same for every answer).
    pub ttl: u8,
    /// IPv4 identification field; the caller draws it from an RNG for every answer.
    pub ip_id: u16,
}

/// ICMPv4 errors must not exceed this many bytes in total (RFC 1812 §4.3.2.3).
const ICMPV4_MAX_LEN: usize = 576;
/// ICMPv6 errors must not exceed the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
const ICMPV6_MAX_LEN: usize = 1280;
/// Length of an ICMP error header (type, code, checksum, 4 unused bytes).
const ICMP_ERROR_HEADER_LEN: usize = 8;

/// The RST that answers the segment `tcp` sent from `src` to `dst`: from `dst:dport` back to
/// `src:sport`.
///
/// Follows RFC 9293 §3.10.7.1 (segment arriving for a connection that does not exist): when the
/// segment carries ACK the RST takes its sequence number from the segment's acknowledgment
/// number; otherwise it has sequence 0 and acknowledges everything the segment occupied
/// (payload + SYN + FIN). Returns `None` for a RST (never answered), for mixed address families
/// and for a source that is not a single unicast host.
pub fn rst_answering(src: IpAddr, dst: IpAddr, tcp: &TcpHeader) -> Option<Rst> {
    if tcp.flags.rst() || !is_unicast(src) || src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let (seq, ack) = if tcp.flags.ack() {
        // <SEQ=SEG.ACK><CTL=RST>
        (tcp.ack, None)
    } else {
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN each occupy one sequence number.
        let len = tcp.payload_len + u32::from(tcp.flags.syn()) + u32::from(tcp.flags.fin());
        (Seq(0), Some(tcp.seq + len))
    };
    Some(Rst {
        src: dst,
        dst: src,
        sport: tcp.dport,
        dport: tcp.sport,
        seq,
        ack,
    })
}

/// The complete IP packet of `rst`; `None` for mixed address families.
pub fn rst_packet(rst: &Rst, opts: &ReplyOptions) -> Option<Vec<u8>> {
    let mut tcp = WireTcp::new(rst.sport, rst.dport, rst.seq.get(), 0);
    tcp.rst = true;
    if let Some(ack) = rst.ack {
        tcp.ack = true;
        tcp.acknowledgment_number = ack.get();
    }
    match (rst.src, rst.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => rst_v4(tcp, src, dst, opts),
        (IpAddr::V6(src), IpAddr::V6(dst)) => rst_v6(tcp, src, dst, opts),
        _ => None,
    }
}

fn rst_v4(mut tcp: WireTcp, src: Ipv4Addr, dst: Ipv4Addr, opts: &ReplyOptions) -> Option<Vec<u8>> {
    tcp.checksum = tcp
        .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])
        .ok()?;
    let ip = ipv4_header(IpNumber::TCP, tcp.header_len(), src, dst, opts)?;
    let mut out = Vec::with_capacity(ip.header_len() + tcp.header_len());
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&tcp.to_bytes());
    Some(out)
}

fn rst_v6(mut tcp: WireTcp, src: Ipv6Addr, dst: Ipv6Addr, opts: &ReplyOptions) -> Option<Vec<u8>> {
    tcp.checksum = tcp
        .calc_checksum_ipv6_raw(src.octets(), dst.octets(), &[])
        .ok()?;
    let ip = ipv6_header(IpNumber::TCP, tcp.header_len(), src, dst, opts)?;
    let mut out = Vec::with_capacity(Ipv6Header::LEN + tcp.header_len());
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(&tcp.to_bytes());
    Some(out)
}

fn ipv4_header(
    proto: IpNumber,
    payload_len: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    opts: &ReplyOptions,
) -> Option<Ipv4Header> {
    let len = u16::try_from(payload_len).ok()?;
    let mut ip = Ipv4Header::new(len, opts.ttl, proto, src.octets(), dst.octets()).ok()?;
    ip.identification = opts.ip_id;
    ip.dont_fragment = true;
    ip.header_checksum = ip.calc_header_checksum();
    Some(ip)
}

fn ipv6_header(
    proto: IpNumber,
    payload_len: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    opts: &ReplyOptions,
) -> Option<Ipv6Header> {
    Some(Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: u16::try_from(payload_len).ok()?,
        next_header: proto,
        hop_limit: opts.ttl,
        source: src.octets(),
        destination: dst.octets(),
    })
}

/// The "port unreachable" ICMP error answering `pkt` (as decoded; its bytes may be only the
/// first bytes of the packet), sent from the packet's destination to its source.
///
/// IPv4: ICMP type 3 code 3 quoting the original IP header and as many following bytes as fit
/// in 576 bytes (RFC 1812 §4.3.2.3). IPv6: ICMPv6 type 1 code 4 quoting as much as fits in
/// 1280 bytes (RFC 4443 §3.1). Returns `None` when no error may be sent (RFC 1122 §3.2.2,
/// RFC 4443 §2.4 (e)): the packet is an ICMP error or a non-first fragment, is addressed to a
/// multicast or broadcast address, or comes from an address that is not a single unicast host.
pub fn unreachable_answering(pkt: &Packet<'_>) -> Option<Unreachable> {
    if pkt.transport == Transport::Fragment {
        return None;
    }
    let (allowed, max_quote) = match (pkt.src, pkt.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => (
            is_unicast_v4(src)
                && !(dst.is_multicast() || dst.is_broadcast() || dst.is_unspecified()),
            ICMPV4_MAX_LEN - Ipv4Header::MIN_LEN - ICMP_ERROR_HEADER_LEN,
        ),
        (IpAddr::V6(src), IpAddr::V6(dst)) => (
            !(src.is_unspecified()
                || src.is_multicast()
                || src.is_loopback()
                || dst.is_multicast()
                || dst.is_unspecified()),
            ICMPV6_MAX_LEN - Ipv6Header::LEN - ICMP_ERROR_HEADER_LEN,
        ),
        _ => return None,
    };
    if !allowed {
        return None;
    }
    if let Transport::Icmp(h) = &pkt.transport {
        let error = match pkt.family {
            // RFC 792, RFC 1812 §4.3.2.4.
            Family::V4 => matches!(h.icmp_type, 3 | 4 | 5 | 11 | 12),
            // ICMPv6 types below 128 are errors (RFC 4443 §2.1).
            Family::V6 => h.icmp_type < 128,
        };
        if error {
            return None;
        }
    }
    // What was captured, never past the packet's own end (trailing link-layer padding).
    let available = pkt.bytes.len().min(pkt.len);
    let quote = pkt.bytes.get(..available.min(max_quote))?.to_vec();
    Some(Unreachable {
        src: pkt.dst,
        dst: pkt.src,
        quote,
    })
}

/// The complete IP packet of `u`; `None` for mixed address families or a quote shorter than
/// an IP header of its family.
pub fn unreachable_packet(u: &Unreachable, opts: &ReplyOptions) -> Option<Vec<u8>> {
    match (u.src, u.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) if u.quote.len() >= Ipv4Header::MIN_LEN => {
            let max = ICMPV4_MAX_LEN - Ipv4Header::MIN_LEN - ICMP_ERROR_HEADER_LEN;
            let quote = &u.quote[..u.quote.len().min(max)];
            let icmp_type = Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port);
            let icmp = Icmpv4Header::with_checksum(icmp_type, quote);
            let ip = ipv4_header(
                IpNumber::ICMP,
                icmp.header_len() + quote.len(),
                src,
                dst,
                opts,
            )?;
            let mut out = Vec::with_capacity(ip.header_len() + icmp.header_len() + quote.len());
            out.extend_from_slice(&ip.to_bytes());
            out.extend_from_slice(&icmp.to_bytes());
            out.extend_from_slice(quote);
            Some(out)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) if u.quote.len() >= Ipv6Header::LEN => {
            let max = ICMPV6_MAX_LEN - Ipv6Header::LEN - ICMP_ERROR_HEADER_LEN;
            let quote = &u.quote[..u.quote.len().min(max)];
            let icmp_type = Icmpv6Type::DestinationUnreachable(icmpv6::DestUnreachableCode::Port);
            let icmp =
                Icmpv6Header::with_checksum(icmp_type, src.octets(), dst.octets(), quote).ok()?;
            let ip = ipv6_header(
                IpNumber::IPV6_ICMP,
                icmp.header_len() + quote.len(),
                src,
                dst,
                opts,
            )?;
            let mut out = Vec::with_capacity(Ipv6Header::LEN + icmp.header_len() + quote.len());
            out.extend_from_slice(&ip.to_bytes());
            out.extend_from_slice(&icmp.to_bytes());
            out.extend_from_slice(quote);
            Some(out)
        }
        _ => None,
    }
}

/// True for an address that names a single host (not zero, multicast, broadcast or class E).
fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.octets()[0] >= 240),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// RFC 1122 §3.2.2: an ICMP error goes only to a single host that is not loopback.
fn is_unicast_v4(ip: Ipv4Addr) -> bool {
    is_unicast(IpAddr::V4(ip)) && !ip.is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PacketMeta, TcpFlags, TcpOptions};
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const PSH: u8 = TcpFlags::PSH;
    const URG: u8 = TcpFlags::URG;

    const OPTS: ReplyOptions = ReplyOptions {
        ttl: 64,
        ip_id: 0x1234,
    };
    const CLI4: &str = "198.51.100.2";
    const SRV4: &str = "203.0.113.2";
    const CLI6: &str = "2001:db8:1::2";
    const SRV6: &str = "2001:db8:2::2";

    /// A TCP segment to answer, as the engine decoded it.
    #[derive(Clone, Copy)]
    struct Probe {
        src: IpAddr,
        dst: IpAddr,
        tcp: TcpHeader,
    }

    fn probe(src: &str, dst: &str, flags: u8, payload_len: u32) -> Probe {
        Probe {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            tcp: TcpHeader {
                sport: 40000,
                dport: 22,
                seq: Seq(1000),
                ack: Seq(5000),
                flags: TcpFlags(flags),
                window: 64000,
                payload_len,
                options: TcpOptions::default(),
            },
        }
    }

    /// The engine's decision, then the I/O layer's bytes.
    fn rst_for(p: &Probe, opts: &ReplyOptions) -> Option<Vec<u8>> {
        rst_packet(&rst_answering(p.src, p.dst, &p.tcp)?, opts)
    }

    /// The port unreachable answering `original` (as captured): decoded by the engine, decided,
    /// built. `None` when it does not decode or must not be answered.
    fn icmp_port_unreachable(original: &[u8], opts: &ReplyOptions) -> Option<Vec<u8>> {
        let pkt = Packet::decode(original, &PacketMeta::default()).ok()?;
        unreachable_packet(&unreachable_answering(&pkt)?, opts)
    }

    /// Parses a RST back, checks addresses, ports, checksums and IP fields; returns the header.
    fn parse_rst(bytes: &[u8], p: &Probe) -> WireTcp {
        let parsed = PacketHeaders::from_ip_slice(bytes).unwrap();
        assert!(parsed.payload.slice().is_empty());
        let Some(TransportHeader::Tcp(tcp)) = parsed.transport else {
            panic!("not TCP")
        };
        match parsed.net.unwrap() {
            NetHeaders::Ipv4(ip, _) => {
                assert_eq!(IpAddr::from(ip.source), p.dst);
                assert_eq!(IpAddr::from(ip.destination), p.src);
                assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&ip, &[]).unwrap());
                assert_eq!(ip.time_to_live, OPTS.ttl);
                assert_eq!(ip.identification, OPTS.ip_id);
                assert!(ip.dont_fragment);
                assert_eq!(bytes.len(), 40);
            }
            NetHeaders::Ipv6(ip, _) => {
                assert_eq!(IpAddr::from(ip.source), p.dst);
                assert_eq!(IpAddr::from(ip.destination), p.src);
                assert_eq!(tcp.checksum, tcp.calc_checksum_ipv6(&ip, &[]).unwrap());
                assert_eq!(ip.hop_limit, OPTS.ttl);
                assert_eq!(bytes.len(), 60);
            }
            NetHeaders::Arp(_) => panic!("arp"),
        }
        assert_eq!(
            (tcp.source_port, tcp.destination_port),
            (p.tcp.dport, p.tcp.sport)
        );
        assert_eq!(tcp.window_size, 0);
        assert!(tcp.options.is_empty());
        assert!(tcp.rst && !tcp.syn && !tcp.fin && !tcp.psh && !tcp.urg);
        // Independent check: the one's complement sum over pseudo-header + segment is 0xffff.
        assert_eq!(independent_tcp_sum(bytes), 0xffff);
        tcp
    }

    fn fold(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn sum_words(data: &[u8]) -> u32 {
        data.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    }

    fn independent_tcp_sum(bytes: &[u8]) -> u16 {
        let (addrs, seg) = if bytes[0] >> 4 == 4 {
            (&bytes[12..20], &bytes[20..])
        } else {
            (&bytes[8..40], &bytes[40..])
        };
        let pseudo = sum_words(addrs) + 6 + seg.len() as u32;
        fold(pseudo + sum_words(seg))
    }

    /// Every flag shape: (flags, payload) → (expect ACK flag, seq, ack).
    fn check_flag_cases(src: &str, dst: &str) {
        let cases: [(&str, u8, u32, bool, u32, u32); 10] = [
            ("ack probe", ACK, 0, false, 5000, 0),
            ("syn", SYN, 0, true, 0, 1001),
            ("fin", FIN, 0, true, 0, 1001),
            ("null", 0, 0, true, 0, 1000),
            ("xmas", FIN | PSH | URG, 0, true, 0, 1001),
            ("syn+fin", SYN | FIN, 0, true, 0, 1002),
            ("maimon", FIN | ACK, 0, false, 5000, 0),
            ("data with ack", PSH | ACK, 100, false, 5000, 0),
            ("data without ack", PSH, 100, true, 0, 1100),
            ("syn with data", SYN, 10, true, 0, 1011),
        ];
        for (name, flags, len, ack_flag, seq, ack) in cases {
            let p = probe(src, dst, flags, len);
            let bytes = rst_for(&p, &OPTS).unwrap_or_else(|| panic!("{name}: no RST"));
            let tcp = parse_rst(&bytes, &p);
            assert_eq!(tcp.ack, ack_flag, "{name}: ACK flag");
            assert_eq!(tcp.sequence_number, seq, "{name}: seq");
            assert_eq!(tcp.acknowledgment_number, ack, "{name}: ack");
        }
    }

    #[test]
    fn rst_flag_cases_v4() {
        check_flag_cases(CLI4, SRV4);
    }

    #[test]
    fn rst_flag_cases_v6() {
        check_flag_cases(CLI6, SRV6);
    }

    #[test]
    fn rst_ack_number_wraps() {
        let mut p = probe(CLI4, SRV4, SYN | FIN, 0);
        p.tcp.seq = Seq(u32::MAX);
        let tcp = parse_rst(&rst_for(&p, &OPTS).unwrap(), &p);
        assert_eq!(tcp.acknowledgment_number, 1);
    }

    #[test]
    fn rst_is_never_answered() {
        for flags in [RST, RST | ACK, RST | SYN] {
            assert_eq!(rst_for(&probe(CLI4, SRV4, flags, 0), &OPTS), None);
            assert_eq!(rst_for(&probe(CLI6, SRV6, flags, 0), &OPTS), None);
        }
    }

    #[test]
    fn rst_refuses_mixed_families_and_non_unicast_sources() {
        assert_eq!(rst_for(&probe(CLI4, SRV6, SYN, 0), &OPTS), None);
        assert_eq!(rst_for(&probe(CLI6, SRV4, SYN, 0), &OPTS), None);
        for src in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "ff02::1",
            "::",
        ] {
            let dst = if src.contains(':') { SRV6 } else { SRV4 };
            assert_eq!(rst_for(&probe(src, dst, SYN, 0), &OPTS), None, "{src}");
        }
    }

    #[test]
    fn rst_uses_the_callers_ip_id_and_ttl() {
        let p = probe(CLI4, SRV4, SYN, 0);
        let a = rst_for(&p, &ReplyOptions { ttl: 64, ip_id: 1 }).unwrap();
        let b = rst_for(&p, &ReplyOptions { ttl: 64, ip_id: 2 }).unwrap();
        assert_eq!(u16::from_be_bytes([a[4], a[5]]), 1);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 2);
        let c = rst_for(&p, &ReplyOptions { ttl: 255, ip_id: 2 }).unwrap();
        assert_eq!(c[8], 255);
    }

    /// A UDP datagram as captured: IP header + UDP header + `payload` bytes.
    fn udp_packet(src: &str, dst: &str, payload: usize) -> Vec<u8> {
        let builder = match (
            src.parse::<IpAddr>().unwrap(),
            dst.parse::<IpAddr>().unwrap(),
        ) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 20)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                etherparse::PacketBuilder::ipv6(s.octets(), d.octets(), 20)
            }
            _ => panic!("mixed"),
        };
        let builder = builder.udp(5353, 161);
        let data = vec![0xab; payload];
        let mut out = Vec::new();
        builder.write(&mut out, &data).unwrap();
        out
    }

    fn parse_icmp(bytes: &[u8]) -> (NetHeaders, TransportHeader, Vec<u8>) {
        let parsed = PacketHeaders::from_ip_slice(bytes).unwrap();
        let quote = parsed.payload.slice().to_vec();
        (parsed.net.unwrap(), parsed.transport.unwrap(), quote)
    }

    #[test]
    fn icmpv4_port_unreachable_quotes_the_original() {
        let orig = udp_packet(CLI4, SRV4, 12);
        let reply = icmp_port_unreachable(&orig, &OPTS).unwrap();
        let (net, transport, quote) = parse_icmp(&reply);
        let NetHeaders::Ipv4(ip, _) = net else {
            panic!("not v4")
        };
        assert_eq!(IpAddr::from(ip.source), SRV4.parse::<IpAddr>().unwrap());
        assert_eq!(
            IpAddr::from(ip.destination),
            CLI4.parse::<IpAddr>().unwrap()
        );
        assert_eq!(ip.header_checksum, ip.calc_header_checksum());
        assert_eq!((ip.time_to_live, ip.identification), (OPTS.ttl, OPTS.ip_id));
        let TransportHeader::Icmpv4(icmp) = transport else {
            panic!("not icmpv4")
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port)
        );
        assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(&quote));
        assert_eq!(quote, orig);
        let icmp_bytes = &reply[20..];
        assert_eq!(fold(sum_words(icmp_bytes)), 0xffff);
        assert_eq!((icmp_bytes[0], icmp_bytes[1]), (3, 3));
    }

    #[test]
    fn icmpv4_is_capped_at_576_bytes() {
        let orig = udp_packet(CLI4, SRV4, 1400);
        let reply = icmp_port_unreachable(&orig, &OPTS).unwrap();
        assert_eq!(reply.len(), 576);
        assert_eq!(&reply[28..], &orig[..548]);
        let (_, TransportHeader::Icmpv4(icmp), quote) = parse_icmp(&reply) else {
            panic!()
        };
        assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(&quote));
    }

    #[test]
    fn icmpv4_header_only_capture_is_answered() {
        let orig = udp_packet(CLI4, SRV4, 1000);
        let reply = icmp_port_unreachable(&orig[..28], &OPTS).unwrap();
        assert_eq!(reply.len(), 28 + 28);
        assert_eq!(&reply[28..], &orig[..28]);
        // The builder quotes even a bare IP header, never less.
        let quoting = |n: usize| Unreachable {
            src: SRV4.parse().unwrap(),
            dst: CLI4.parse().unwrap(),
            quote: orig[..n].to_vec(),
        };
        assert!(unreachable_packet(&quoting(20), &OPTS).is_some());
        assert_eq!(unreachable_packet(&quoting(19), &OPTS), None);
        // A capture without the UDP header does not decode: it is dropped as malformed, never
        // answered.
        assert_eq!(icmp_port_unreachable(&orig[..20], &OPTS), None);
    }

    #[test]
    fn icmpv4_ignores_trailing_bytes_past_total_length() {
        let mut orig = udp_packet(CLI4, SRV4, 4);
        let real = orig.len();
        orig.extend_from_slice(&[0; 10]);
        let reply = icmp_port_unreachable(&orig, &OPTS).unwrap();
        assert_eq!(reply.len(), 28 + real);
    }

    #[test]
    fn icmpv4_refusals() {
        // Non-first fragment.
        let mut frag = udp_packet(CLI4, SRV4, 8);
        frag[6] = 0x00;
        frag[7] = 0x10;
        assert_eq!(icmp_port_unreachable(&frag, &OPTS), None);
        // Multicast / broadcast destination, non-unicast source.
        for (src, dst) in [
            (CLI4, "224.0.0.251"),
            (CLI4, "255.255.255.255"),
            ("0.0.0.0", SRV4),
            ("224.0.0.1", SRV4),
        ] {
            assert_eq!(
                icmp_port_unreachable(&udp_packet(src, dst, 8), &OPTS),
                None,
                "{dst}"
            );
        }
        // An ICMP error is never answered; an echo request may be.
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 20)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut out, &[0; 28])
            .unwrap();
        assert_eq!(icmp_port_unreachable(&out, &OPTS), None);
        // ... also when it quotes a real datagram (so that it decodes as an ICMP error).
        let mut quoting = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 20)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut quoting, &udp_packet(SRV4, CLI4, 4))
            .unwrap();
        assert!(Packet::decode(&quoting, &PacketMeta::default()).is_ok());
        assert_eq!(icmp_port_unreachable(&quoting, &OPTS), None);
        let mut echo = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 20)
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, &[0; 8])
            .unwrap();
        assert!(icmp_port_unreachable(&echo, &OPTS).is_some());
        // Garbage.
        assert_eq!(icmp_port_unreachable(&[], &OPTS), None);
        assert_eq!(icmp_port_unreachable(&[0x45; 10], &OPTS), None);
        assert_eq!(icmp_port_unreachable(&[0x75; 60], &OPTS), None);
    }

    #[test]
    fn icmpv6_port_unreachable_quotes_the_original() {
        let orig = udp_packet(CLI6, SRV6, 12);
        let reply = icmp_port_unreachable(&orig, &OPTS).unwrap();
        let (net, transport, quote) = parse_icmp(&reply);
        let NetHeaders::Ipv6(ip, _) = net else {
            panic!("not v6")
        };
        assert_eq!(IpAddr::from(ip.source), SRV6.parse::<IpAddr>().unwrap());
        assert_eq!(
            IpAddr::from(ip.destination),
            CLI6.parse::<IpAddr>().unwrap()
        );
        assert_eq!(ip.hop_limit, OPTS.ttl);
        let TransportHeader::Icmpv6(icmp) = transport else {
            panic!("not icmpv6")
        };
        assert_eq!(
            icmp.icmp_type,
            Icmpv6Type::DestinationUnreachable(icmpv6::DestUnreachableCode::Port)
        );
        let expected = icmp
            .icmp_type
            .calc_checksum(ip.source, ip.destination, &quote)
            .unwrap();
        assert_eq!(icmp.checksum, expected);
        assert_eq!(quote, orig);
        // Independent check with the ICMPv6 pseudo-header (next header 58).
        let body = &reply[40..];
        let pseudo = sum_words(&reply[8..40]) + 58 + body.len() as u32;
        assert_eq!(fold(pseudo + sum_words(body)), 0xffff);
        assert_eq!((body[0], body[1]), (1, 4));
    }

    #[test]
    fn icmpv6_is_capped_at_1280_bytes() {
        let orig = udp_packet(CLI6, SRV6, 3000);
        let reply = icmp_port_unreachable(&orig, &OPTS).unwrap();
        assert_eq!(reply.len(), 1280);
        assert_eq!(&reply[48..], &orig[..1232]);
    }

    #[test]
    fn icmpv6_refusals() {
        assert_eq!(
            icmp_port_unreachable(&udp_packet(CLI6, "ff02::1", 8), &OPTS),
            None
        );
        assert_eq!(
            icmp_port_unreachable(&udp_packet("::", SRV6, 8), &OPTS),
            None
        );
        assert_eq!(
            icmp_port_unreachable(&udp_packet("ff02::2", SRV6, 8), &OPTS),
            None
        );
        // ICMPv6 error (type 1) is never answered; echo request (128) may be.
        let src: Ipv6Addr = CLI6.parse().unwrap();
        let dst: Ipv6Addr = SRV6.parse().unwrap();
        let mut err = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 20)
            .icmpv6(Icmpv6Type::DestinationUnreachable(
                icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut err, &[0; 48])
            .unwrap();
        assert_eq!(icmp_port_unreachable(&err, &OPTS), None);
        let mut quoting = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 20)
            .icmpv6(Icmpv6Type::DestinationUnreachable(
                icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut quoting, &udp_packet(SRV6, CLI6, 4))
            .unwrap();
        assert!(Packet::decode(&quoting, &PacketMeta::default()).is_ok());
        assert_eq!(icmp_port_unreachable(&quoting, &OPTS), None);
        let mut echo = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 20)
            .icmpv6_echo_request(1, 1)
            .write(&mut echo, &[0; 8])
            .unwrap();
        assert!(icmp_port_unreachable(&echo, &OPTS).is_some());
    }

    /// IPv6 packet with a fragment header in front of a UDP header.
    fn v6_fragment(offset_units: u16) -> Vec<u8> {
        let udp = udp_packet(CLI6, SRV6, 8);
        let mut out = udp[..40].to_vec();
        out[6] = 44; // next header: fragment
        let payload = 8 + (udp.len() - 40);
        out[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        let frag_field = (offset_units << 3) | 1; // M flag set
        out.extend_from_slice(&[17, 0]);
        out.extend_from_slice(&frag_field.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 7]);
        out.extend_from_slice(&udp[40..]);
        out
    }

    #[test]
    fn icmpv6_fragments() {
        assert!(icmp_port_unreachable(&v6_fragment(0), &OPTS).is_some());
        assert_eq!(icmp_port_unreachable(&v6_fragment(10), &OPTS), None);
        // Truncated inside the extension header chain: cannot tell, so no answer.
        assert_eq!(icmp_port_unreachable(&v6_fragment(0)[..44], &OPTS), None);
    }

    /// An IP packet of `family` with `proto` as its (first) next header and `body` after the
    /// fixed header.
    fn raw_ip(v6: bool, proto: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if v6 {
            let (src, dst): (Ipv6Addr, Ipv6Addr) = (CLI6.parse().unwrap(), SRV6.parse().unwrap());
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
            out.extend_from_slice(&[proto, 64]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        } else {
            let (src, dst): (Ipv4Addr, Ipv4Addr) = (CLI4.parse().unwrap(), SRV4.parse().unwrap());
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&(20 + body.len() as u16).to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        out.extend_from_slice(body);
        out
    }

    /// The engine fuzz target found an IPv6 packet whose port unreachable did not decode: the
    /// quote decoder read ICMP of the other family, and its own walk of IPv6 extension headers,
    /// where the packet's decoder had read neither. Whatever a packet decodes as, the error
    /// quoting it decodes too.
    #[test]
    fn the_error_quoting_any_decodable_packet_decodes() {
        // One destination-options header (8 bytes, next header `next`).
        let dest_opts = |next: u8| [next, 0, 1, 4, 0, 0, 0, 0];
        let mut chain = Vec::new();
        for next in [60, 60, 60, 59] {
            chain.extend_from_slice(&dest_opts(next));
        }
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("v6, ICMPv4 number, empty", raw_ip(true, 1, &[])),
            ("v6, ICMPv4 echo byte", raw_ip(true, 1, &[8])),
            (
                "v6, ICMPv4 echo, 5 bytes",
                raw_ip(true, 1, &[8, 0, 0, 0, 0]),
            ),
            ("v4, ICMPv6 number, empty", raw_ip(false, 58, &[])),
            ("v4, ICMPv6 echo byte", raw_ip(false, 58, &[128])),
            ("v6, unknown protocol, 1 byte", raw_ip(true, 253, &[7])),
            ("v6, four destination options", raw_ip(true, 60, &chain)),
        ];
        // The engine fuzz target's second find: an IPv4 total length (1) shorter than the header,
        // with an ICMP echo after the header. The packet decoded from the buffer while its
        // length said 20 bytes, so the answer quoted the bare header: it is malformed now.
        let mut short_total = raw_ip(false, 1, &[8, 0, 0, 0, 0, 1, 0, 1]);
        short_total[2..4].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(
            Packet::decode(&short_total, &PacketMeta::default()).map(|p| p.len),
            Err(crate::packet::DecodeError::Ip)
        );
        for (name, pkt) in cases {
            let decoded = Packet::decode(&pkt, &PacketMeta::default());
            assert!(
                decoded.is_ok(),
                "{name}: the case itself decodes: {decoded:?}"
            );
            let reply = icmp_port_unreachable(&pkt, &OPTS).unwrap_or_else(|| panic!("{name}"));
            let back = Packet::decode(&reply, &PacketMeta::default());
            assert!(back.is_ok(), "{name}: the answer does not decode: {back:?}");
        }
    }

    proptest::proptest! {
        /// Attacker-controlled bytes never panic the ICMP builder, and what it builds is
        /// bounded and checksummed.
        #[test]
        fn icmp_builder_survives_any_input(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
            if let Some(reply) = icmp_port_unreachable(&bytes, &OPTS) {
                let v4 = reply[0] >> 4 == 4;
                let max = if v4 { 576 } else { 1280 };
                proptest::prop_assert!(reply.len() <= max);
                let body = if v4 { &reply[20..] } else { &reply[40..] };
                let sum = if v4 {
                    sum_words(body)
                } else {
                    sum_words(&reply[8..40]) + 58 + body.len() as u32 + sum_words(body)
                };
                proptest::prop_assert_eq!(fold(sum), 0xffff);
                proptest::prop_assert!(Packet::decode(&reply, &PacketMeta::default()).is_ok());
            }
        }

        /// Valid packets with a few bytes changed (lengths, protocol, extension headers, ...).
        #[test]
        fn icmp_builder_survives_mutated_packets(
            v6 in proptest::bool::ANY,
            payload in 0usize..1400,
            cut in 0usize..1500,
            edits in proptest::collection::vec((0usize..60, proptest::num::u8::ANY), 0..6),
        ) {
            let mut bytes = if v6 { udp_packet(CLI6, SRV6, payload) } else { udp_packet(CLI4, SRV4, payload) };
            for (i, b) in edits {
                if let Some(x) = bytes.get_mut(i) {
                    *x = b;
                }
            }
            bytes.truncate(cut.max(1));
            if let Some(reply) = icmp_port_unreachable(&bytes, &OPTS) {
                proptest::prop_assert!(reply.len() <= 1280);
                proptest::prop_assert!(reply.len() >= 28);
                proptest::prop_assert!(Packet::decode(&reply, &PacketMeta::default()).is_ok());
            }
        }

        /// Every non-RST probe gets a RST with a valid checksum; RSTs get nothing.
        #[test]
        fn rst_builder_any_probe(flags in proptest::num::u8::ANY, seq in proptest::num::u32::ANY,
                                 ack in proptest::num::u32::ANY, len in 0u32..70_000, v6 in proptest::bool::ANY) {
            let (src, dst) = if v6 { (CLI6, SRV6) } else { (CLI4, SRV4) };
            let mut p = probe(src, dst, flags, len);
            p.tcp.seq = Seq(seq);
            p.tcp.ack = Seq(ack);
            match rst_for(&p, &OPTS) {
                None => proptest::prop_assert!(flags & RST != 0),
                Some(bytes) => {
                    proptest::prop_assert!(flags & RST == 0);
                    proptest::prop_assert_eq!(independent_tcp_sum(&bytes), 0xffff);
                }
            }
        }
    }
}
