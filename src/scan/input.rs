//! The detector's input vocabulary: what the engine reports ([`ScanInput`]), the shape of a
//! probe ([`ProbeKind`]), the scan technique it belongs to ([`Technique`]) and how a probe was
//! refused ([`AnswerKind`]).

use std::fmt;

use crate::packet::{TcpFlags, TcpShape};
use crate::proto;
use crate::verdict::Flow;

/// What the engine saw that the scan detector needs to know: the one input of
/// [`ScanDetector::on_input`](super::ScanDetector::on_input). Every flow is in originator
/// orientation: the prober or the client first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanInput {
    /// A probe-shaped packet, as sent by the (possible) prober `flow.src`: a new connection
    /// attempt or datagram (allowed: [`ProbeKind::Syn`], [`ProbeKind::UdpNew`]; refused by
    /// policy: [`ProbeKind::SynDropped`], [`ProbeKind::UdpDropped`]) or a TCP segment of no
    /// connection (the stealth shapes: [`ProbeKind::from_tcp_flags`]).
    Probe {
        /// The packet's flow, prober first.
        flow: Flow,
        /// Its shape.
        kind: ProbeKind,
    },
    /// A probe was refused: a RST or an ICMP unreachable, from the target or from statewall.
    /// Attributed to the prober `probe.src`, never to the answering host.
    Answer {
        /// The refused probe's flow, prober first (its source port is not used).
        probe: Flow,
        /// How it was refused.
        kind: AnswerKind,
    },
    /// A flow got its first reply: a SYN/ACK, a UDP reply, or an ICMP error other than
    /// unreachable (e.g. time exceeded) relayed for it. A UDP flow with a reply is normal life;
    /// a SYN/ACK still needs the handshake to complete.
    Reply {
        /// The flow, originator first.
        flow: Flow,
    },
    /// A connection completed its handshake: normal life, never part of a scan. The engine
    /// must report it, or every answered SYN would look half-open.
    Established {
        /// The connection, originator first.
        flow: Flow,
    },
    /// A tracked connection ended (expired or removed). Its late segments are ignored for
    /// `tombstone_ttl`; a SYN/ACK-answered connection that closes without completing is a
    /// half-open probe.
    Closed {
        /// The connection, originator first.
        flow: Flow,
    },
}

/// What a probe looked like, as classified by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// A new TCP connection attempt that policy allowed.
    Syn,
    /// A SYN dropped or rejected by policy.
    SynDropped,
    /// No flags at all (`nmap -sN`).
    Null,
    /// FIN alone (`nmap -sF`).
    Fin,
    /// FIN+PSH+URG (`nmap -sX`).
    Xmas,
    /// FIN+ACK without a connection (`nmap -sM`).
    Maimon,
    /// A bare ACK without a connection (`nmap -sA`, `-sW`).
    Ack,
    /// SYN and FIN together.
    SynFin,
    /// Other odd shapes nmap's OS detection uses (URG or PSH without ACK, SYN with URG/PSH, ...).
    OsProbe,
    /// A SYN/ACK for no connection.
    StraySynAck,
    /// A new UDP flow that policy allowed.
    UdpNew,
    /// A UDP datagram dropped or rejected by policy.
    UdpDropped,
}

impl ProbeKind {
    /// Classifies an out-of-state TCP segment by its flags ([`TcpFlags::shape`], the one
    /// classifier the connection tracker uses too). `None` for any segment with RST (never a
    /// probe: statewall never answers a RST, and late RSTs of forgotten connections are common).
    ///
    /// | shape            | kind                                              |
    /// |------------------|---------------------------------------------------|
    /// | any, with RST    | none                                              |
    /// | `SynFin`         | `SynFin`                                          |
    /// | `SynAck`         | `StraySynAck`                                     |
    /// | `Syn`            | `Syn`, or `OsProbe` when it carries URG or PSH     |
    /// | `FinAck`         | `Maimon`                                          |
    /// | `Ack`            | `Ack`                                             |
    /// | `Xmas`           | `Xmas`                                            |
    /// | `FinNoAck`       | `Fin` (FIN, also with PSH or URG)                 |
    /// | `Null`           | `Null`                                            |
    /// | `Bad`            | `OsProbe` (URG or PSH alone, SYN+ACK+URG, ...)    |
    pub fn from_tcp_flags(flags: TcpFlags) -> Option<ProbeKind> {
        if flags.rst() {
            return None;
        }
        let kind = match flags.shape() {
            TcpShape::Rst | TcpShape::SynRst | TcpShape::BadRst => return None,
            TcpShape::SynFin => ProbeKind::SynFin,
            TcpShape::SynAck => ProbeKind::StraySynAck,
            // nmap's OS detection sends SYNs with odd flags; Linux accepts them as SYNs.
            TcpShape::Syn if flags.0 & (TcpFlags::URG | TcpFlags::PSH) != 0 => ProbeKind::OsProbe,
            TcpShape::Syn => ProbeKind::Syn,
            TcpShape::FinAck => ProbeKind::Maimon,
            TcpShape::Ack => ProbeKind::Ack,
            TcpShape::Xmas => ProbeKind::Xmas,
            TcpShape::FinNoAck => ProbeKind::Fin,
            TcpShape::Null => ProbeKind::Null,
            TcpShape::Bad => ProbeKind::OsProbe,
        };
        Some(kind)
    }

    /// The scan technique this kind of probe belongs to.
    pub fn technique(self) -> Technique {
        match self {
            ProbeKind::Syn | ProbeKind::SynDropped => Technique::Syn,
            ProbeKind::Null => Technique::Null,
            ProbeKind::Fin => Technique::Fin,
            ProbeKind::Xmas => Technique::Xmas,
            ProbeKind::Maimon => Technique::Maimon,
            ProbeKind::Ack => Technique::Ack,
            ProbeKind::SynFin => Technique::SynFin,
            ProbeKind::OsProbe => Technique::OsProbe,
            ProbeKind::StraySynAck => Technique::SynAck,
            ProbeKind::UdpNew | ProbeKind::UdpDropped => Technique::Udp,
        }
    }

    /// Short name used in alerts (`flags=`).
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Syn => "syn",
            ProbeKind::SynDropped => "syn_dropped",
            ProbeKind::Null => "null",
            ProbeKind::Fin => "fin",
            ProbeKind::Xmas => "xmas",
            ProbeKind::Maimon => "maimon",
            ProbeKind::Ack => "ack",
            ProbeKind::SynFin => "synfin",
            ProbeKind::OsProbe => "os_probe",
            ProbeKind::StraySynAck => "synack",
            ProbeKind::UdpNew => "udp",
            ProbeKind::UdpDropped => "udp_dropped",
        }
    }

    /// Every kind, in the order alerts list them (`flags=`).
    pub const ALL: [ProbeKind; 12] = [
        ProbeKind::Syn,
        ProbeKind::SynDropped,
        ProbeKind::Null,
        ProbeKind::Fin,
        ProbeKind::Xmas,
        ProbeKind::Maimon,
        ProbeKind::Ack,
        ProbeKind::SynFin,
        ProbeKind::OsProbe,
        ProbeKind::StraySynAck,
        ProbeKind::UdpNew,
        ProbeKind::UdpDropped,
    ];

    /// This kind's bit in a record's set of shapes seen.
    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Allowed SYNs and UDP flows wait for their outcome; everything else is a probe at once.
    pub(super) fn is_candidate(self) -> bool {
        matches!(self, ProbeKind::Syn | ProbeKind::UdpNew)
    }

    /// Shapes a peer of a recently forgotten connection sends (late ACKs, FINs, SYN/ACKs).
    pub(super) fn is_late_segment(self) -> bool {
        matches!(
            self,
            ProbeKind::Fin | ProbeKind::Maimon | ProbeKind::Ack | ProbeKind::StraySynAck
        )
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scan techniques, named after the nmap option that produces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Technique {
    /// SYN scan (`-sS`; a connect scan `-sT` looks the same on closed and filtered ports).
    Syn,
    /// NULL scan (`-sN`).
    Null,
    /// FIN scan (`-sF`).
    Fin,
    /// Xmas scan (`-sX`).
    Xmas,
    /// Maimon scan (`-sM`).
    Maimon,
    /// ACK or window scan (`-sA`, `-sW`).
    Ack,
    /// SYN+FIN (`--scanflags SYNFIN`).
    SynFin,
    /// OS fingerprinting (`-O`).
    OsProbe,
    /// Stray SYN/ACKs (`--scanflags SYNACK`).
    SynAck,
    /// UDP scan (`-sU`).
    Udp,
}

impl Technique {
    /// The nmap option that produces this technique.
    pub fn nmap(self) -> &'static str {
        match self {
            Technique::Syn => "-sS",
            Technique::Null => "-sN",
            Technique::Fin => "-sF",
            Technique::Xmas => "-sX",
            Technique::Maimon => "-sM",
            Technique::Ack => "-sA",
            Technique::SynFin => "--scanflags=SYNFIN",
            Technique::OsProbe => "-O",
            Technique::SynAck => "--scanflags=SYNACK",
            Technique::Udp => "-sU",
        }
    }

    /// Techniques whose packets never occur in normal traffic use the lower `stealth` threshold.
    pub fn is_stealth(self) -> bool {
        !matches!(self, Technique::Syn | Technique::Udp)
    }

    /// Techniques for which "no answer" means "filtered".
    pub(super) fn reports_filtered(self) -> bool {
        !self.is_stealth()
    }

    /// The techniques whose probes an answer from a port of `protocol` can resolve.
    pub(super) fn answered_by(protocol: u8) -> &'static [Technique] {
        match protocol {
            proto::UDP => &[Technique::Udp],
            _ => &[
                Technique::Syn,
                Technique::Null,
                Technique::Fin,
                Technique::Xmas,
                Technique::Maimon,
                Technique::Ack,
                Technique::SynFin,
                Technique::OsProbe,
                Technique::SynAck,
            ],
        }
    }
}

/// Many ports of one host, or one port of many hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Shape {
    /// Many ports of one host (a port scan).
    Scan,
    /// One port of many hosts (a port sweep).
    Sweep,
}

/// A negative answer to a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnswerKind {
    /// A TCP RST (from the target or from statewall).
    TcpRst,
    /// An ICMP or ICMPv6 destination unreachable (from the target or from statewall).
    IcmpUnreachable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_classify_like_the_table() {
        const SYN: u8 = TcpFlags::SYN;
        const ACK: u8 = TcpFlags::ACK;
        const FIN: u8 = TcpFlags::FIN;
        const RST: u8 = TcpFlags::RST;
        const URG: u8 = TcpFlags::URG;
        const PSH: u8 = TcpFlags::PSH;
        let cases = [
            (0, Some(ProbeKind::Null)),
            (FIN, Some(ProbeKind::Fin)),
            (FIN | PSH | URG, Some(ProbeKind::Xmas)),
            (FIN | ACK, Some(ProbeKind::Maimon)),
            (FIN | ACK | PSH, Some(ProbeKind::Maimon)),
            (ACK, Some(ProbeKind::Ack)),
            (ACK | PSH, Some(ProbeKind::Ack)),
            (SYN, Some(ProbeKind::Syn)),
            (SYN | 0x40 | 0x80, Some(ProbeKind::Syn)),
            (SYN | FIN, Some(ProbeKind::SynFin)),
            (SYN | FIN | PSH | URG, Some(ProbeKind::SynFin)),
            (SYN | ACK, Some(ProbeKind::StraySynAck)),
            (SYN | URG | PSH, Some(ProbeKind::OsProbe)),
            (URG, Some(ProbeKind::OsProbe)),
            // One classifier: a FIN without ACK is a FIN probe whatever PSH or URG say (it is
            // `tcp_fin_no_ack` to the tracker too).
            (FIN | PSH, Some(ProbeKind::Fin)),
            (FIN | URG, Some(ProbeKind::Fin)),
            (SYN | ACK | URG, Some(ProbeKind::OsProbe)),
            (RST | FIN, None),
            (PSH, Some(ProbeKind::OsProbe)),
            (RST, None),
            (RST | ACK, None),
            (RST | SYN | FIN, None),
        ];
        for (flags, kind) in cases {
            assert_eq!(
                ProbeKind::from_tcp_flags(TcpFlags(flags)),
                kind,
                "flags {flags:#04x}"
            );
        }
    }
}
