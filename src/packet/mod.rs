//! Packet decoding: one IP packet, as NFQUEUE delivers it, into a borrowed view.
//!
//! The buffer starts at the IP header and may hold only the first bytes of the packet (NFQUEUE
//! copy range): lengths come from the IP header, or from the original length the caller passes
//! in [`PacketMeta::wire_len`], never from the buffer length. GSO super-packets larger than the
//! MTU are therefore handled like any other packet.
//!
//! The common IP headers (IPv4 without options or AH, IPv6 with TCP, UDP or ICMPv6 right after
//! the fixed header) are read directly; any other goes through `etherparse`, which skips IPv4
//! options and IPv6 extension headers (a property test holds the two readings to the same
//! result). TCP, UDP, ICMP and ICMPv6 headers are decoded here, including the embedded header
//! of ICMP errors.
//!
//! **Fragments.** Every fragment says where it sits ([`Packet::frag`]: identifier, offset,
//! more to come). A non-first fragment carries no transport header, so it is decoded as
//! [`Transport::Fragment`] and never mis-parsed as TCP or UDP; the first fragment carries the
//! transport header (for TCP, only the first part of the segment's payload). The engine lets a
//! non-first fragment through only when its datagram's first fragment was admitted
//! (`conntrack::fragments`). A first fragment too short to hold its transport header, or a TCP
//! fragment at offset 8 bytes that could overwrite the flags (RFC 1858), is malformed. An IPv6
//! "atomic fragment" (offset 0, no more to come, RFC 6946) is a whole packet. Where kernel
//! connection tracking is in use (the daemon checks it at start), the kernel reassembles
//! fragments before the FORWARD hook and statewall sees whole datagrams.

use std::net::IpAddr;

use etherparse::LaxIpSlice;
use thiserror::Error;

use crate::proto;

mod seq;
mod tcp_flags;

pub use seq::Seq;
pub use tcp_flags::{TcpFlags, TcpShape};

/// What the I/O layer knows about a packet besides its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketMeta<'a> {
    /// Length of the whole packet on the wire when the buffer holds only its first bytes
    /// (NFQUEUE original length). `None`: trust the IP header.
    pub wire_len: Option<usize>,
    /// Input interface name, when known.
    pub in_iface: Option<&'a str>,
    /// Output interface name, when known.
    pub out_iface: Option<&'a str>,
    /// The packet came with the FASTPATH bit restored from its connection mark: the kernel had
    /// its flow on the fast path and may have forwarded packets of it that statewall never saw
    /// ([`crate::marks`]).
    pub fastpath: bool,
    /// The packet came with the ADMITTED bit restored from its connection mark: the kernel
    /// holds its flow as one statewall admitted, and its own checks found the packet valid (an
    /// INVALID packet comes without its connection, hence without the mark).
    pub admitted: bool,
    /// The packet's Ethernet header as the kernel's LOG target prints it (`MAC=`):
    /// destination, source, EtherType. Only log lines use it; `None` when unknown.
    pub mac: Option<[u8; 14]>,
}

/// Why a packet could not be decoded. Each variant maps to a drop reason.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Empty buffer, unknown IP version or a broken IP header.
    #[error("malformed IP header")]
    Ip,
    /// A TCP header that is truncated or has a data offset below 5.
    #[error("malformed TCP header")]
    Tcp,
    /// A truncated UDP header or a UDP length shorter than its header.
    #[error("malformed UDP header")]
    Udp,
    /// A truncated ICMP header, or an ICMP error whose quoted packet cannot be decoded.
    #[error("malformed ICMP message")]
    Icmp,
    /// A first fragment too short for its transport header, or a TCP fragment at offset 8
    /// (RFC 1858 overlapping-fragment attack).
    #[error("malformed fragment")]
    Fragment,
}

/// IP version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The protocol number of this family's ICMP (1 or 58); the other family's number is
    /// just another protocol.
    pub const fn icmp_proto(self) -> u8 {
        match self {
            Family::V4 => proto::ICMP,
            Family::V6 => proto::ICMPV6,
        }
    }
}

/// The TCP options statewall uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift (capped at 14, RFC 7323).
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps (value, echo reply).
    pub timestamps: Option<(u32, u32)>,
    /// Highest right edge of the SACK blocks, if any.
    pub sack_right_edge: Option<Seq>,
}

/// A decoded TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: Seq,
    /// Acknowledgment number.
    pub ack: Seq,
    /// Flags.
    pub flags: TcpFlags,
    /// Raw (unscaled) window.
    pub window: u16,
    /// Payload length, from the IP header (or the wire length), not the buffer.
    pub payload_len: u32,
    /// Options.
    pub options: TcpOptions,
}

/// What an ICMP or ICMPv6 message is, as far as tracking goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        id: u16,
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        id: u16,
    },
    /// An error quoting the header of the packet that caused it.
    Error(Embedded),
    /// Anything else (router/neighbor discovery, timestamps, ...).
    Other,
}

/// The quoted header inside an ICMP error: the packet that caused the error, as sent by the
/// host that receives the error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded {
    /// Source of the quoted packet.
    pub src: IpAddr,
    /// Destination of the quoted packet.
    pub dst: IpAddr,
    /// IP protocol of the quoted packet.
    pub proto: u8,
    /// Ports (TCP/UDP), or (echo id, 0) for a quoted echo request/reply, or 0.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// For a quoted ICMP echo: whether it was a request.
    pub echo_request: bool,
    /// For a quoted ICMP or ICMPv6 message: its type.
    pub icmp_type: Option<u8>,
    /// For a quoted TCP segment: its sequence number.
    pub tcp_seq: Option<Seq>,
    /// The quoted packet is a non-first fragment: what follows its IP header is no transport
    /// header, and the ports above mean nothing.
    pub later_fragment: bool,
}

/// A decoded ICMP or ICMPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpHeader {
    /// Type.
    pub icmp_type: u8,
    /// Code.
    pub code: u8,
    /// Meaning.
    pub kind: IcmpKind,
}

/// The transport part of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp(TcpHeader),
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP (v4) or ICMPv6.
    Icmp(IcmpHeader),
    /// A non-first fragment: no transport header.
    Fragment,
    /// Any other IP protocol (GRE, ESP, SCTP, IGMP, ...), tracked per address pair.
    Other,
}

/// IP header fields that only logs use (iptables LOG prints them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpFields {
    /// IPv4 type of service, IPv6 traffic class (DSCP and ECN bits).
    pub tos: u8,
    /// IPv4 identification (0 for IPv6).
    pub id: u16,
    /// IPv4 "don't fragment" flag.
    pub dont_fragment: bool,
    /// IPv6 flow label (0 for IPv4).
    pub flow_label: u32,
}

/// Where a fragment sits in its datagram (the IPv4 header's fragment fields, or an IPv6
/// fragment header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// The datagram's identifier (16 bits in IPv4, 32 in IPv6).
    pub id: u32,
    /// Offset of this fragment's data in the datagram, in 8-byte units.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

impl Fragment {
    /// Whether this is the first fragment (it carries the transport header).
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// Bytes of the datagram's transport part up to the end of this fragment's data, which is
    /// `data_len` bytes long.
    pub fn data_end(&self, data_len: usize) -> usize {
        usize::from(self.offset) * 8 + data_len
    }
}

/// A decoded IP packet, borrowing the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// IP version.
    pub family: Family,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub proto: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// The IP header fields a log line shows (TOS, ID, DF, flow label).
    pub ip: IpFields,
    /// Length of the whole IP packet on the wire.
    pub len: usize,
    /// Length of the IP header, IPv6 extension headers included.
    pub header_len: usize,
    /// When the packet is a fragment: where it sits in its datagram.
    pub frag: Option<Fragment>,
    /// Transport header.
    pub transport: Transport,
    /// The captured bytes (maybe only the first bytes of the packet).
    pub bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes the IP packet in `bytes`.
    #[inline]
    pub fn decode(bytes: &'a [u8], meta: &PacketMeta<'_>) -> Result<Packet<'a>, DecodeError> {
        let plain = match bytes.first().map(|b| b >> 4) {
            Some(4) => IpLayer::plain_v4(bytes),
            Some(6) => IpLayer::plain_v6(bytes),
            _ => None,
        };
        let ip = match plain {
            Some(ip) => ip,
            None => IpLayer::parse(bytes)?,
        };
        let IpLayer {
            family,
            src,
            dst,
            ttl,
            fields,
            header_len,
            declared_len,
            frag,
            zero_len_field,
            proto,
            data,
        } = ip;
        // Length of the packet: the IP header's, unless its length field is zero (GSO
        // super-packets beyond 64 KiB, jumbograms), then the caller's figure, then the
        // buffer's. The caller's figure is the frame's: Ethernet pads short frames to 60
        // bytes, and that padding is no payload.
        let len = match meta.wire_len {
            _ if !zero_len_field => declared_len.max(header_len),
            Some(n) if n >= header_len => n,
            _ => bytes.len(),
        };
        let l4_len = len.saturating_sub(header_len);
        let transport = match frag {
            Some(f) if !f.is_first() => {
                // RFC 1858: a TCP fragment at offset 8 bytes can rewrite the flags of the first.
                if proto == proto::TCP && f.offset == 1 {
                    return Err(DecodeError::Fragment);
                }
                Transport::Fragment
            }
            Some(_) => {
                decode_transport(family, proto, data, l4_len).map_err(|_| DecodeError::Fragment)?
            }
            None => decode_transport(family, proto, data, l4_len)?,
        };
        Ok(Packet {
            family,
            src,
            dst,
            proto,
            ttl,
            ip: fields,
            len,
            header_len,
            frag,
            transport,
            bytes,
        })
    }

    /// The TCP header, if this is TCP.
    pub fn tcp(&self) -> Option<&TcpHeader> {
        match &self.transport {
            Transport::Tcp(t) => Some(t),
            _ => None,
        }
    }

    /// Source and destination ports (0 when the protocol has none).
    pub fn ports(&self) -> (u16, u16) {
        match self.transport {
            Transport::Tcp(t) => (t.sport, t.dport),
            Transport::Udp { sport, dport } => (sport, dport),
            _ => (0, 0),
        }
    }
}

/// What the decoder takes from the IP layer.
#[derive(Debug, PartialEq, Eq)]
struct IpLayer<'a> {
    family: Family,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    fields: IpFields,
    /// Length of the IP header, IPv6 extension headers included.
    header_len: usize,
    /// The length the IP header declares for the whole packet.
    declared_len: usize,
    frag: Option<Fragment>,
    /// The length field is zero (GSO super-packet, jumbogram).
    zero_len_field: bool,
    /// The transport protocol (after IPv6 extension headers and an IPv4 AH).
    proto: u8,
    /// The transport part the buffer holds.
    data: &'a [u8],
}

impl<'a> IpLayer<'a> {
    /// The common case read directly: an IPv4 header without options carrying no
    /// authentication header, whose total length is zero or at least its header. Everything
    /// else goes to [`IpLayer::parse`]; the two agree wherever both apply (tested).
    #[inline(always)]
    fn plain_v4(bytes: &'a [u8]) -> Option<IpLayer<'a>> {
        let h: &[u8; 20] = bytes.first_chunk()?;
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if h[0] != 0x45 || h[9] == proto::AH || (total != 0 && total < 20) {
            return None;
        }
        // etherparse's lax rule: the payload ends where the total length says, unless the
        // buffer ends first or the field is zero.
        let end = if total == 0 || total > bytes.len() {
            bytes.len()
        } else {
            total
        };
        let id = u16::from_be_bytes([h[4], h[5]]);
        let flags = u16::from_be_bytes([h[6], h[7]]);
        let frag = Fragment {
            id: u32::from(id),
            offset: flags & 0x1fff,
            more: flags & 0x2000 != 0,
        };
        Some(IpLayer {
            family: Family::V4,
            src: IpAddr::from([h[12], h[13], h[14], h[15]]),
            dst: IpAddr::from([h[16], h[17], h[18], h[19]]),
            ttl: h[8],
            fields: IpFields {
                tos: h[1],
                id,
                dont_fragment: flags & 0x4000 != 0,
                flow_label: 0,
            },
            header_len: 20,
            declared_len: total,
            frag: (frag.more || frag.offset > 0).then_some(frag),
            zero_len_field: total == 0,
            proto: h[9],
            data: &bytes[20..end],
        })
    }

    /// The common case of IPv6: TCP, UDP or ICMPv6 right after the fixed header (no
    /// extension header). Everything else goes to [`IpLayer::parse`] (tested to agree).
    #[inline(always)]
    fn plain_v6(bytes: &'a [u8]) -> Option<IpLayer<'a>> {
        let h: &[u8; 40] = bytes.first_chunk()?;
        if !matches!(h[6], proto::TCP | proto::UDP | proto::ICMPV6) {
            return None;
        }
        let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
        // etherparse's lax rule: the payload ends where the payload length says, unless the
        // buffer ends first or the field is zero.
        let end = if payload == 0 {
            bytes.len()
        } else {
            bytes.len().min(40 + payload)
        };
        let addr = |at: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&h[at..at + 16]);
            IpAddr::from(o)
        };
        Some(IpLayer {
            family: Family::V6,
            src: addr(8),
            dst: addr(24),
            ttl: h[7],
            fields: IpFields {
                tos: (h[0] << 4) | (h[1] >> 4),
                id: 0,
                dont_fragment: false,
                flow_label: (u32::from(h[1] & 0x0f) << 16)
                    | (u32::from(h[2]) << 8)
                    | u32::from(h[3]),
            },
            header_len: 40,
            declared_len: 40 + payload,
            frag: None,
            zero_len_field: payload == 0,
            proto: h[6],
            data: &bytes[40..end],
        })
    }

    /// Any IPv4 or IPv6 packet, through etherparse.
    #[inline(never)]
    fn parse(bytes: &'a [u8]) -> Result<IpLayer<'a>, DecodeError> {
        let ip = match LaxIpSlice::from_slice(bytes) {
            Ok((ip, None)) => ip,
            // A broken IPv6 extension header chain.
            Ok((_, Some(_))) | Err(_) => return Err(DecodeError::Ip),
        };
        let payload = ip.payload();
        let (src, dst) = (ip.source_addr(), ip.destination_addr());
        let (proto, data) = (payload.ip_number.0, payload.payload);
        Ok(match &ip {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                let header_len = usize::from(h.ihl()) * 4;
                if h.total_len() != 0 && usize::from(h.total_len()) < header_len {
                    // A total length shorter than its own header: the kernel drops it
                    // (ip_rcv_core), and any length statewall took from it would contradict
                    // the bytes it decoded (etherparse falls back to the buffer's length).
                    return Err(DecodeError::Ip);
                }
                let frag = Fragment {
                    id: u32::from(h.identification()),
                    offset: h.fragments_offset().value(),
                    more: h.more_fragments(),
                };
                IpLayer {
                    family: Family::V4,
                    src,
                    dst,
                    ttl: h.ttl(),
                    fields: IpFields {
                        tos: (h.dcp().value() << 2) | h.ecn().value(),
                        id: h.identification(),
                        dont_fragment: h.dont_fragment(),
                        flow_label: 0,
                    },
                    header_len,
                    declared_len: usize::from(h.total_len()),
                    frag: (frag.more || frag.offset > 0).then_some(frag),
                    zero_len_field: h.total_len() == 0,
                    proto,
                    data,
                }
            }
            LaxIpSlice::Ipv6(v6) => {
                let h = v6.header();
                let exts = v6.extensions().slice();
                IpLayer {
                    family: Family::V6,
                    src,
                    dst,
                    ttl: h.hop_limit(),
                    fields: IpFields {
                        tos: h.traffic_class(),
                        id: 0,
                        dont_fragment: false,
                        flow_label: h.flow_label().value(),
                    },
                    header_len: 40 + exts.len(),
                    declared_len: 40 + usize::from(h.payload_length()),
                    // An atomic fragment (offset 0, no more) is a whole packet (RFC 6946).
                    frag: fragment_v6(exts, h.next_header().0).filter(|f| f.more || f.offset > 0),
                    zero_len_field: h.payload_length() == 0,
                    proto,
                    data,
                }
            }
        })
    }
}

/// The IPv6 fragment header among the extension headers, if any.
fn fragment_v6(exts: &[u8], first: u8) -> Option<Fragment> {
    let mut next = first;
    let mut rest = exts;
    while !rest.is_empty() {
        match next {
            44 => {
                let field = be16(rest, 2)?;
                return Some(Fragment {
                    id: be32(rest, 4)?,
                    offset: field >> 3,
                    more: field & 1 == 1,
                });
            }
            51 => {
                // Authentication header: length in 4-byte units, minus 2.
                let len = (usize::from(*rest.get(1)?) + 2) * 4;
                next = *rest.first()?;
                rest = rest.get(len..)?;
            }
            _ => {
                let len = (usize::from(*rest.get(1)?) + 1) * 8;
                next = *rest.first()?;
                rest = rest.get(len..)?;
            }
        }
    }
    None
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

#[inline(always)]
fn decode_transport(
    family: Family,
    proto: u8,
    data: &[u8],
    l4_len: usize,
) -> Result<Transport, DecodeError> {
    match proto {
        proto::TCP => decode_tcp(data, l4_len).map(Transport::Tcp),
        proto::UDP => {
            let (Some(sport), Some(dport), Some(ulen)) =
                (be16(data, 0), be16(data, 2), be16(data, 4))
            else {
                return Err(DecodeError::Udp);
            };
            // A UDP length shorter than the header is malformed; 0 is allowed for jumbograms.
            if ulen != 0 && ulen < 8 || l4_len < 8 {
                return Err(DecodeError::Udp);
            }
            Ok(Transport::Udp { sport, dport })
        }
        p if p == family.icmp_proto() => decode_icmp(family, data).map(Transport::Icmp),
        _ => Ok(Transport::Other),
    }
}

fn decode_tcp(data: &[u8], l4_len: usize) -> Result<TcpHeader, DecodeError> {
    let err = DecodeError::Tcp;
    let doff = usize::from(data.get(12).ok_or(err)? >> 4) * 4;
    if doff < 20 || data.len() < doff || l4_len < doff {
        return Err(err);
    }
    let options = parse_tcp_options(data.get(20..doff).ok_or(err)?);
    Ok(TcpHeader {
        sport: be16(data, 0).ok_or(err)?,
        dport: be16(data, 2).ok_or(err)?,
        seq: Seq(be32(data, 4).ok_or(err)?),
        ack: Seq(be32(data, 8).ok_or(err)?),
        flags: TcpFlags(*data.get(13).ok_or(err)?),
        window: be16(data, 14).ok_or(err)?,
        payload_len: u32::try_from(l4_len - doff).unwrap_or(u32::MAX),
        options,
    })
}

/// Parses TCP options leniently, like Linux: a broken option ends parsing, never the packet.
pub fn parse_tcp_options(mut opts: &[u8]) -> TcpOptions {
    let mut out = TcpOptions::default();
    // Fast path: NOP NOP TIMESTAMP, the option block of nearly every data segment.
    if opts.len() == 12 && opts[..4] == [1, 1, 8, 10] {
        out.timestamps = be32(opts, 4).zip(be32(opts, 8));
        return out;
    }
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            0 => break,
            1 => {
                opts = rest;
                continue;
            }
            _ => {}
        }
        let Some(&len) = rest.first() else { break };
        let len = usize::from(len);
        if len < 2 || len > opts.len() {
            break;
        }
        let body = &opts[2..len];
        match (kind, len) {
            (2, 4) => out.mss = be16(body, 0),
            (3, 3) => out.wscale = Some(body[0].min(14)),
            (4, 2) => out.sack_permitted = true,
            (5, _) if (len - 2) % 8 == 0 => {
                for block in body.chunks_exact(8) {
                    if let Some(right) = be32(block, 4).map(Seq) {
                        let newer = out.sack_right_edge.is_none_or(|r| right.after(r));
                        if newer {
                            out.sack_right_edge = Some(right);
                        }
                    }
                }
            }
            (8, 10) => out.timestamps = be32(body, 0).zip(be32(body, 4)),
            _ => {}
        }
        opts = &opts[len..];
    }
    out
}

fn decode_icmp(family: Family, data: &[u8]) -> Result<IcmpHeader, DecodeError> {
    let err = DecodeError::Icmp;
    if data.len() < 8 {
        return Err(err);
    }
    let (icmp_type, code) = (data[0], data[1]);
    let id = be16(data, 4).ok_or(err)?;
    let kind = match (family, icmp_type) {
        (Family::V4, 8) | (Family::V6, 128) => IcmpKind::EchoRequest { id },
        (Family::V4, 0) | (Family::V6, 129) => IcmpKind::EchoReply { id },
        // v4: unreachable, source quench, redirect, time exceeded, parameter problem.
        (Family::V4, 3 | 4 | 5 | 11 | 12) | (Family::V6, 1..=4) => {
            IcmpKind::Error(decode_embedded(family, &data[8..]).ok_or(err)?)
        }
        _ => IcmpKind::Other,
    };
    Ok(IcmpHeader {
        icmp_type,
        code,
        kind,
    })
}

/// Decodes the packet quoted by an ICMP error: its IP header and the first 8 bytes of its
/// transport header (all that RFC 792 guarantees).
///
/// The quote is read the way [`Packet::decode`] reads a packet (the same extension header walk,
/// ICMP only of the error's own family), leniently about its length (a quote is the start of a
/// packet), so that an error quoting any packet statewall decoded decodes too.
fn decode_embedded(family: Family, quoted: &[u8]) -> Option<Embedded> {
    // An extension header chain cut by the quote ends the walk where it was cut.
    let (ip, _cut) = LaxIpSlice::from_slice(quoted).ok()?;
    let later_fragment = match &ip {
        LaxIpSlice::Ipv4(v4) if family == Family::V4 => v4.header().fragments_offset().value() > 0,
        LaxIpSlice::Ipv6(v6) if family == Family::V6 => {
            fragment_v6(v6.extensions().slice(), v6.header().next_header().0)
                .is_some_and(|f| f.offset > 0)
        }
        _ => return None,
    };
    let (src, dst) = (ip.source_addr(), ip.destination_addr());
    let proto = ip.payload().ip_number.0;
    // What follows a non-first fragment's header is data, maybe not even 4 bytes.
    let l4 = match &ip {
        // Whatever follows the header, as Linux reads a quote: some routers rewrite the quoted
        // total length (RFC 1812 §4.3.2.3), and a quote statewall builds never goes past it.
        LaxIpSlice::Ipv4(v4) => quoted
            .get(usize::from(v4.header().ihl()) * 4..)
            .unwrap_or_default(),
        LaxIpSlice::Ipv6(_) => ip.payload().payload,
    };
    let mut e = Embedded {
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        echo_request: false,
        icmp_type: None,
        tcp_seq: None,
        later_fragment,
    };
    if later_fragment {
        return Some(e);
    }
    match proto {
        proto::TCP | proto::UDP => {
            e.sport = be16(l4, 0)?;
            e.dport = be16(l4, 2)?;
            if proto == proto::TCP {
                e.tcp_seq = be32(l4, 4).map(Seq);
            }
        }
        p if p == family.icmp_proto() => {
            let t = *l4.first()?;
            e.icmp_type = Some(t);
            e.echo_request = matches!(t, 8 | 128);
            if matches!(t, 8 | 0 | 128 | 129) {
                e.sport = be16(l4, 4)?;
            }
        }
        _ => {}
    }
    Some(e)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    pub(crate) fn v4_tcp(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut b =
            PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 64).tcp(40000, 80, seq, 64240);
        if flags & TcpFlags::SYN != 0 {
            b = b.syn();
        }
        if flags & TcpFlags::ACK != 0 {
            b = b.ack(ack);
        }
        if flags & TcpFlags::FIN != 0 {
            b = b.fin();
        }
        if flags & TcpFlags::RST != 0 {
            b = b.rst();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("vec write");
        out
    }

    #[test]
    fn decodes_tcp_from_header_only_buffer() {
        let full = v4_tcp(TcpFlags::ACK, 1000, 2000, &[0u8; 1400]);
        let truncated = &full[..60];
        let p = Packet::decode(truncated, &PacketMeta::default()).expect("decodes");
        let t = p.tcp().expect("tcp");
        assert_eq!(t.payload_len, 1400);
        assert_eq!((t.seq, t.ack), (Seq(1000), Seq(2000)));
        assert_eq!(p.len, 1440);
        assert_eq!(p.ports(), (40000, 80));
    }

    #[test]
    fn wire_len_wins_for_gso_super_packets() {
        let mut full = v4_tcp(TcpFlags::ACK, 1, 1, &[0u8; 100]);
        // A TSO packet of 64000 bytes whose length field the kernel left at 0 (BIG TCP).
        full[2] = 0;
        full[3] = 0;
        let meta = PacketMeta {
            wire_len: Some(64_000),
            ..Default::default()
        };
        let p = Packet::decode(&full[..60], &meta).expect("decodes");
        assert_eq!(p.tcp().map(|t| t.payload_len), Some(64_000 - 40));
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A pure ACK padded to a 60-byte Ethernet frame: the frame's length (46 bytes from the
        // IP header on) is not the packet's; the header's 40 is.
        let mut padded = v4_tcp(TcpFlags::ACK, 1, 1, &[]);
        padded.extend_from_slice(&[0u8; 6]);
        let meta = PacketMeta {
            wire_len: Some(46),
            ..Default::default()
        };
        let p = Packet::decode(&padded, &meta).expect("decodes");
        assert_eq!(p.tcp().map(|t| t.payload_len), Some(0));
        // With data, the header's length still wins over the frame's.
        let mut data = v4_tcp(TcpFlags::ACK, 1, 1, &[7u8; 3]);
        data.extend_from_slice(&[0u8; 3]);
        let meta = PacketMeta {
            wire_len: Some(46),
            ..Default::default()
        };
        let p = Packet::decode(&data, &meta).expect("decodes");
        assert_eq!(p.tcp().map(|t| t.payload_len), Some(3));
    }

    #[test]
    fn tcp_with_bad_data_offset_is_malformed() {
        let mut pkt = v4_tcp(TcpFlags::ACK, 1, 1, &[]);
        pkt[20 + 12] = 0x40; // data offset 4 words < 5
        assert_eq!(
            Packet::decode(&pkt, &PacketMeta::default()).unwrap_err(),
            DecodeError::Tcp
        );
    }

    #[test]
    fn truncated_tcp_header_is_malformed() {
        let pkt = v4_tcp(TcpFlags::SYN, 1, 0, &[]);
        assert_eq!(
            Packet::decode(&pkt[..30], &PacketMeta::default()).unwrap_err(),
            DecodeError::Tcp
        );
    }

    #[test]
    fn garbage_is_malformed_ip() {
        assert_eq!(
            Packet::decode(&[], &PacketMeta::default()).unwrap_err(),
            DecodeError::Ip
        );
        assert_eq!(
            Packet::decode(&[0x70; 40], &PacketMeta::default()).unwrap_err(),
            DecodeError::Ip
        );
    }

    #[test]
    fn options_are_parsed() {
        let opts = [
            2, 4, 0x05, 0xb4, // mss 1460
            4, 2, // sack permitted
            8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // timestamps
            1, // nop
            3, 3, 20, // wscale 20 -> capped 14
        ];
        let o = parse_tcp_options(&opts);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 2)));
        assert_eq!(o.wscale, Some(14));
        // Broken length stops parsing without error.
        assert_eq!(parse_tcp_options(&[3, 9, 1]), TcpOptions::default());
    }

    #[test]
    fn sack_right_edge_is_the_highest() {
        let opts = [5, 18, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 10, 0, 0, 0, 20];
        assert_eq!(parse_tcp_options(&opts).sack_right_edge, Some(Seq(20)));
    }

    #[test]
    fn non_first_fragment_is_not_parsed_as_tcp() {
        let mut pkt = v4_tcp(TcpFlags::SYN, 1, 0, &[0u8; 40]);
        // More fragments clear, offset 16 bytes (2 units); checksum irrelevant for decode.
        pkt[6] = 0;
        pkt[7] = 2;
        let p = Packet::decode(&pkt, &PacketMeta::default()).expect("decodes");
        assert_eq!(p.transport, Transport::Fragment);
        pkt[7] = 1;
        assert_eq!(
            Packet::decode(&pkt, &PacketMeta::default()).unwrap_err(),
            DecodeError::Fragment
        );
    }

    #[test]
    fn icmp_error_embeds_the_offending_header() {
        // A UDP datagram from the client, then the server's port unreachable quoting it.
        let mut udp = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 64)
            .udp(5353, 9999)
            .write(&mut udp, b"hello")
            .expect("write");
        let mut icmp = Vec::new();
        PacketBuilder::ipv4([203, 0, 113, 2], [198, 51, 100, 2], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut icmp, &udp)
            .expect("write");
        let p = Packet::decode(&icmp, &PacketMeta::default()).expect("decodes");
        let Transport::Icmp(h) = p.transport else {
            panic!("not icmp")
        };
        let IcmpKind::Error(e) = h.kind else {
            panic!("not an error")
        };
        assert_eq!(e.proto, proto::UDP);
        assert_eq!((e.sport, e.dport), (5353, 9999));
        assert_eq!(e.src, IpAddr::from([198, 51, 100, 2]));
    }

    /// Some routers rewrite the quoted header's total length (RFC 1812 §4.3.2.3): the ports
    /// after the quoted header are read whatever it says, as Linux does.
    #[test]
    fn icmp_error_reads_the_ports_past_a_rewritten_total_length() {
        let mut tcp = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 2], 64)
            .tcp(40000, 80, 7, 1000)
            .write(&mut tcp, b"hello")
            .expect("write");
        tcp[2..4].copy_from_slice(&20u16.to_be_bytes());
        let mut icmp = Vec::new();
        PacketBuilder::ipv4([192, 0, 2, 1], [198, 51, 100, 2], 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Host,
            ))
            .write(&mut icmp, &tcp[..28])
            .expect("write");
        let p = Packet::decode(&icmp, &PacketMeta::default()).expect("decodes");
        let Transport::Icmp(IcmpHeader {
            kind: IcmpKind::Error(e),
            ..
        }) = p.transport
        else {
            panic!("not an ICMP error")
        };
        assert_eq!((e.proto, e.sport, e.dport), (proto::TCP, 40000, 80));
        assert_eq!(e.tcp_seq, Some(Seq(7)));
    }

    #[test]
    fn ipv6_with_extension_header() {
        let mut pkt = Vec::new();
        PacketBuilder::ipv6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .tcp(1234, 443, 7, 1000)
        .syn()
        .write(&mut pkt, &[])
        .expect("write");
        // Insert a hop-by-hop header (8 bytes, PadN) in front of TCP.
        let mut with_ext = pkt[..40].to_vec();
        with_ext[6] = 0; // next header: hop-by-hop
        let plen = u16::from_be_bytes([pkt[4], pkt[5]]) + 8;
        with_ext[4..6].copy_from_slice(&plen.to_be_bytes());
        with_ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        with_ext.extend_from_slice(&pkt[40..]);
        let p = Packet::decode(&with_ext, &PacketMeta::default()).expect("decodes");
        assert_eq!(p.family, Family::V6);
        let t = p.tcp().expect("tcp");
        assert!(t.flags.syn());
        assert_eq!(t.dport, 443);
        assert_eq!(t.payload_len, 0);
    }

    #[test]
    fn ip_fields_for_logs() {
        let mut v4 = v4_tcp(TcpFlags::SYN, 1, 0, &[]);
        v4[1] = 0xb8; // DSCP EF
        v4[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        v4[6] = 0x40; // DF
        let p = Packet::decode(&v4, &PacketMeta::default()).expect("decodes");
        let want = IpFields {
            tos: 0xb8,
            id: 0x1234,
            dont_fragment: true,
            flow_label: 0,
        };
        assert_eq!(p.ip, want);
        let mut v6 = Vec::new();
        PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(1, 2)
        .write(&mut v6, &[])
        .expect("write");
        v6[0] = 0x6a; // traffic class 0xa5, flow label 0x5bcde
        v6[1] = 0x55;
        v6[2] = 0xbc;
        v6[3] = 0xde;
        let p = Packet::decode(&v6, &PacketMeta::default()).expect("decodes");
        assert_eq!((p.ip.tos, p.ip.flow_label, p.ip.id), (0xa5, 0x5bcde, 0));
    }

    #[test]
    fn flags_display_like_tcpdump() {
        assert_eq!(TcpFlags(TcpFlags::SYN | TcpFlags::ACK).to_string(), "S.");
        assert_eq!(
            TcpFlags(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG).to_string(),
            "FPU"
        );
        assert_eq!(TcpFlags(0).to_string(), "none");
    }

    proptest::proptest! {
        /// The direct read of a plain IPv4 header gives what etherparse gives, whatever the
        /// header's fields, lengths and the buffer's length (shorter, padded, GSO).
        #[test]
        fn plain_ipv4_reads_as_etherparse_does(
            header in proptest::array::uniform20(proptest::num::u8::ANY),
            total in proptest::prop_oneof![0u16..80, proptest::num::u16::ANY],
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        ) {
            let mut bytes = header.to_vec();
            bytes[0] = 0x45;
            bytes[2..4].copy_from_slice(&total.to_be_bytes());
            bytes.extend_from_slice(&body);
            let direct = IpLayer::plain_v4(&bytes);
            let parsed = IpLayer::parse(&bytes);
            match direct {
                Some(d) => proptest::prop_assert_eq!(Ok(d), parsed),
                // Left to etherparse: options, AH, a total length below the header.
                None => proptest::prop_assert!(
                    bytes[9] == proto::AH || (total != 0 && total < 20),
                    "{:?}", bytes
                ),
            }
        }

        /// The same for IPv6 without extension headers.
        #[test]
        fn plain_ipv6_reads_as_etherparse_does(
            header in proptest::collection::vec(proptest::num::u8::ANY, 40),
            next in proptest::prop_oneof![
                proptest::strategy::Just(proto::TCP),
                proptest::strategy::Just(proto::UDP),
                proptest::strategy::Just(proto::ICMPV6),
                proptest::num::u8::ANY,
            ],
            payload in proptest::prop_oneof![0u16..100, proptest::num::u16::ANY],
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        ) {
            let mut bytes = header;
            bytes[0] = 0x60 | (bytes[0] & 0x0f);
            bytes[4..6].copy_from_slice(&payload.to_be_bytes());
            bytes[6] = next;
            bytes.extend_from_slice(&body);
            match IpLayer::plain_v6(&bytes) {
                Some(d) => proptest::prop_assert_eq!(Ok(d), IpLayer::parse(&bytes)),
                None => proptest::prop_assert!(
                    !matches!(next, proto::TCP | proto::UDP | proto::ICMPV6)
                ),
            }
        }
    }
}
