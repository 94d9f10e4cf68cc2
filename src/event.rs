//! Events as data: what the engine reports besides verdicts, for the outputs to render.
//!
//! The engine returns [`Event`]s in its decisions and from its timers; nothing here is a
//! formatted string. The outputs render them: [`crate::io::syslog::lines`] writes the syslog
//! lines (iptables LOG format for packets, `KEY=value` summaries for the rest; the same for
//! the journal), and further outputs (JSON events, metrics) render the same values.
//!
//! A packet an event is about is kept as a [`LoggedPacket`]: a copy of the header fields a log
//! line shows (addresses, lengths, TTL, TOS, IP ID, DF, flow label, the transport header,
//! interfaces, the Ethernet header when known) and of the header bytes themselves
//! ([`HeaderBytes`]), so that any line format can be rendered from it after the packet's
//! buffer is gone. Only packets that are logged are copied: the engine builds a
//! [`LoggedPacket`] after the rate limits said yes.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::block::BlockEvent;
use crate::conntrack::{ConnRecord, ConnState};
use crate::packet::{Family, IpFields, Packet, PacketMeta, Transport};
use crate::rules::{RuleAction, RuleInfo};
use crate::scan::ScanAlert;
use crate::verdict::{DropReason, Flow};

/// Something the outputs report.
///
/// The first three are always reported. The connection and drop events exist only while an
/// output listens for them ([`crate::engine::Engine::set_interest`]): a gateway nobody watches
/// builds none, and its packets pay one relaxed atomic load for the question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A rule with `log` decided a new connection.
    RuleMatch(RuleMatch),
    /// The scan detector raised an alert.
    Scan(ScanAlert),
    /// The block list changed: a source blocked, unblocked by an operator, or its block ran out.
    Block(BlockEvent),
    /// A packet was dropped (or rejected): for its drop line (a reason `[syslog] drops`
    /// logs, within the drop-line rate limits: [`DropEvent::line`]), or for a reader of the
    /// event stream (built only while one listens).
    Drop(DropEvent),
    /// Packet lines (drop, reject and rule lines) were suppressed by their rate limits.
    Suppressed(Suppressed),
    /// A connection was opened (`conntrack -E`'s `[NEW]`).
    New(ConnOpened),
    /// A connection ended: its entry left the table, or it was revoked or killed
    /// (`[DESTROY]`). An entry that was revoked is reported once, when it was revoked.
    Destroy(ConnClosed),
}

/// A dropped packet, for its log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// Why it was dropped (`policy_reject`: rejected, and answered within the answer limits).
    pub reason: DropReason,
    /// The packet.
    pub packet: LoggedPacket,
    /// Whether its syslog drop line is due; `false`: only the event stream shows it.
    pub line: bool,
}

/// Packet lines suppressed by the rate limits since the previous report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suppressed {
    /// Lines not written.
    pub lines: u64,
    /// Seconds the report covers (since the previous report or the first suppression).
    pub seconds: u64,
}

/// Which of the optional events ([`Event::New`], [`Event::Destroy`], [`Event::Drop`]) the
/// engine builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interest {
    /// Connection events.
    pub conns: bool,
    /// Drop events.
    pub drops: bool,
}

impl Interest {
    /// Every optional event.
    pub const ALL: Interest = Interest {
        conns: true,
        drops: true,
    };

    /// As one byte (for an atomic).
    pub fn bits(self) -> u8 {
        u8::from(self.conns) | u8::from(self.drops) << 1
    }

    /// From [`Interest::bits`].
    pub fn from_bits(bits: u8) -> Interest {
        Interest {
            conns: bits & 1 != 0,
            drops: bits & 2 != 0,
        }
    }

    /// Both together.
    pub fn union(self, other: Interest) -> Interest {
        Interest {
            conns: self.conns || other.conns,
            drops: self.drops || other.drops,
        }
    }
}

/// A connection was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnOpened {
    /// The flow, originator first.
    pub flow: Flow,
    /// The state it opened in.
    pub state: ConnState,
    /// The rule that admitted it; `None`: the default policy, or adopted.
    pub rule: Option<Arc<RuleInfo>>,
    /// Adopted mid-stream after a restart (no rule was asked).
    pub adopted: bool,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Its timeout ran out (a closed TCP connection's TIME_WAIT, an idle flow).
    Expired,
    /// Evicted to make room in a full table.
    Evicted,
    /// Its tuple was reopened by a new connection.
    Replaced,
    /// Closed by a rule recheck on reload.
    Revoked,
    /// Killed by an operator (`statewall kill`).
    Killed,
}

impl CloseReason {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Expired => "expired",
            CloseReason::Evicted => "evicted",
            CloseReason::Replaced => "replaced",
            CloseReason::Revoked => "revoked",
            CloseReason::Killed => "killed",
        }
    }
}

/// A connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnClosed {
    /// The connection as it was last: flow, state, counters.
    pub record: ConnRecord,
    /// The rule that admitted it, when its rule set is still known.
    pub rule: Option<Arc<RuleInfo>>,
    /// Why it ended.
    pub why: CloseReason,
}

/// A `log` rule decided a new connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    /// The rule.
    pub rule: Arc<RuleInfo>,
    /// What it decided.
    pub action: RuleAction,
    /// The packet that opened (or tried to open) the connection.
    pub packet: LoggedPacket,
}

/// The header fields of a packet, as log lines show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedPacket {
    /// Input interface, when known.
    pub in_iface: Option<IfName>,
    /// Output interface, when known.
    pub out_iface: Option<IfName>,
    /// IP version.
    pub family: Family,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol of the transport.
    pub proto: u8,
    /// Length of the IP packet on the wire.
    pub len: usize,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class, IP ID, DF, flow label.
    pub ip: IpFields,
    /// The transport header (TCP flags, sequence numbers and window; ICMP type and code; ...).
    pub transport: Transport,
    /// The Ethernet header (destination, source, EtherType), when the I/O layer knew it.
    pub mac: Option<[u8; 14]>,
    /// The first bytes of the packet from its IP header on: what a kernel-style log line
    /// decodes (IP flags and fragment offset, TCP reserved bits and urgent pointer, ICMP
    /// identifiers, the packet quoted by an ICMP error, IPv6 extension headers).
    pub head: HeaderBytes,
}

/// A copy of the first [`HeaderBytes::MAX`] bytes of a packet, kept inline (no allocation).
/// The IPv4 header with options, a TCP header, or an ICMP error with the header it quotes fit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderBytes {
    len: u8,
    bytes: [u8; HeaderBytes::MAX],
}

impl HeaderBytes {
    /// Bytes kept at most.
    pub const MAX: usize = 160;

    /// The first bytes of `packet`.
    pub fn new(packet: &[u8]) -> HeaderBytes {
        let n = packet.len().min(Self::MAX);
        let mut bytes = [0; Self::MAX];
        bytes[..n].copy_from_slice(&packet[..n]);
        HeaderBytes {
            len: n as u8,
            bytes,
        }
    }

    /// The bytes kept.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for HeaderBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderBytes(")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl LoggedPacket {
    /// The fields of `pkt`, with the interfaces `meta` names.
    pub fn of(pkt: &Packet<'_>, meta: &PacketMeta<'_>) -> LoggedPacket {
        LoggedPacket {
            in_iface: meta.in_iface.map(IfName::new),
            out_iface: meta.out_iface.map(IfName::new),
            family: pkt.family,
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.proto,
            len: pkt.len,
            ttl: pkt.ttl,
            ip: pkt.ip,
            transport: pkt.transport,
            mac: meta.mac,
            head: HeaderBytes::new(pkt.bytes),
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

    /// The packet's flow, its source first.
    pub fn flow(&self) -> Flow {
        let (sport, dport) = self.ports();
        Flow {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            sport,
            dport,
        }
    }
}

/// An interface name (at most 15 bytes, as Linux's `IFNAMSIZ` allows), kept inline so that an
/// event owns it without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; IfName::MAX],
}

impl IfName {
    /// Longest name Linux allows.
    pub const MAX: usize = 15;

    /// `name`, cut at [`IfName::MAX`] bytes (on a character boundary).
    pub fn new(name: &str) -> IfName {
        let mut end = name.len().min(Self::MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; Self::MAX];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        IfName {
            len: end as u8,
            bytes,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Built from the prefix of a `str` cut on a character boundary.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_kept_inline_and_cut_on_a_character() {
        assert_eq!(IfName::new("eth0").as_str(), "eth0");
        assert_eq!(
            IfName::new("a-very-long-interface").as_str(),
            "a-very-long-int"
        );
        // 14 ASCII bytes and a 2-byte character: the character does not fit.
        assert_eq!(IfName::new("abcdefghijklmné").as_str(), "abcdefghijklmn");
        assert_eq!(format!("{:?}", IfName::new("lo")), "\"lo\"");
    }

    #[test]
    fn a_logged_packet_keeps_the_header_fields() {
        let bytes = crate::testing::Pair::V4
            .ports(5353, 53)
            .udp(crate::testing::Side::Client)
            .data(b"q")
            .ttl(61)
            .build();
        let meta = PacketMeta {
            in_iface: Some("cli0"),
            ..PacketMeta::default()
        };
        let pkt = Packet::decode(&bytes, &meta).expect("decodes");
        let logged = LoggedPacket::of(&pkt, &meta);
        assert_eq!(logged.in_iface.map(|i| i.to_string()), Some("cli0".into()));
        assert_eq!(logged.out_iface, None);
        assert_eq!((logged.len, logged.ttl), (29, 61));
        assert_eq!(logged.ports(), (5353, 53));
        assert_eq!(logged.flow().dport, 53);
        assert_eq!(logged.head.as_slice(), &bytes[..]);
        assert_eq!(logged.mac, None);
    }

    #[test]
    fn header_bytes_keep_at_most_their_maximum() {
        let long = [7u8; 400];
        assert_eq!(
            HeaderBytes::new(&long).as_slice(),
            &long[..HeaderBytes::MAX]
        );
        assert_eq!(HeaderBytes::new(&[]).as_slice(), &[] as &[u8]);
        assert_eq!(
            format!("{:?}", HeaderBytes::new(&[1, 0xab])),
            "HeaderBytes(01ab)"
        );
    }
}
