//! ctnetlink messages: requests built and replies read as plain bytes, without a socket, so that
//! they are tested with golden bytes and fuzzed. Framing and attributes are handled by the
//! `netlink-packet-netfilter` crate; this module turns its attribute lists into typed
//! [`Entry`] values and back.

use std::net::IpAddr;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
    Tuple as NlTuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use super::entry::{Entry, Event, MarkFilter, Status, TcpInfo, TcpState, Tuple, L4};
use super::CtError;

/// `CTA_ID`.
const CTA_ID: u16 = 12;
/// `CTA_ZONE`.
const CTA_ZONE: u16 = 18;
/// `CTA_MARK_MASK`.
const CTA_MARK_MASK: u16 = 21;
/// `CTA_PROTO_ICMP_ID`, `_TYPE`, `_CODE`; the ICMPv6 ones follow.
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;
/// `NLMSG_HDRLEN`.
const NLMSG_HDRLEN: usize = 16;

/// What a message from the kernel says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// A conntrack entry: a dump line (as [`Event::Update`]) or an event.
    Entry(Event),
    /// The end of a dump.
    Done,
    /// The acknowledgement of a request.
    Ack,
    /// The kernel refused a request (a positive errno).
    Error(i32),
    /// Something else (ignored).
    Other,
}

/// One netlink message from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Sequence number of the request it answers (0 for events).
    pub seq: u32,
    /// Netlink flags (`NLM_F_DUMP_INTR`: the dump was disturbed by a table resize).
    pub flags: u16,
    /// The content.
    pub body: ReplyBody,
}

/// `NLM_F_DUMP_INTR`.
pub const NLM_F_DUMP_INTR: u16 = 0x10;

/// Decodes every netlink message of one datagram. Never panics: malformed input is an error.
pub fn decode(datagram: &[u8]) -> Result<Vec<Reply>, CtError> {
    let mut out = Vec::new();
    let mut at = 0;
    while datagram.len() - at >= NLMSG_HDRLEN {
        let rest = &datagram[at..];
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(CtError::Malformed(format!(
                "netlink message of {len} bytes in {} bytes",
                rest.len()
            )));
        }
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&rest[..len])
            .map_err(|e| CtError::Malformed(e.to_string()))?;
        out.push(reply(msg)?);
        at += (len + 3) & !3;
        if at > datagram.len() {
            break;
        }
    }
    Ok(out)
}

fn reply(msg: NetlinkMessage<NetfilterMessage>) -> Result<Reply, CtError> {
    let seq = msg.header.sequence_number;
    let flags = msg.header.flags;
    let body = match msg.payload {
        NetlinkPayload::Done(_) => ReplyBody::Done,
        NetlinkPayload::Error(e) => match e.code {
            None => ReplyBody::Ack,
            Some(code) => ReplyBody::Error(code.get().saturating_abs()),
        },
        NetlinkPayload::InnerMessage(nf) => match nf.inner {
            NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) => {
                let entry = entry(&attrs)?;
                // Events of new entries carry NLM_F_CREATE | NLM_F_EXCL; updates and dump
                // lines do not.
                if flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL {
                    ReplyBody::Entry(Event::New(entry))
                } else {
                    ReplyBody::Entry(Event::Update(entry))
                }
            }
            NetfilterMessageInner::Conntrack(ConntrackMessage::Delete(attrs)) => {
                ReplyBody::Entry(Event::Destroy(entry(&attrs)?))
            }
            _ => ReplyBody::Other,
        },
        _ => ReplyBody::Other,
    };
    Ok(Reply { seq, flags, body })
}

/// The value bytes of an attribute the crate does not know.
fn value(nla: &DefaultNla) -> Vec<u8> {
    let mut v = vec![0; nla.value_len()];
    nla.emit_value(&mut v);
    v
}

fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// A typed entry from the attributes of an `IPCTNL_MSG_CT_NEW`/`_DELETE` message.
pub fn entry(attrs: &[ConntrackAttribute]) -> Result<Entry, CtError> {
    let mut original = None;
    let mut reply = None;
    let mut e = Entry {
        original: placeholder(),
        reply: placeholder(),
        id: None,
        mark: None,
        status: Status(0),
        timeout: None,
        tcp: None,
        zone: None,
    };
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(t) => original = Some(tuple(t, "original")?),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(tuple(t, "reply")?),
            ConntrackAttribute::CtaStatus(s) => e.status = Status(s.bits()),
            ConntrackAttribute::CtaTimeout(t) => e.timeout = Some(*t),
            ConntrackAttribute::CtaMark(m) => e.mark = Some(*m),
            ConntrackAttribute::CtaProtoInfo(infos) => e.tcp = tcp_info(infos),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ID => e.id = be_u32(&value(nla)),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ZONE => {
                e.zone = be_u16(&value(nla))
            }
            _ => {}
        }
    }
    e.original =
        original.ok_or_else(|| CtError::Malformed("entry without original tuple".into()))?;
    e.reply = reply.ok_or_else(|| CtError::Malformed("entry without reply tuple".into()))?;
    Ok(e)
}

fn placeholder() -> Tuple {
    Tuple {
        src: IpAddr::from([0, 0, 0, 0]),
        dst: IpAddr::from([0, 0, 0, 0]),
        l4: L4::Other { protocol: 0 },
    }
}

fn tuple(parts: &[NlTuple], which: &str) -> Result<Tuple, CtError> {
    let mut src = None;
    let mut dst = None;
    let mut protocol = None;
    let (mut sport, mut dport) = (None, None);
    let (mut icmp_id, mut icmp_type, mut icmp_code) = (None, None, None);
    for part in parts {
        match part {
            NlTuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            NlTuple::Proto(protos) => {
                for p in protos {
                    match p {
                        ProtoTuple::Protocol(pr) => protocol = Some(u8::from(*pr)),
                        ProtoTuple::SourcePort(v) => sport = Some(*v),
                        ProtoTuple::DestinationPort(v) => dport = Some(*v),
                        ProtoTuple::Other(nla) => {
                            let v = value(nla);
                            match nla.kind() {
                                CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => icmp_id = be_u16(&v),
                                CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                                    icmp_type = v.first().copied()
                                }
                                CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                                    icmp_code = v.first().copied()
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let bad = |what: &str| CtError::Malformed(format!("{which} tuple: {what}"));
    let (src, dst) = match (src, dst) {
        (Some(s), Some(d)) if s.is_ipv4() == d.is_ipv4() => (s, d),
        (Some(_), Some(_)) => return Err(bad("addresses of two families")),
        _ => return Err(bad("missing address")),
    };
    let protocol = protocol.ok_or_else(|| bad("missing protocol"))?;
    let ports = || match (sport, dport) {
        (Some(s), Some(d)) => Ok((s, d)),
        _ => Err(bad("missing port")),
    };
    let icmp = || match (icmp_id, icmp_type, icmp_code) {
        (Some(id), Some(t), Some(c)) => Ok((id, t, c)),
        _ => Err(bad("missing ICMP id, type or code")),
    };
    let l4 = match protocol {
        6 => {
            let (src_port, dst_port) = ports()?;
            L4::Tcp { src_port, dst_port }
        }
        17 => {
            let (src_port, dst_port) = ports()?;
            L4::Udp { src_port, dst_port }
        }
        1 => {
            let (id, icmp_type, code) = icmp()?;
            L4::Icmp {
                id,
                icmp_type,
                code,
            }
        }
        58 => {
            let (id, icmp_type, code) = icmp()?;
            L4::Icmpv6 {
                id,
                icmp_type,
                code,
            }
        }
        protocol => L4::Other { protocol },
    };
    Ok(Tuple { src, dst, l4 })
}

fn tcp_info(infos: &[ProtoInfo]) -> Option<TcpInfo> {
    let mut tcp = None;
    for info in infos {
        if let ProtoInfo::TCP(parts) = info {
            let mut t = TcpInfo {
                state: TcpState::None,
                wscale_original: None,
                wscale_reply: None,
                flags_original: None,
                flags_reply: None,
            };
            for p in parts {
                match p {
                    ProtoInfoTCP::State(s) => t.state = TcpState::from(*s),
                    ProtoInfoTCP::OriginalWindowScale(w) => t.wscale_original = Some(*w),
                    ProtoInfoTCP::ReplyWindowScale(w) => t.wscale_reply = Some(*w),
                    ProtoInfoTCP::OriginalFlags(f) => t.flags_original = Some(f.flags),
                    ProtoInfoTCP::ReplyFlags(f) => t.flags_reply = Some(f.flags),
                    _ => {}
                }
            }
            tcp = Some(t);
        }
    }
    tcp
}

fn tuple_attrs(t: &Tuple) -> Vec<NlTuple> {
    let u16_nla =
        |kind: u16, v: u16| ProtoTuple::Other(DefaultNla::new(kind, v.to_be_bytes().to_vec()));
    let u8_nla = |kind: u16, v: u8| ProtoTuple::Other(DefaultNla::new(kind, vec![v]));
    let proto = match t.l4 {
        L4::Tcp { src_port, dst_port } => vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(src_port),
            ProtoTuple::DestinationPort(dst_port),
        ],
        L4::Udp { src_port, dst_port } => vec![
            ProtoTuple::Protocol(Protocol::Udp),
            ProtoTuple::SourcePort(src_port),
            ProtoTuple::DestinationPort(dst_port),
        ],
        L4::Icmp {
            id,
            icmp_type,
            code,
        } => vec![
            ProtoTuple::Protocol(Protocol::Icmp),
            u16_nla(CTA_PROTO_ICMP_ID, id),
            u8_nla(CTA_PROTO_ICMP_TYPE, icmp_type),
            u8_nla(CTA_PROTO_ICMP_CODE, code),
        ],
        L4::Icmpv6 {
            id,
            icmp_type,
            code,
        } => vec![
            ProtoTuple::Protocol(Protocol::Ipv6Icmp),
            u16_nla(CTA_PROTO_ICMPV6_ID, id),
            u8_nla(CTA_PROTO_ICMPV6_TYPE, icmp_type),
            u8_nla(CTA_PROTO_ICMPV6_CODE, code),
        ],
        L4::Other { protocol } => vec![ProtoTuple::Protocol(Protocol::from(protocol))],
    };
    vec![
        NlTuple::Ip(vec![
            IPTuple::SourceAddress(t.src),
            IPTuple::DestinationAddress(t.dst),
        ]),
        NlTuple::Proto(proto),
    ]
}

fn serialize(seq: u32, flags: u16, family: NetfilterProtoFamily, msg: ConntrackMessage) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            msg,
        )),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

fn family(t: &Tuple) -> NetfilterProtoFamily {
    if t.is_ipv6() {
        NetfilterProtoFamily::IPv6
    } else {
        NetfilterProtoFamily::IPv4
    }
}

/// `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, both families, optionally only the entries whose
/// connmark matches `filter` (`CTA_MARK` + `CTA_MARK_MASK`, filtered by the kernel).
pub fn dump_request(seq: u32, filter: Option<MarkFilter>) -> Vec<u8> {
    let attrs = match filter {
        Some(f) => vec![
            ConntrackAttribute::CtaMark(f.value & f.mask),
            ConntrackAttribute::Other(DefaultNla::new(
                CTA_MARK_MASK,
                f.mask.to_be_bytes().to_vec(),
            )),
        ],
        None => Vec::new(),
    };
    serialize(
        seq,
        NLM_F_REQUEST | NLM_F_DUMP,
        NetfilterProtoFamily::Unspec,
        ConntrackMessage::Get(attrs),
    )
}

/// `IPCTNL_MSG_CT_NEW` without `NLM_F_CREATE` (change an existing entry): set the bits `mask`
/// of the connmark of the entry whose original tuple is `tuple` to those of `mark`. The kernel
/// computes `(connmark & !mask) ^ mark`, so `mark & mask` is sent.
pub fn set_mark_request(seq: u32, tuple: &Tuple, mark: u32, mask: u32) -> Vec<u8> {
    serialize(
        seq,
        NLM_F_REQUEST | NLM_F_ACK,
        family(tuple),
        ConntrackMessage::New(vec![
            ConntrackAttribute::CtaTupleOrig(tuple_attrs(tuple)),
            ConntrackAttribute::CtaMark(mark & mask),
            ConntrackAttribute::Other(DefaultNla::new(CTA_MARK_MASK, mask.to_be_bytes().to_vec())),
        ]),
    )
}

/// `IPCTNL_MSG_CT_DELETE` of the entry whose original tuple is `tuple` (and, if given, whose
/// id is `id`, so that a newer entry with the same tuple is not removed).
pub fn delete_request(seq: u32, tuple: &Tuple, id: Option<u32>) -> Vec<u8> {
    let mut attrs = vec![ConntrackAttribute::CtaTupleOrig(tuple_attrs(tuple))];
    if let Some(id) = id {
        attrs.push(ConntrackAttribute::Other(DefaultNla::new(
            CTA_ID,
            id.to_be_bytes().to_vec(),
        )));
    }
    serialize(
        seq,
        NLM_F_REQUEST | NLM_F_ACK,
        family(tuple),
        ConntrackMessage::Delete(attrs),
    )
}
