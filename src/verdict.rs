//! The vocabulary every part of statewall shares: what happens to a packet ([`Verdict`]: how it
//! passes, [`Pass`], or why it is dropped, [`DropReason`]), the flow it belongs to ([`Flow`]),
//! how out-of-state probes are answered ([`ProbeMode`]) and the packets statewall sends on its
//! own ([`Action`]: a [`Rst`] or an [`Unreachable`], every field decided).
//!
//! Nothing here depends on the engine: connection tracking, the rules, the scan detector and the
//! I/O edges all speak these types, so none of them needs to import another to talk about a
//! packet's fate.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

use crate::packet::{DecodeError, Seq};

/// What to do with the packet: let it through (and how it passed), or drop it (and why). A
/// verdict cannot be "accepted with a drop reason".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let it through.
    Accept(Pass),
    /// Drop it.
    Drop(DropReason),
}

impl Verdict {
    /// Whether the packet passes.
    pub fn is_accept(self) -> bool {
        matches!(self, Verdict::Accept(_))
    }

    /// Why it is dropped; `None` when it passes.
    pub fn reason(self) -> Option<DropReason> {
        match self {
            Verdict::Accept(_) => None,
            Verdict::Drop(r) => Some(r),
        }
    }
}

/// How an accepted packet passed. Each kind has its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pass {
    /// A packet of a tracked flow; the tracker learned from it.
    Tracked,
    /// The first packet of a new tracked flow (admitted by the rules, or adopted mid-stream).
    Opened,
    /// A packet of a tracked flow passed without the tracker learning from it (late
    /// retransmission, delayed ACK, a segment the state machine cannot judge yet).
    Ignored,
    /// An ICMP error about a tracked flow.
    Related,
    /// A non-first fragment: no transport header to judge (see [`crate::packet`]).
    Fragment,
    /// An ICMP message that opens nothing (router advertisement, timestamp...), allowed by the
    /// rules.
    Stateless,
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// Why a packet was dropped. The names are stable: logs, counters and tests use them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $($(#[$doc])* $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// Stable snake_case name.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }

        impl FromStr for DropReason {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok(DropReason::$variant),)*
                    _ => Err(format!("unknown drop reason `{s}`")),
                }
            }
        }
    };
}

drop_reasons! {
    /// Not a decodable IP packet.
    MalformedIp => "malformed_ip",
    /// Truncated or broken TCP header.
    MalformedTcp => "malformed_tcp",
    /// Truncated or broken UDP header.
    MalformedUdp => "malformed_udp",
    /// Truncated ICMP header or undecodable ICMP error.
    MalformedIcmp => "malformed_icmp",
    /// Tiny or overlapping fragment (RFC 1858).
    MalformedFragment => "malformed_fragment",
    /// A later fragment whose datagram's first fragment did not pass (dropped, never seen, or
    /// overtaken): it carries no ports for any rule to judge.
    FragmentOrphan => "fragment_orphan",
    /// TCP segment with no flags (nmap -sN).
    TcpNull => "tcp_null",
    /// FIN+PSH+URG without ACK (nmap -sX).
    TcpXmas => "tcp_xmas",
    /// SYN and FIN together.
    TcpSynFin => "tcp_syn_fin",
    /// SYN and RST together.
    TcpSynRst => "tcp_syn_rst",
    /// FIN without ACK (nmap -sF).
    TcpFinNoAck => "tcp_fin_no_ack",
    /// Any other invalid flag combination.
    TcpBadFlags => "tcp_bad_flags",
    /// A TCP segment other than a SYN that belongs to no tracked connection.
    NoConnection => "no_connection",
    /// A SYN from the responder outside a simultaneous open.
    UnexpectedSyn => "unexpected_syn",
    /// A SYN/ACK that answers no SYN.
    UnexpectedSynAck => "unexpected_syn_ack",
    /// A FIN before the handshake completed.
    UnexpectedFin => "unexpected_fin",
    /// An ACK from the opener before the SYN/ACK.
    UnexpectedAck => "unexpected_ack",
    /// Data beyond the receiver's window.
    SeqAboveWindow => "seq_above_window",
    /// Acknowledges data never sent.
    AckUnsentData => "ack_unsent_data",
    /// RST whose sequence number is outside the window.
    RstOutOfWindow => "rst_out_of_window",
    /// New data beyond the sender's FIN.
    DataAfterFin => "data_after_fin",
    /// Data after both sides closed.
    DataAfterClose => "data_after_close",
    /// Data after a valid RST.
    DataAfterRst => "data_after_rst",
    /// ICMP error quoting a packet of no tracked flow.
    IcmpUnrelated => "icmp_unrelated",
    /// ICMP echo reply without a request.
    IcmpUnexpectedReply => "icmp_unexpected_reply",
    /// New connection dropped by a rule or the default policy.
    PolicyDrop => "policy_drop",
    /// New connection rejected by a rule or the default policy.
    PolicyReject => "policy_reject",
    /// Connection closed by a rule recheck on reload.
    Revoked => "revoked",
    /// The first packet of a flow adopted from the kernel table (restart, failover), which the
    /// rules in force refuse: the flow is closed.
    AdoptRefused => "adopt_refused",
    /// A mid-stream segment (or a RST, a SYN/ACK) of no known flow on a standby or during a
    /// takeover: its flow's replication may be late. Dropped silently, never answered.
    TakeoverUnknown => "takeover_unknown",
    /// From a blocked source (an operator's block, or the scan detector's).
    Blocked => "blocked",
    /// Connection table full, nothing evictable.
    TableFull => "table_full",
    /// The source has its maximum of open connections.
    SourceLimit => "source_limit",
}

impl DropReason {
    /// A rule or the default policy decided it (`policy_drop`, `policy_reject`).
    pub fn is_policy(self) -> bool {
        matches!(self, DropReason::PolicyDrop | DropReason::PolicyReject)
    }
}

impl<'de> Deserialize<'de> for DropReason {
    /// From its name (`"no_connection"`), as configuration files write it.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<DecodeError> for DropReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Ip => DropReason::MalformedIp,
            DecodeError::Tcp => DropReason::MalformedTcp,
            DecodeError::Udp => DropReason::MalformedUdp,
            DecodeError::Icmp => DropReason::MalformedIcmp,
            DecodeError::Fragment => DropReason::MalformedFragment,
        }
    }
}

/// A flow as logs show it: originator first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A TCP RST statewall sends, every field decided: from `src:sport` to `dst:dport`, with
/// sequence number `seq`, and with ACK set and acknowledgment number `ack` when `ack` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rst {
    /// Source address (the host the RST speaks for).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: Seq,
    /// Acknowledgment number; `Some` sets the ACK flag.
    pub ack: Option<Seq>,
}

/// An ICMP or ICMPv6 "port unreachable" statewall sends from `src` to `dst`, quoting `quote`
/// (the start of the packet it answers, already cut to what RFC 1812 / RFC 4443 allow).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    /// Source address: the answered packet's destination.
    pub src: IpAddr,
    /// Destination address: the answered packet's source.
    pub dst: IpAddr,
    /// The quoted bytes: the answered packet's IP header and as much of the rest as fits.
    pub quote: Vec<u8>,
}

/// Work for the I/O layer: a packet to send. The engine decides every field; the I/O layer
/// builds the bytes ([`crate::respond`]) and sends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer with a TCP RST (an out-of-state probe, a rejected connection, a revoked one).
    SendRst(Rst),
    /// Answer a rejected datagram with an ICMP / ICMPv6 port unreachable.
    SendUnreachable(Unreachable),
}

/// How out-of-state packets ("probes": a bare ACK, FIN or stealth shape for no known
/// connection) are answered: `[probes] respond` in the configuration, `probes` in a rule file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeMode {
    /// Answer like a closed port would: TCP RST (ICMP port unreachable for rejected UDP).
    #[default]
    Rst,
    /// Answer nothing (the port looks filtered).
    Drop,
}

impl fmt::Display for ProbeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeMode::Rst => "rst",
            ProbeMode::Drop => "drop",
        })
    }
}

/// A probe mode that is neither `rst` nor `drop`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown probe mode `{0}`: expected rst or drop")]
pub struct UnknownProbeMode(pub String);

impl FromStr for ProbeMode {
    type Err = UnknownProbeMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rst" => Ok(ProbeMode::Rst),
            "drop" => Ok(ProbeMode::Drop),
            other => Err(UnknownProbeMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_names_round_trip() {
        for r in DropReason::ALL {
            assert_eq!(r.name().parse::<DropReason>(), Ok(*r));
            assert_eq!(r.to_string(), r.name());
        }
        assert!("nope".parse::<DropReason>().is_err());
    }

    #[test]
    fn a_verdict_has_a_reason_exactly_when_it_drops() {
        assert_eq!(Verdict::Accept(Pass::Tracked).reason(), None);
        assert!(Verdict::Accept(Pass::Opened).is_accept());
        let d = Verdict::Drop(DropReason::NoConnection);
        assert_eq!(d.reason(), Some(DropReason::NoConnection));
        assert!(!d.is_accept());
    }

    #[test]
    fn probe_modes() {
        assert_eq!("rst".parse(), Ok(ProbeMode::Rst));
        assert_eq!("drop".parse(), Ok(ProbeMode::Drop));
        assert_eq!(
            "reset".parse::<ProbeMode>(),
            Err(UnknownProbeMode("reset".into()))
        );
        assert_eq!(ProbeMode::default(), ProbeMode::Rst);
        assert_eq!(ProbeMode::Drop.to_string(), "drop");
    }
}
