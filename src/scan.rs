//! Scan detection: per-source sliding windows over probes and negative answers.
//!
//! The engine reports what it sees as one [`ScanInput`] at a time through
//! [`ScanDetector::on_input`], and calls [`ScanDetector::on_timer`] for what needs time to pass;
//! the detector keeps, per scanning address, one record per
//! probed `(target, protocol, port, technique)` and tallies of the records that count, per
//! target host (port scans) and per target port (port sweeps). Crossing a threshold yields a
//! [`ScanAlert`]; growing to 3×, 10× and 30× the threshold yields one more each (levels 1..4,
//! as psad does). One alert per (scanner, scan type, technique) and level per window.
//!
//! # What counts
//! - Stealth shapes (NULL, FIN, XMAS, Maimon, bare ACK, SYN+FIN, stray SYN/ACK, OS-fingerprint
//!   shapes) and SYNs or UDP datagrams dropped by policy count at once.
//! - An allowed SYN or a new UDP flow is only a *candidate*: it counts when it resolves as a
//!   probe: refused (RST or ICMP unreachable: [`ScanInput::Answer`]), unanswered after
//!   `answer_timeout` (the "filtered" variants), or answered with SYN/ACK but never completed
//!   (half-open, `-sS`). A connection that completes ([`ScanInput::Established`]) or a UDP flow
//!   that gets a reply ([`ScanInput::Reply`]) is normal life, not a probe. So
//!   a browser opening 30 connections to 30 CDNs on port 443 at once raises nothing.
//! - Retries to the same port are one record. Late FIN/ACK/RST-ish segments of connections that
//!   closed recently are ignored through short-lived tombstones ([`ScanInput::Closed`]),
//!   and so are stray ACK/FIN/SYN-ACK segments sent *from* a service port below 1024 to an
//!   ephemeral port (late replies of a server whose connection statewall forgot).
//! - Only the prober side is counted: answers are attributed to the scanner, never to the
//!   answering host, and statewall's own RSTs are not events.
//!
//! # Memory
//! Records of normal connections are forgotten as soon as they complete, so busy clients cost
//! nothing beyond their connections in flight. At most `max_sources` scanners and `max_records` records (about 200 bytes each with their
//! share of the tallies: the default 131072 records stay under ~30 MB). Per scanner and
//! technique, records stop being added once there are enough to reach level 4. When full, the least recently seen
//! eighth of the sources is forgotten.
//!
//! # Known look-alikes
//! UDP traceroute sends to consecutive ports of one host with no answer from it; the engine
//! should report the ICMP time-exceeded errors it relays for such a flow as
//! [`ScanInput::Reply`], or the ports can be listed in `allow_ports`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::alert::KvLine;
use crate::block::Blocklist;
use crate::packet::{TcpFlags, TcpShape};
use crate::proto::{self, PortRange};
use crate::ratelimit::source_group;
use crate::time::Timestamp;
use crate::verdict::{Flow, ProbeMode};

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

    const ALL: [ProbeKind; 12] = [
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

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// Allowed SYNs and UDP flows wait for their outcome; everything else is a probe at once.
    fn is_candidate(self) -> bool {
        matches!(self, ProbeKind::Syn | ProbeKind::UdpNew)
    }

    /// Shapes a peer of a recently forgotten connection sends (late ACKs, FINs, SYN/ACKs).
    fn is_late_segment(self) -> bool {
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
    fn reports_filtered(self) -> bool {
        !self.is_stealth()
    }

    /// The technique an answer from a port of `proto` can resolve.
    fn answered_by(proto: u8) -> &'static [Technique] {
        match proto {
            17 => &[Technique::Udp],
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

/// What was scanned, and whether the probes were answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanType {
    /// One source, many ports of one host.
    PortScan,
    /// One source, one port on many hosts.
    PortSweep,
    /// A port scan whose probes mostly got no answer.
    FilteredPortScan,
    /// A port sweep whose probes mostly got no answer.
    FilteredPortSweep,
}

impl ScanType {
    fn new(shape: Shape, filtered: bool) -> ScanType {
        match (shape, filtered) {
            (Shape::Scan, false) => ScanType::PortScan,
            (Shape::Sweep, false) => ScanType::PortSweep,
            (Shape::Scan, true) => ScanType::FilteredPortScan,
            (Shape::Sweep, true) => ScanType::FilteredPortSweep,
        }
    }

    /// The name used in alerts and block reasons.
    pub fn name(self) -> &'static str {
        match self {
            ScanType::PortScan => "portscan",
            ScanType::PortSweep => "portsweep",
            ScanType::FilteredPortScan => "filtered_portscan",
            ScanType::FilteredPortSweep => "filtered_portsweep",
        }
    }
}

impl fmt::Display for ScanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Many ports of one host, or one port of many hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Shape {
    Scan,
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

/// What the engine saw that the scan detector needs to know: the one input of
/// [`ScanDetector::on_input`]. Flows are in originator orientation except where said.
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

/// What statewall does about the scanner's probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertAction {
    /// Probes are answered with RSTs / ICMP port unreachables.
    Rst,
    /// Probes are dropped silently.
    Drop,
    /// The scanner is put on the block list.
    Block,
}

impl fmt::Display for AlertAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertAction::Rst => "rst",
            AlertAction::Drop => "drop",
            AlertAction::Block => "block",
        })
    }
}

/// One observation handed to [`ScanDetector::observe`]: a packet from `src` that may be a probe.
///
/// Transitional: [`ScanInput::Probe`] carries the same facts; this goes once the engine speaks
/// [`ScanInput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEvent {
    /// The (possible) scanner.
    pub src: IpAddr,
    /// The probed host.
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Probed port.
    pub dport: u16,
    /// Shape of the packet.
    pub kind: ProbeKind,
}

impl ScanEvent {
    /// The packet's flow, prober first.
    pub fn flow(&self) -> Flow {
        Flow {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
        }
    }
}

/// A detected scan, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanAlert {
    /// The scanner's exact address.
    pub scanner: IpAddr,
    /// The scanner's /24 or /64.
    pub group: IpNet,
    /// Port scan or sweep, filtered or not.
    pub scan_type: ScanType,
    /// The technique (nmap option).
    pub technique: Technique,
    /// Probed hosts (at most 8, sorted).
    pub targets: Vec<IpAddr>,
    /// Number of probed hosts.
    pub ntargets: usize,
    /// IP protocol of the probes.
    pub proto: u8,
    /// Lowest and highest probed port.
    pub ports: (u16, u16),
    /// Number of distinct probed ports.
    pub nports: usize,
    /// Probes seen, retries included.
    pub probes: u64,
    /// Probes answered negatively (RST / ICMP unreachable).
    pub rejects: u32,
    /// Packet shapes seen.
    pub kinds: Vec<ProbeKind>,
    /// 1..=4: thresholds ×1, ×3, ×10, ×30.
    pub level: u8,
    /// What statewall does about it.
    pub action: AlertAction,
    /// What to block when `action` is [`AlertAction::Block`].
    pub block: Option<IpNet>,
}

/// Most targets listed in one alert.
const MAX_LISTED_TARGETS: usize = 8;

impl ScanAlert {
    /// The syslog line, iptables-LOG-like key=value pairs:
    /// `SCAN type=portscan nmap=-sF SRC=… GROUP=… DST=… PROTO=TCP ports=22-1024 nports=37
    /// probes=41 rejects=37 level=2 action=rst` (plus `hosts=` and `flags=`).
    pub fn body(&self) -> String {
        let mut dst: Vec<String> = self.targets.iter().map(IpAddr::to_string).collect();
        if self.ntargets > self.targets.len() {
            dst.push("...".to_owned());
        }
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        KvLine::new("SCAN")
            .kv("type", self.scan_type)
            .kv("nmap", self.technique.nmap())
            .kv("SRC", self.scanner)
            .kv("GROUP", self.group)
            .kv("DST", dst.join(","))
            .kv("PROTO", proto::LogName(self.proto))
            .kv("ports", format_args!("{}-{}", self.ports.0, self.ports.1))
            .kv("nports", self.nports)
            .kv("hosts", self.ntargets)
            .kv("probes", self.probes)
            .kv("rejects", self.rejects)
            .kv("flags", kinds.join(","))
            .kv("level", self.level)
            .kv("action", self.action)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Preset thresholds, modelled on Snort's port scan sensitivity levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// 60 s window; 25 ports or hosts, 20 rejects, 10 stealth probes.
    Low,
    /// 90 s window; 15 ports, 10 hosts, 10 rejects, 5 stealth probes.
    #[default]
    Medium,
    /// 600 s window; 8 ports, 6 hosts, 5 rejects, 3 stealth probes.
    High,
}

impl Sensitivity {
    /// `(window s, ports, hosts, rejects, stealth)`.
    fn preset(self) -> (u64, u32, u32, u32, u32) {
        match self {
            Sensitivity::Low => (60, 25, 25, 20, 10),
            Sensitivity::Medium => (90, 15, 10, 10, 5),
            Sensitivity::High => (600, 8, 6, 5, 3),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sensitivity::Low => "low",
            Sensitivity::Medium => "medium",
            Sensitivity::High => "high",
        }
    }
}

/// What a block covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockScope {
    /// The scanner's address only.
    #[default]
    Host,
    /// The scanner's /24 or /64.
    Group,
}

/// The `[scan]` section. Every threshold left unset comes from `sensitivity`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Scan detection on (default true).
    pub enabled: bool,
    /// `"low"`, `"medium"` (default) or `"high"`.
    pub sensitivity: Sensitivity,
    /// Sliding window, seconds (preset: 60 / 90 / 600).
    pub window: Option<u64>,
    /// Distinct ports of one host (preset: 25 / 15 / 8).
    pub ports: Option<u32>,
    /// Distinct hosts on one port (preset: 25 / 10 / 6).
    pub hosts: Option<u32>,
    /// Negative answers (RST, ICMP unreachable) on one host or port (preset: 20 / 10 / 5).
    pub rejects: Option<u32>,
    /// Stealth-shaped probes on one host or port (preset: 10 / 5 / 3).
    pub stealth: Option<u32>,
    /// Seconds after which an unanswered SYN or UDP flow counts as a filtered probe (default 3).
    pub answer_timeout: u64,
    /// Scanners tracked at once (default 4096).
    pub max_sources: usize,
    /// Probe records kept in total (default 131072).
    pub max_records: usize,
    /// Recently closed connections remembered to ignore their late segments (default 16384).
    pub max_tombstones: usize,
    /// How long, in seconds, a closed connection is remembered (default 120).
    pub tombstone_ttl: u64,
    /// Sources never reported (CIDRs).
    pub allow_sources: Vec<IpNet>,
    /// Targets whose probes are never counted (CIDRs).
    pub allow_targets: Vec<IpNet>,
    /// Ports whose probes are never counted (`22` or `"33434-33534"`).
    pub allow_ports: Vec<PortRange>,
    /// Block scanners automatically (default false).
    pub block: bool,
    /// Alert level from which a scanner is blocked, 1..=4 (default 2).
    pub block_level: u8,
    /// `"host"` (default) or `"group"` (/24, /64).
    pub block_scope: BlockScope,
    /// First block duration, seconds (default 600).
    pub block_ttl: u64,
    /// Longest block for repeat offenders, seconds (default 86400).
    pub block_ttl_max: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: true,
            sensitivity: Sensitivity::Medium,
            window: None,
            ports: None,
            hosts: None,
            rejects: None,
            stealth: None,
            answer_timeout: 3,
            max_sources: 4096,
            max_records: 131_072,
            max_tombstones: 16_384,
            tombstone_ttl: 120,
            allow_sources: Vec::new(),
            allow_targets: Vec::new(),
            allow_ports: Vec::new(),
            block: false,
            block_level: 2,
            block_scope: BlockScope::Host,
            block_ttl: 600,
            block_ttl_max: 86_400,
        }
    }
}

/// An invalid `[scan]` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scan.{key}: {problem}")]
pub struct ScanConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ScanConfig {
    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ScanConfigError> {
        let err = |key, problem: &str| {
            Err(ScanConfigError {
                key,
                problem: problem.to_owned(),
            })
        };
        let t = self.thresholds();
        for (key, value) in [
            ("window", t.window.as_secs()),
            ("ports", u64::from(t.ports)),
            ("hosts", u64::from(t.hosts)),
            ("rejects", u64::from(t.rejects)),
            ("stealth", u64::from(t.stealth)),
            ("answer_timeout", self.answer_timeout),
            ("max_sources", self.max_sources as u64),
            ("max_records", self.max_records as u64),
            ("block_ttl", self.block_ttl),
        ] {
            if value == 0 {
                return err(key, "must be at least 1");
            }
        }
        if self.answer_timeout >= t.window.as_secs() {
            return err("answer_timeout", "must be shorter than the window");
        }
        if !(1..=4).contains(&self.block_level) {
            return err("block_level", "must be between 1 and 4");
        }
        if self.block_ttl_max < self.block_ttl {
            return err("block_ttl_max", "must not be shorter than block_ttl");
        }
        Ok(())
    }

    /// The thresholds in force: the preset with the overrides applied.
    pub fn thresholds(&self) -> Thresholds {
        let (window, ports, hosts, rejects, stealth) = self.sensitivity.preset();
        Thresholds {
            window: Duration::from_secs(self.window.unwrap_or(window)),
            ports: self.ports.unwrap_or(ports),
            hosts: self.hosts.unwrap_or(hosts),
            rejects: self.rejects.unwrap_or(rejects),
            stealth: self.stealth.unwrap_or(stealth),
            answer_timeout: Duration::from_secs(self.answer_timeout),
        }
    }

    /// The block list the engine keeps for this configuration (`None` when `block = false`).
    pub fn blocklist(&self) -> Option<Blocklist> {
        self.block.then(|| {
            Blocklist::new(
                Duration::from_secs(self.block_ttl),
                Duration::from_secs(self.block_ttl_max),
                self.max_sources,
                self.allow_sources.clone(),
            )
        })
    }
}

/// Thresholds in force (see [`ScanConfig::thresholds`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Sliding window.
    pub window: Duration,
    /// Distinct ports of one host.
    pub ports: u32,
    /// Distinct hosts on one port.
    pub hosts: u32,
    /// Negative answers on one host or port.
    pub rejects: u32,
    /// Stealth probes on one host or port.
    pub stealth: u32,
    /// Time after which a candidate without answer is a filtered probe.
    pub answer_timeout: Duration,
}

/// Level multipliers: level N is reached at `threshold × LEVELS[N-1]`.
const LEVELS: [u32; 4] = [1, 3, 10, 30];

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// One probed (host, protocol, port, technique) of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dst: IpAddr,
    proto: u8,
    port: u16,
    tech: Technique,
}

impl Key {
    /// The record a reply or a completed handshake of `flow` resolves: the UDP flow, or the
    /// SYN of a TCP connection.
    fn answered(flow: &Flow) -> Key {
        let tech = if flow.proto == 17 {
            Technique::Udp
        } else {
            Technique::Syn
        };
        Key {
            dst: flow.dst,
            proto: flow.proto,
            port: flow.dport,
            tech,
        }
    }
}

/// How a counted record was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Counted at once; no answer seen (yet).
    Probe,
    /// RST or ICMP unreachable.
    Rejected,
    /// No answer within `answer_timeout`.
    Unanswered,
    /// SYN/ACK, then no completed handshake.
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecState {
    /// An allowed SYN / UDP flow waiting for its outcome.
    Candidate { since: Timestamp },
    /// The target answered SYN/ACK; waiting for the handshake to complete.
    Replied { since: Timestamp },
    /// A probe.
    Counted(Outcome),
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    last: Timestamp,
    probes: u32,
    kinds: u16,
    state: RecState,
}

/// Counts of counted records of one technique.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    n: u32,
    rejects: u32,
    answered: u32,
}

/// Per-technique counts for one host or one port (usually one technique).
#[derive(Clone, Debug, Default)]
struct Tally(Vec<(Technique, Counts)>);

impl Tally {
    fn get(&self, tech: Technique) -> Counts {
        self.0
            .iter()
            .find(|(t, _)| *t == tech)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    fn apply(&mut self, tech: Technique, outcome: Outcome, add: bool) {
        let idx = match self.0.iter().position(|(t, _)| *t == tech) {
            Some(i) => i,
            None => {
                self.0.push((tech, Counts::default()));
                self.0.len() - 1
            }
        };
        let c = &mut self.0[idx].1;
        let step = |x: &mut u32| {
            *x = if add {
                x.saturating_add(1)
            } else {
                x.saturating_sub(1)
            }
        };
        step(&mut c.n);
        if outcome == Outcome::Rejected {
            step(&mut c.rejects);
        }
        if matches!(outcome, Outcome::Rejected | Outcome::HalfOpen) {
            step(&mut c.answered);
        }
        self.0.retain(|(_, c)| c.n > 0);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Default)]
struct Tallies {
    by_dst: HashMap<IpAddr, Tally>,
    by_port: HashMap<(u8, u16), Tally>,
}

impl Tallies {
    fn apply(&mut self, key: &Key, outcome: Outcome, add: bool) {
        let by_dst = self.by_dst.entry(key.dst).or_default();
        by_dst.apply(key.tech, outcome, add);
        if by_dst.is_empty() {
            self.by_dst.remove(&key.dst);
        }
        let by_port = self.by_port.entry((key.proto, key.port)).or_default();
        by_port.apply(key.tech, outcome, add);
        if by_port.is_empty() {
            self.by_port.remove(&(key.proto, key.port));
        }
    }

    /// Moves a record from `old` to `new`, keeping the tallies in step.
    fn transition(&mut self, key: &Key, old: RecState, new: RecState) {
        if let RecState::Counted(o) = old {
            self.apply(key, o, false);
        }
        if let RecState::Counted(o) = new {
            self.apply(key, o, true);
        }
    }
}

/// An alert already sent in the current window.
#[derive(Clone, Copy, Debug)]
struct Mark {
    level: u8,
    at: Timestamp,
}

#[derive(Debug)]
struct Source {
    records: HashMap<Key, Rec>,
    /// Records per technique (the per-source cap applies to each technique on its own, so a
    /// scanner that ran one big scan is still seen when it switches technique).
    per_tech: HashMap<Technique, usize>,
    tallies: Tallies,
    marks: HashMap<(Shape, Technique), Mark>,
    last_seen: Timestamp,
    /// Earliest time `tick` has something to do for this source.
    next_due: Timestamp,
}

impl Source {
    fn new(now: Timestamp) -> Source {
        Source {
            records: HashMap::new(),
            per_tech: HashMap::new(),
            tallies: Tallies::default(),
            marks: HashMap::new(),
            last_seen: now,
            next_due: now,
        }
    }

    /// Sets the state of an existing record.
    fn set_state(&mut self, key: &Key, new: RecState) {
        if let Some(rec) = self.records.get_mut(key) {
            self.tallies.transition(key, rec.state, new);
            rec.state = new;
        }
    }

    /// Removes a record (and its share of the tallies); true when there was one.
    fn remove(&mut self, key: &Key) -> bool {
        match self.records.remove(key) {
            Some(rec) => {
                if let Some(n) = self.per_tech.get_mut(&key.tech) {
                    *n = n.saturating_sub(1);
                }
                if let RecState::Counted(outcome) = rec.state {
                    self.tallies.apply(key, outcome, false);
                }
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    sources: HashMap<IpAddr, Source>,
    records: usize,
}

impl Shard {
    /// Forgets a record that turned out to be a normal connection or exchange.
    fn forget(&mut self, src: IpAddr, key: &Key) {
        if let Some(source) = self.sources.get_mut(&src) {
            if source.remove(key) {
                self.records -= 1;
            }
        }
    }

    /// Makes room for `src` and one more record by forgetting the least recently seen eighth
    /// of the other sources.
    fn make_room(&mut self, src: IpAddr, max_sources: usize, max_records: usize) {
        let need_source = !self.sources.contains_key(&src) && self.sources.len() >= max_sources;
        if !need_source && self.records < max_records {
            return;
        }
        let mut ages: Vec<Timestamp> = self
            .sources
            .iter()
            .filter(|(ip, _)| **ip != src)
            .map(|(_, s)| s.last_seen)
            .collect();
        if ages.is_empty() {
            return;
        }
        let nth = (ages.len() / 8).min(ages.len() - 1);
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        let mut freed = 0;
        self.sources.retain(|ip, s| {
            let keep = *ip == src || s.last_seen > cutoff;
            if !keep {
                freed += s.records.len();
            }
            keep
        });
        self.records -= freed;
    }
}

/// Canonical 5-tuple of a closed connection (both directions map to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    proto: u8,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
}

impl Tuple {
    fn new(proto: u8, x: (IpAddr, u16), y: (IpAddr, u16)) -> Tuple {
        if x <= y {
            Tuple { proto, a: x, b: y }
        } else {
            Tuple { proto, a: y, b: x }
        }
    }
}

/// Recently closed connections, oldest first.
#[derive(Debug, Default)]
struct Tombstones {
    expiry: HashMap<Tuple, Timestamp>,
    order: VecDeque<(Tuple, Timestamp)>,
}

impl Tombstones {
    fn insert(&mut self, t: Tuple, until: Timestamp, cap: usize) {
        self.expiry.insert(t, until);
        self.order.push_back((t, until));
        while self.expiry.len() > cap {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((t, until)) = self.order.pop_front() {
            // A tuple closed again later has a newer entry further back: keep that one.
            if self.expiry.get(&t) == Some(&until) {
                self.expiry.remove(&t);
            }
        }
    }

    fn prune(&mut self, now: Timestamp) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_oldest();
        }
    }

    fn contains(&self, t: &Tuple, now: Timestamp) -> bool {
        self.expiry.get(t).is_some_and(|until| now < *until)
    }
}

/// Settings derived from [`ScanConfig`].
#[derive(Debug)]
struct Settings {
    cfg: ScanConfig,
    t: Thresholds,
    respond: ProbeMode,
    /// Records per source and technique: enough to reach level 4.
    max_records_per_source: usize,
    /// Per shard.
    max_sources: usize,
    max_records: usize,
}

/// The scan detector. `Sync`; every method takes `&self` and the current time.
#[derive(Debug)]
pub struct ScanDetector {
    s: Settings,
    shards: Box<[Mutex<Shard>]>,
    tombstones: Mutex<Tombstones>,
    hasher: ahash::RandomState,
}

/// Sources below this many get one shard (exact caps); above, 16 shards.
const SHARDING_FROM: usize = 1024;
const SHARDS: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ScanDetector {
    /// A detector for `cfg` (validate it first); `respond` is the `[probes]` answer mode, shown
    /// as the action of alerts that do not block.
    pub fn new(cfg: ScanConfig, respond: ProbeMode) -> ScanDetector {
        let t = cfg.thresholds();
        let nshards = if cfg.max_sources >= SHARDING_FROM {
            SHARDS
        } else {
            1
        };
        let top = t.ports.max(t.hosts).max(t.rejects).max(t.stealth);
        let max_records_per_source = (top as usize).saturating_mul(30).saturating_add(32);
        let s = Settings {
            max_sources: (cfg.max_sources / nshards).max(1),
            max_records: (cfg.max_records / nshards).max(1),
            max_records_per_source,
            t,
            respond,
            cfg,
        };
        ScanDetector {
            s,
            shards: (0..nshards).map(|_| Mutex::new(Shard::default())).collect(),
            tombstones: Mutex::new(Tombstones::default()),
            hasher: ahash::RandomState::new(),
        }
    }

    /// One line for the daemon to print at startup.
    pub fn describe(&self) -> String {
        let c = &self.s.cfg;
        if !c.enabled {
            return "scan detection: off".to_owned();
        }
        let t = &self.s.t;
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(",")
            }
        };
        let block = if c.block {
            format!(
                "block from level {} ({:?}, ttl {}s doubling up to {}s)",
                c.block_level, c.block_scope, c.block_ttl, c.block_ttl_max
            )
        } else {
            "no blocking".to_owned()
        };
        format!(
            "scan detection: sensitivity={} window={}s ports={} hosts={} rejects={} stealth={} \
             answer_timeout={}s levels=x1/x3/x10/x30 max_sources={} max_records={} \
             allow_sources={} allow_targets={} allow_ports={}; {block}; probes answered: {}",
            c.sensitivity.name(),
            t.window.as_secs(),
            t.ports,
            t.hosts,
            t.rejects,
            t.stealth,
            t.answer_timeout.as_secs(),
            c.max_sources,
            c.max_records,
            list(c.allow_sources.iter().map(ToString::to_string).collect()),
            list(c.allow_targets.iter().map(ToString::to_string).collect()),
            list(c.allow_ports.iter().map(ToString::to_string).collect()),
            self.s.respond,
        )
    }

    fn shard(&self, src: IpAddr) -> MutexGuard<'_, Shard> {
        let idx = (self.hasher.hash_one(src) as usize) % self.shards.len();
        lock(&self.shards[idx])
    }

    /// False for traffic the configuration says never to count.
    fn counts(&self, src: IpAddr, dst: IpAddr, port: u16) -> bool {
        let c = &self.s.cfg;
        c.enabled
            && !c.allow_sources.iter().any(|n| n.contains(&src))
            && !c.allow_targets.iter().any(|n| n.contains(&dst))
            && !c.allow_ports.iter().any(|p| p.contains(port))
    }

    /// The one entry for what the engine saw: a probe, an answer to one, a reply, a completed
    /// handshake or a closed connection. Returns the alerts it triggers (usually none: an empty
    /// `Vec` does not allocate).
    pub fn on_input(&self, now: Timestamp, input: ScanInput) -> Vec<ScanAlert> {
        match input {
            ScanInput::Probe { flow, kind } => self.probe(now, &flow, kind),
            ScanInput::Answer { probe, kind } => self.answer(now, &probe, kind),
            ScanInput::Reply { flow } => {
                self.reply(now, &flow);
                Vec::new()
            }
            ScanInput::Established { flow } => {
                self.established(&flow);
                Vec::new()
            }
            ScanInput::Closed { flow } => self.closed(now, &flow),
        }
    }

    /// Time-driven work, to call every ~250 ms: resolves candidates without answer (filtered
    /// and half-open probes), slides the windows, forgets idle sources and old tombstones.
    pub fn on_timer(&self, now: Timestamp) -> Vec<ScanAlert> {
        lock(&self.tombstones).prune(now);
        let mut alerts = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            let mut removed = 0;
            shard.sources.retain(|&src, source| {
                if source.next_due <= now {
                    removed += self.tick_source(src, source, now, &mut alerts);
                }
                !(source.records.is_empty() && source.marks.is_empty())
            });
            shard.records -= removed;
        }
        alerts
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Probe`]; goes
    /// once the engine speaks [`ScanInput`].
    pub fn observe(&self, ev: &ScanEvent, now: Timestamp) -> Vec<ScanAlert> {
        let (flow, kind) = (ev.flow(), ev.kind);
        self.on_input(now, ScanInput::Probe { flow, kind })
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Answer`] (a
    /// negative answer from `target:port` to `scanner`); goes once the engine speaks
    /// [`ScanInput`].
    pub fn observe_answer(
        &self,
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        kind: AnswerKind,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let probe = Flow {
            proto,
            src: scanner,
            dst: target,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Answer { probe, kind })
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Reply`] (a reply
    /// from `target:port` to `scanner`); goes once the engine speaks [`ScanInput`].
    pub fn observe_reply(
        &self,
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        now: Timestamp,
    ) {
        let flow = Flow {
            proto,
            src: scanner,
            dst: target,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Reply { flow });
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Established`]
    /// (`client` completed a connection to `server:port`); goes once the engine speaks
    /// [`ScanInput`].
    pub fn observe_established(
        &self,
        client: IpAddr,
        server: IpAddr,
        proto: u8,
        port: u16,
        now: Timestamp,
    ) {
        let flow = Flow {
            proto,
            src: client,
            dst: server,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Established { flow });
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Closed`] (the
    /// connection `src:sport → dst:dport`, src = the side that opened it); goes once the
    /// engine speaks [`ScanInput`].
    pub fn note_closed(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let flow = Flow {
            proto,
            src,
            dst,
            sport,
            dport,
        };
        self.on_input(now, ScanInput::Closed { flow })
    }

    /// Transitional name of [`ScanDetector::on_timer`]; goes once the engine calls that.
    pub fn tick(&self, now: Timestamp) -> Vec<ScanAlert> {
        self.on_timer(now)
    }

    /// [`ScanInput::Probe`]: records a packet that may be a probe.
    fn probe(&self, now: Timestamp, flow: &Flow, kind: ProbeKind) -> Vec<ScanAlert> {
        if !self.counts(flow.src, flow.dst, flow.dport) {
            return Vec::new();
        }
        if kind.is_late_segment() {
            // A server's late reply (service port → ephemeral port) or a segment of a
            // connection that closed recently: not a probe.
            if flow.sport < 1024 && flow.dport >= 1024 {
                return Vec::new();
            }
            let tuple = Tuple::new(flow.proto, (flow.src, flow.sport), (flow.dst, flow.dport));
            if lock(&self.tombstones).contains(&tuple, now) {
                return Vec::new();
            }
        }
        let key = Key {
            dst: flow.dst,
            proto: flow.proto,
            port: flow.dport,
            tech: kind.technique(),
        };
        let src = flow.src;
        let mut shard = self.shard(src);
        let shard = &mut *shard;
        let is_new = !shard
            .sources
            .get(&src)
            .is_some_and(|s| s.records.contains_key(&key));
        if is_new {
            shard.make_room(src, self.s.max_sources, self.s.max_records);
            if shard.records >= self.s.max_records {
                return Vec::new();
            }
        }
        let source = shard.sources.entry(src).or_insert_with(|| Source::new(now));
        source.last_seen = now;
        if is_new {
            let n = source.per_tech.entry(key.tech).or_default();
            if *n >= self.s.max_records_per_source {
                return Vec::new();
            }
            *n += 1;
        }
        let rec = source.records.entry(key).or_insert(Rec {
            last: now,
            probes: 0,
            kinds: 0,
            state: RecState::Candidate { since: now },
        });
        rec.last = now;
        rec.probes = rec.probes.saturating_add(1);
        rec.kinds |= kind.bit();
        if !is_new {
            // A retry, or another packet to a port already known: nothing new to count.
            return Vec::new();
        }
        shard.records += 1;
        let deadline = if kind.is_candidate() {
            now.saturating_add(self.s.t.answer_timeout)
        } else {
            source.set_state(&key, RecState::Counted(Outcome::Probe));
            now.saturating_add(self.s.t.answer_timeout.min(self.s.t.window))
        };
        source.next_due = source.next_due.min(deadline);
        self.evaluate(src, source, &key, now)
    }

    /// [`ScanInput::Answer`]: a negative answer resolves the prober's records of that port.
    fn answer(&self, now: Timestamp, probe: &Flow, kind: AnswerKind) -> Vec<ScanAlert> {
        let (scanner, target, proto, port) = (probe.src, probe.dst, probe.proto, probe.dport);
        if !self.counts(scanner, target, port) {
            return Vec::new();
        }
        let techniques = match kind {
            AnswerKind::TcpRst => Technique::answered_by(6),
            AnswerKind::IcmpUnreachable => Technique::answered_by(proto),
        };
        let mut shard = self.shard(scanner);
        let Some(source) = shard.sources.get_mut(&scanner) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        for &tech in techniques {
            let key = Key {
                dst: target,
                proto,
                port,
                tech,
            };
            let Some(rec) = source.records.get(&key) else {
                continue;
            };
            let resolvable = matches!(
                rec.state,
                RecState::Candidate { .. }
                    | RecState::Counted(Outcome::Probe)
                    | RecState::Counted(Outcome::Unanswered)
            );
            if resolvable {
                source.set_state(&key, RecState::Counted(Outcome::Rejected));
                alerts.extend(self.evaluate(scanner, source, &key, now));
            }
        }
        alerts
    }

    /// [`ScanInput::Reply`]: a UDP flow with a reply is forgotten; a SYN/ACK-answered SYN waits
    /// for its handshake.
    fn reply(&self, now: Timestamp, flow: &Flow) {
        let key = Key::answered(flow);
        let mut shard = self.shard(flow.src);
        if key.tech == Technique::Udp {
            shard.forget(flow.src, &key);
            return;
        }
        let Some(source) = shard.sources.get_mut(&flow.src) else {
            return;
        };
        let Some(rec) = source.records.get(&key) else {
            return;
        };
        let new = match rec.state {
            RecState::Candidate { .. } | RecState::Counted(Outcome::Unanswered) => {
                RecState::Replied { since: now }
            }
            _ => return,
        };
        source.set_state(&key, new);
        source.next_due = source
            .next_due
            .min(now.saturating_add(self.s.t.answer_timeout));
    }

    /// [`ScanInput::Established`]: a completed connection is forgotten.
    fn established(&self, flow: &Flow) {
        let key = Key::answered(flow);
        self.shard(flow.src).forget(flow.src, &key);
    }

    /// [`ScanInput::Closed`]: leaves a tombstone; a SYN/ACK-answered SYN that never completed
    /// is a half-open probe.
    fn closed(&self, now: Timestamp, flow: &Flow) -> Vec<ScanAlert> {
        let (src, dst, proto) = (flow.src, flow.dst, flow.proto);
        let until = now.saturating_add(Duration::from_secs(self.s.cfg.tombstone_ttl));
        let tuple = Tuple::new(proto, (src, flow.sport), (dst, flow.dport));
        lock(&self.tombstones).insert(tuple, until, self.s.cfg.max_tombstones);
        if proto != 6 || !self.counts(src, dst, flow.dport) {
            return Vec::new();
        }
        let key = Key {
            dst,
            proto,
            port: flow.dport,
            tech: Technique::Syn,
        };
        let mut shard = self.shard(src);
        let Some(source) = shard.sources.get_mut(&src) else {
            return Vec::new();
        };
        match source.records.get(&key) {
            Some(rec) if matches!(rec.state, RecState::Replied { .. }) => {
                source.set_state(&key, RecState::Counted(Outcome::HalfOpen));
                self.evaluate(src, source, &key, now)
            }
            _ => Vec::new(),
        }
    }
    /// Ages one source; returns the number of records it dropped.
    fn tick_source(
        &self,
        src: IpAddr,
        source: &mut Source,
        now: Timestamp,
        alerts: &mut Vec<ScanAlert>,
    ) -> usize {
        let t = &self.s.t;
        let timed_out = |since: Timestamp| now.since(since) >= t.answer_timeout;
        let mut changed = Vec::new();
        let mut expired = Vec::new();
        let mut next_due = now.saturating_add(t.window);
        for (key, rec) in &source.records {
            let new = match rec.state {
                RecState::Candidate { since } if timed_out(since) => {
                    Some(RecState::Counted(Outcome::Unanswered))
                }
                RecState::Replied { since } if timed_out(since) => {
                    Some(RecState::Counted(Outcome::HalfOpen))
                }
                RecState::Counted(Outcome::Probe) if timed_out(rec.last) => {
                    Some(RecState::Counted(Outcome::Unanswered))
                }
                _ => None,
            };
            if now.since(rec.last) > t.window {
                expired.push(*key);
                continue;
            }
            next_due = next_due.min(
                rec.last
                    .saturating_add(t.window)
                    .saturating_add(Duration::from_nanos(1)),
            );
            match (new, rec.state) {
                (Some(new), _) => changed.push((*key, new)),
                (None, RecState::Candidate { since } | RecState::Replied { since }) => {
                    next_due = next_due.min(since.saturating_add(t.answer_timeout));
                }
                (None, RecState::Counted(Outcome::Probe)) => {
                    next_due = next_due.min(rec.last.saturating_add(t.answer_timeout));
                }
                _ => {}
            }
        }
        for key in &expired {
            source.remove(key);
        }
        source.marks.retain(|_, m| now.since(m.at) < t.window);
        for m in source.marks.values() {
            next_due = next_due.min(m.at.saturating_add(t.window));
        }
        for (key, new) in &changed {
            source.set_state(key, *new);
        }
        for (key, _) in &changed {
            alerts.extend(self.evaluate(src, source, key, now));
        }
        source.next_due = next_due;
        expired.len()
    }

    /// The level reached by the counts of one host or port (0: none).
    fn level(&self, shape: Shape, tech: Technique, c: Counts) -> u8 {
        let t = &self.s.t;
        let base = match (tech.is_stealth(), shape) {
            (true, _) => t.stealth,
            (false, Shape::Scan) => t.ports,
            (false, Shape::Sweep) => t.hosts,
        };
        let mut level = 0;
        for (i, m) in LEVELS.iter().enumerate() {
            let by_count = c.n >= base.saturating_mul(*m);
            let by_rejects = !tech.is_stealth() && c.rejects >= t.rejects.saturating_mul(*m);
            if by_count || by_rejects {
                level = i as u8 + 1;
            }
        }
        level
    }

    /// Checks the host and the port of `key` against the thresholds; alerts on a new level.
    fn evaluate(
        &self,
        src: IpAddr,
        source: &mut Source,
        key: &Key,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let mut alerts = Vec::new();
        for shape in [Shape::Scan, Shape::Sweep] {
            let counts = match shape {
                Shape::Scan => source.tallies.by_dst.get(&key.dst).map(|t| t.get(key.tech)),
                Shape::Sweep => source
                    .tallies
                    .by_port
                    .get(&(key.proto, key.port))
                    .map(|t| t.get(key.tech)),
            };
            let Some(counts) = counts else { continue };
            let level = self.level(shape, key.tech, counts);
            let mark = source.marks.get(&(shape, key.tech)).copied();
            if level == 0 || mark.is_some_and(|m| m.level >= level) {
                continue;
            }
            let at = mark.map_or(now, |m| m.at);
            source.marks.insert((shape, key.tech), Mark { level, at });
            let filtered = key.tech.reports_filtered()
                && counts.n.saturating_sub(counts.answered) * 2 > counts.n;
            alerts.push(self.summarise(src, source, key, shape, filtered, level));
        }
        alerts
    }

    /// Builds the alert for the records of `key`'s host (scan) or port (sweep).
    fn summarise(
        &self,
        src: IpAddr,
        source: &Source,
        key: &Key,
        shape: Shape,
        filtered: bool,
        level: u8,
    ) -> ScanAlert {
        let mut targets = Vec::new();
        let mut ports = Vec::new();
        let (mut probes, mut rejects, mut kinds) = (0u64, 0u32, 0u16);
        for (k, rec) in &source.records {
            let same = match shape {
                Shape::Scan => k.dst == key.dst,
                Shape::Sweep => k.port == key.port,
            };
            let RecState::Counted(outcome) = rec.state else {
                continue;
            };
            if !same || k.tech != key.tech || k.proto != key.proto {
                continue;
            }
            targets.push(k.dst);
            ports.push(k.port);
            probes += u64::from(rec.probes);
            rejects += u32::from(outcome == Outcome::Rejected);
            kinds |= rec.kinds;
        }
        targets.sort_unstable();
        targets.dedup();
        ports.sort_unstable();
        ports.dedup();
        let ntargets = targets.len();
        targets.truncate(MAX_LISTED_TARGETS);
        let c = &self.s.cfg;
        let blocks = c.block && level >= c.block_level;
        let action = match (blocks, self.s.respond) {
            (true, _) => AlertAction::Block,
            (false, ProbeMode::Rst) => AlertAction::Rst,
            (false, ProbeMode::Drop) => AlertAction::Drop,
        };
        let block = blocks.then(|| match c.block_scope {
            BlockScope::Host => IpNet::from(src),
            BlockScope::Group => source_group(src),
        });
        ScanAlert {
            scanner: src,
            group: source_group(src),
            scan_type: ScanType::new(shape, filtered),
            technique: key.tech,
            targets,
            ntargets,
            proto: key.proto,
            ports: (
                ports.first().copied().unwrap_or(key.port),
                ports.last().copied().unwrap_or(key.port),
            ),
            nports: ports.len(),
            probes,
            rejects,
            kinds: ProbeKind::ALL
                .into_iter()
                .filter(|k| kinds & k.bit() != 0)
                .collect(),
            level,
            action,
            block,
        }
    }

    /// Number of sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.shards.iter().map(|s| lock(s).sources.len()).sum()
    }

    /// Number of probe records currently kept.
    pub fn tracked_records(&self) -> usize {
        self.shards.iter().map(|s| lock(s).records).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCANNER: &str = "198.51.100.2";
    const TARGET: &str = "203.0.113.2";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn det(cfg: ScanConfig) -> ScanDetector {
        cfg.validate().unwrap();
        ScanDetector::new(cfg, ProbeMode::Rst)
    }

    fn medium() -> ScanDetector {
        det(ScanConfig::default())
    }

    /// A flow from `src:sport` to `dst:dport`.
    fn flow(proto: u8, (src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16)) -> Flow {
        Flow {
            proto,
            src,
            dst,
            sport,
            dport,
        }
    }

    /// The protocol of a probe kind.
    fn proto_of(kind: ProbeKind) -> u8 {
        if kind.technique() == Technique::Udp {
            17
        } else {
            6
        }
    }

    /// A `kind` probe from `src:sport` to `dst:dport`.
    fn probe_flow(kind: ProbeKind, src: (IpAddr, u16), dst: (IpAddr, u16)) -> ScanInput {
        let flow = flow(proto_of(kind), src, dst);
        ScanInput::Probe { flow, kind }
    }

    /// A `kind` probe from `src` (source port 50505) to `dst:dport`.
    fn probe_from(src: IpAddr, kind: ProbeKind, dst: &str, dport: u16) -> ScanInput {
        probe_flow(kind, (src, 50505), (ip(dst), dport))
    }

    /// A `kind` probe from SCANNER (source port 50505) to `dst:dport`.
    fn probe(kind: ProbeKind, dst: &str, dport: u16) -> ScanInput {
        probe_from(ip(SCANNER), kind, dst, dport)
    }

    /// A `kind` answer to a probe from `scanner` to `target:port`.
    fn answer(
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        kind: AnswerKind,
    ) -> ScanInput {
        let probe = flow(proto, (scanner, 50505), (target, port));
        ScanInput::Answer { probe, kind }
    }

    /// A RST answering a TCP probe from SCANNER to TARGET:port.
    fn rst(port: u16) -> ScanInput {
        answer(ip(SCANNER), ip(TARGET), 6, port, AnswerKind::TcpRst)
    }

    /// The first reply of `client`'s flow to `server:port`.
    fn reply(client: IpAddr, server: IpAddr, proto: u8, port: u16) -> ScanInput {
        let flow = flow(proto, (client, 50505), (server, port));
        ScanInput::Reply { flow }
    }

    /// `client`'s TCP connection to `server:port` completed.
    fn established(client: IpAddr, server: IpAddr, port: u16) -> ScanInput {
        let flow = flow(6, (client, 50505), (server, port));
        ScanInput::Established { flow }
    }

    /// The TCP connection `client:sport → server:dport` closed.
    fn closed(client: (IpAddr, u16), server: (IpAddr, u16)) -> ScanInput {
        let flow = flow(6, client, server);
        ScanInput::Closed { flow }
    }

    /// Sends `kind` probes to `ports` of TARGET, 1 ms apart from `start`; returns all alerts.
    fn scan(
        d: &ScanDetector,
        kind: ProbeKind,
        ports: impl IntoIterator<Item = u16>,
        start: u64,
    ) -> Vec<ScanAlert> {
        ports
            .into_iter()
            .enumerate()
            .flat_map(|(i, p)| d.on_input(ms(start + i as u64), probe(kind, TARGET, p)))
            .collect()
    }

    /// Calls `on_timer` every 250 ms over `[from, to]`.
    fn ticks(d: &ScanDetector, from: u64, to: u64) -> Vec<ScanAlert> {
        (from..=to)
            .step_by(250)
            .flat_map(|t| d.on_timer(ms(t)))
            .collect()
    }

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

    #[test]
    fn each_stealth_technique_is_named() {
        let cases = [
            (ProbeKind::Null, "-sN"),
            (ProbeKind::Fin, "-sF"),
            (ProbeKind::Xmas, "-sX"),
            (ProbeKind::Maimon, "-sM"),
            (ProbeKind::Ack, "-sA"),
            (ProbeKind::SynFin, "--scanflags=SYNFIN"),
            (ProbeKind::OsProbe, "-O"),
            (ProbeKind::StraySynAck, "--scanflags=SYNACK"),
        ];
        for (kind, nmap) in cases {
            let d = medium();
            assert!(
                scan(&d, kind, 1..5, 0).is_empty(),
                "{kind}: 4 probes are below threshold"
            );
            let alerts = scan(&d, kind, 5..6, 10);
            assert_eq!(alerts.len(), 1, "{kind}");
            let a = &alerts[0];
            assert_eq!(a.technique.nmap(), nmap);
            assert_eq!(
                (a.scan_type, a.level, a.nports, a.ports),
                (ScanType::PortScan, 1, 5, (1, 5))
            );
            assert_eq!(a.kinds, vec![kind]);
        }
    }

    #[test]
    fn alert_body_is_key_value() {
        let d = medium();
        let alerts = scan(&d, ProbeKind::Fin, [22, 80, 443, 1024], 0);
        assert!(alerts.is_empty());
        for p in [22, 80, 443] {
            d.on_input(ms(10), rst(p));
        }
        let alerts = scan(&d, ProbeKind::Fin, [25], 20);
        assert_eq!(
            alerts[0].body(),
            "SCAN type=portscan nmap=-sF SRC=198.51.100.2 GROUP=198.51.100.0/24 DST=203.0.113.2 \
             PROTO=TCP ports=22-1024 nports=5 hosts=1 probes=5 rejects=3 flags=fin level=1 action=rst"
        );
    }

    #[test]
    fn syn_scan_of_closed_ports_alerts_on_rejects() {
        let d = medium();
        let mut alerts = Vec::new();
        for p in 1..=10u16 {
            let now = ms(u64::from(p));
            alerts.extend(d.on_input(now, probe(ProbeKind::Syn, TARGET, p)));
            assert!(alerts.is_empty(), "allowed SYNs are only candidates");
            alerts.extend(d.on_input(now, rst(p)));
        }
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.scan_type, a.technique, a.rejects, a.nports),
            (ScanType::PortScan, Technique::Syn, 10, 10)
        );
    }

    #[test]
    fn unanswered_syns_become_a_filtered_scan_within_a_second() {
        let d = medium();
        assert!(scan(&d, ProbeKind::Syn, 1..=15, 0).is_empty());
        assert!(ticks(&d, 0, 2_750).is_empty(), "not before answer_timeout");
        let alerts = ticks(&d, 3_000, 4_000);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].scan_type, ScanType::FilteredPortScan);
        assert_eq!(alerts[0].nports, 15);
        assert!(d.on_timer(ms(3_500)).is_empty(), "one alert per window");
    }

    #[test]
    fn half_open_syn_scan() {
        let d = medium();
        let (s, t) = (ip(SCANNER), ip(TARGET));
        let mut alerts = Vec::new();
        for p in 1..=15u16 {
            let now = ms(u64::from(p));
            d.on_input(now, probe(ProbeKind::Syn, TARGET, p));
            d.on_input(now, reply(s, t, 6, p));
            // nmap -sS answers the SYN/ACK with a RST: the connection closes, never established.
            alerts.extend(d.on_input(now, closed((s, 50505), (t, p))));
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].scan_type, alerts[0].technique),
            (ScanType::PortScan, Technique::Syn)
        );
        assert_eq!(alerts[0].rejects, 0);
        // Without the close, the timeout resolves them too.
        let d = medium();
        for p in 1..=15u16 {
            d.on_input(ms(0), probe(ProbeKind::Syn, TARGET, p));
            d.on_input(ms(1), reply(s, t, 6, p));
        }
        assert!(ticks(&d, 0, 2_750).is_empty());
        assert_eq!(ticks(&d, 3_000, 4_000).len(), 1);
    }

    #[test]
    fn completed_connections_are_normal_life() {
        let d = medium();
        let client = ip("10.0.0.5");
        // 40 hosts on 443 and 1000 connections to one port, all completing.
        for i in 0..40u8 {
            let server = IpAddr::from([192, 0, 2, i]);
            let syn = probe_flow(
                ProbeKind::Syn,
                (client, 40000 + u16::from(i)),
                (server, 443),
            );
            assert!(d.on_input(ms(0), syn).is_empty());
        }
        for i in 0..40u8 {
            let server = IpAddr::from([192, 0, 2, i]);
            d.on_input(ms(30), reply(client, server, 6, 443));
            d.on_input(ms(31), established(client, server, 443));
        }
        for sport in 0..1000u16 {
            let server = ip(TARGET);
            d.on_input(
                ms(100),
                probe_flow(ProbeKind::Syn, (client, sport), (server, 8080)),
            );
            d.on_input(ms(101), reply(client, server, 6, 8080));
            d.on_input(ms(101), established(client, server, 8080));
            d.on_input(ms(200), closed((client, sport), (server, 8080)));
        }
        assert_eq!(
            d.tracked_records(),
            0,
            "completed connections are forgotten at once"
        );
        assert!(ticks(&d, 0, 200_000).is_empty());
    }

    #[test]
    fn retries_and_a_thousand_refused_connections_to_one_port_are_one_record() {
        let d = medium();
        let mut alerts = Vec::new();
        for i in 0..1000u64 {
            let (src, dst) = ((ip(SCANNER), 30000 + i as u16), (ip(TARGET), 5432));
            alerts.extend(d.on_input(ms(i), probe_flow(ProbeKind::Syn, src, dst)));
            alerts.extend(d.on_input(ms(i), rst(5432)));
        }
        alerts.extend(ticks(&d, 0, 10_000));
        assert!(alerts.is_empty());
        assert_eq!(d.tracked_records(), 1);
    }

    #[test]
    fn udp_scan_and_normal_dns() {
        let d = medium();
        let mut alerts = Vec::new();
        for p in 1..=10u16 {
            alerts.extend(d.on_input(ms(0), probe(ProbeKind::UdpNew, TARGET, p)));
            let unreachable = AnswerKind::IcmpUnreachable;
            alerts.extend(d.on_input(ms(1), answer(ip(SCANNER), ip(TARGET), 17, p, unreachable)));
        }
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].technique.nmap(), alerts[0].proto), ("-sU", 17));
        assert!(alerts[0].body().contains("PROTO=UDP"));

        // A client asking 50 resolvers, all answering.
        let d = medium();
        let client = ip("10.0.0.5");
        for i in 0..50u8 {
            let server = IpAddr::from([192, 0, 2, i]);
            d.on_input(
                ms(0),
                probe_flow(ProbeKind::UdpNew, (client, 5353), (server, 53)),
            );
            d.on_input(ms(20), reply(client, server, 17, 53));
        }
        assert!(ticks(&d, 0, 10_000).is_empty());
    }

    #[test]
    fn port_sweep_of_dropped_syns() {
        let d = medium();
        let mut alerts = Vec::new();
        for i in 1..=10u8 {
            let dst = format!("203.0.113.{i}");
            alerts.extend(d.on_input(ms(u64::from(i)), probe(ProbeKind::SynDropped, &dst, 22)));
        }
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.scan_type, a.ntargets, a.nports, a.ports),
            (ScanType::FilteredPortSweep, 10, 1, (22, 22))
        );
        assert_eq!(a.targets.len(), MAX_LISTED_TARGETS);
        assert!(
            a.body().contains("DST=203.0.113.1,203.0.113.2,"),
            "{}",
            a.body()
        );
    }

    #[test]
    fn escalation_levels_once_each() {
        let d = medium();
        let alerts = scan(&d, ProbeKind::Xmas, 1..=200, 0);
        let levels: Vec<(u8, usize)> = alerts.iter().map(|a| (a.level, a.nports)).collect();
        assert_eq!(levels, [(1, 5), (2, 15), (3, 50), (4, 150)]);
    }

    #[test]
    fn one_alert_per_window_then_again() {
        let d = medium();
        assert_eq!(scan(&d, ProbeKind::Null, 1..=14, 0).len(), 1);
        assert!(ticks(&d, 0, 90_000).is_empty());
        // Past the window, old records and the mark are gone: a new scan alerts again.
        assert!(ticks(&d, 90_250, 91_000).is_empty());
        assert_eq!(d.tracked_records(), 0);
        assert_eq!(d.tracked_sources(), 0);
        assert_eq!(scan(&d, ProbeKind::Null, 100..105, 92_000).len(), 1);
    }

    #[test]
    fn window_slides() {
        let d = medium();
        assert!(scan(&d, ProbeKind::Fin, 1..=4, 0).is_empty());
        assert_eq!(
            scan(&d, ProbeKind::Fin, 5..=6, 60_000).len(),
            1,
            "6 within 90 s"
        );
        let d = medium();
        assert!(scan(&d, ProbeKind::Fin, 1..=4, 0).is_empty());
        d.on_timer(ms(95_000));
        assert!(
            scan(&d, ProbeKind::Fin, 5..=8, 95_000).is_empty(),
            "the first 4 slid out"
        );
        assert_eq!(scan(&d, ProbeKind::Fin, 9..=9, 96_000).len(), 1);
    }

    #[test]
    fn sources_are_capped_oldest_evicted() {
        let d = det(ScanConfig {
            max_sources: 8,
            ..Default::default()
        });
        for i in 0..100u8 {
            let src = IpAddr::from([10, 0, i, 1]);
            d.on_input(ms(u64::from(i)), probe_from(src, ProbeKind::Fin, TARGET, 1));
            assert!(d.tracked_sources() <= 8);
        }
        // The most recent sources are kept and still accumulate.
        let last = IpAddr::from([10, 0, 99, 1]);
        let alerts: Vec<_> = (2..=5)
            .flat_map(|p| d.on_input(ms(200), probe_from(last, ProbeKind::Fin, TARGET, p)))
            .collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].scanner, last);
    }

    #[test]
    fn records_are_capped() {
        let d = det(ScanConfig {
            max_records: 100,
            ..Default::default()
        });
        for i in 0..50u8 {
            let src = IpAddr::from([10, 0, i, 1]);
            for p in 1..=10 {
                d.on_input(
                    ms(u64::from(i)),
                    probe_from(src, ProbeKind::Null, TARGET, p),
                );
            }
            assert!(d.tracked_records() <= 100);
        }
        // One source alone is capped at what level 4 needs.
        let d = medium();
        scan(&d, ProbeKind::Null, 1..=5000, 0);
        assert_eq!(d.tracked_records(), 15 * 30 + 32);
        // The cap is per technique: the same scanner switching technique is still seen.
        let alerts = scan(&d, ProbeKind::Fin, 1..=200, 6000);
        let levels: Vec<u8> = alerts
            .iter()
            .filter(|a| a.technique == Technique::Fin)
            .map(|a| a.level)
            .collect();
        assert_eq!(levels, [1, 2, 3, 4]);
    }

    #[test]
    fn tombstones_hide_late_segments_of_closed_connections() {
        let d = medium();
        let (client, server) = (ip(SCANNER), ip(TARGET));
        for p in 8000..8010u16 {
            d.on_input(ms(0), closed((client, 40000), (server, p)));
        }
        let late = |kind, p, t| d.on_input(ms(t), probe_flow(kind, (client, 40000), (server, p)));
        let mut alerts = Vec::new();
        for p in 8000..8010u16 {
            alerts.extend(late(ProbeKind::Maimon, p, 1_000));
            alerts.extend(late(ProbeKind::Ack, p, 1_000));
        }
        assert!(alerts.is_empty());
        // Expired tombstones no longer hide them.
        d.on_timer(ms(121_000));
        let alerts: Vec<_> = (8000..8010u16)
            .flat_map(|p| late(ProbeKind::Maimon, p, 121_000))
            .collect();
        assert_eq!(alerts.len(), 1);
    }

    #[test]
    fn tombstones_are_bounded() {
        let d = det(ScanConfig {
            max_tombstones: 10,
            ..Default::default()
        });
        for p in 0..100u16 {
            d.on_input(ms(0), closed((ip(SCANNER), 40000), (ip(TARGET), 2000 + p)));
        }
        let t = lock(&d.tombstones);
        assert_eq!(t.expiry.len(), 10);
        assert!(t.contains(
            &Tuple::new(6, (ip(TARGET), 2099), (ip(SCANNER), 40000)),
            ms(1)
        ));
    }

    #[test]
    fn late_replies_from_service_ports_are_not_probes() {
        let d = medium();
        let server = ip(TARGET);
        let alerts: Vec<_> = (40000..40050u16)
            .flat_map(|p| {
                let ack = probe_flow(ProbeKind::Ack, (server, 443), (ip(SCANNER), p));
                d.on_input(ms(0), ack)
            })
            .collect();
        assert!(alerts.is_empty());
    }

    #[test]
    fn allowlists() {
        let cfg = ScanConfig {
            allow_sources: vec!["198.51.100.0/24".parse().unwrap()],
            ..Default::default()
        };
        assert!(scan(&det(cfg), ProbeKind::Fin, 1..=100, 0).is_empty());
        let cfg = ScanConfig {
            allow_targets: vec!["203.0.113.0/30".parse().unwrap()],
            ..Default::default()
        };
        assert!(scan(&det(cfg), ProbeKind::Fin, 1..=100, 0).is_empty());
        let cfg = ScanConfig {
            allow_ports: vec![
                PortRange::new(1, 50).expect("ordered"),
                PortRange::single(99),
            ],
            ..Default::default()
        };
        let d = det(cfg);
        assert!(scan(
            &d,
            ProbeKind::Fin,
            (1..=50).chain([99, 100, 101, 102, 103]),
            0
        )
        .is_empty());
        assert_eq!(scan(&d, ProbeKind::Fin, [104], 10).len(), 1);
    }

    #[test]
    fn block_action_from_block_level() {
        let cfg = ScanConfig {
            block: true,
            block_level: 2,
            block_scope: BlockScope::Group,
            ..Default::default()
        };
        let d = det(cfg.clone());
        let alerts = scan(&d, ProbeKind::Fin, 1..=15, 0);
        assert_eq!(alerts.len(), 2);
        assert_eq!(
            (alerts[0].action, alerts[0].block),
            (AlertAction::Rst, None)
        );
        assert_eq!(alerts[1].action, AlertAction::Block);
        assert_eq!(alerts[1].block, Some("198.51.100.0/24".parse().unwrap()));
        let list = cfg.blocklist().unwrap();
        let a = &alerts[1];
        let net = a.block.unwrap();
        assert!(list
            .block(a.scanner, net, a.scan_type.name(), ms(0))
            .is_some());
        assert!(list.is_blocked(ip("198.51.100.77"), ms(1)));
        let d = ScanDetector::new(ScanConfig::default(), ProbeMode::Drop);
        assert_eq!(
            scan(&d, ProbeKind::Fin, 1..=5, 0)[0].action,
            AlertAction::Drop
        );
    }

    #[test]
    fn overrides_and_presets() {
        let d = det(ScanConfig {
            stealth: Some(2),
            ..Default::default()
        });
        assert_eq!(scan(&d, ProbeKind::Fin, 1..=2, 0).len(), 1);
        let d = det(ScanConfig {
            sensitivity: Sensitivity::Low,
            ..Default::default()
        });
        assert!(scan(&d, ProbeKind::Fin, 1..=9, 0).is_empty());
        assert_eq!(scan(&d, ProbeKind::Fin, 10..=10, 10).len(), 1);
        let high = ScanConfig {
            sensitivity: Sensitivity::High,
            ..Default::default()
        };
        assert_eq!(high.thresholds().window, Duration::from_secs(600));
        assert_eq!(scan(&det(high), ProbeKind::Fin, 1..=3, 0).len(), 1);
        let off = det(ScanConfig {
            enabled: false,
            ..Default::default()
        });
        assert!(scan(&off, ProbeKind::Fin, 1..=100, 0).is_empty());
        assert_eq!(off.describe(), "scan detection: off");
    }

    #[test]
    fn describe_names_the_settings() {
        let cfg = ScanConfig {
            allow_ports: vec![PortRange::new(33434, 33534).expect("ordered")],
            ..Default::default()
        };
        let text = det(cfg).describe();
        assert!(text.starts_with("scan detection: sensitivity=medium window=90s ports=15 hosts=10 rejects=10 stealth=5"), "{text}");
        assert!(text.contains("allow_ports=33434-33534"), "{text}");
        assert!(text.contains("no blocking"), "{text}");
    }

    fn parse(toml: &str) -> Result<ScanConfig, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .get("scan")
    }

    #[test]
    fn config_parses_with_defaults() {
        let cfg = parse("[scan]\nsensitivity = \"medium\"\n").unwrap();
        assert_eq!(cfg, ScanConfig::default());
        let cfg = parse(
            "[scan]\nsensitivity = \"high\"\nports = 20\nallow_sources = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\
             allow_ports = [22, \"8000-8100\"]\nblock = true\nblock_scope = \"group\"\n",
        )
        .unwrap();
        assert_eq!(cfg.thresholds().ports, 20);
        assert_eq!(cfg.thresholds().stealth, 3);
        assert_eq!(
            cfg.allow_ports,
            vec![
                PortRange::single(22),
                PortRange::new(8000, 8100).expect("ordered")
            ]
        );
        assert_eq!(cfg.block_scope, BlockScope::Group);
        cfg.validate().unwrap();
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = parse("[scan]\nthreshold = 3\n").unwrap_err().to_string();
        assert!(err.contains("threshold"), "{err}");
        let err = parse("[scan]\nallow_ports = [\"9-1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("9-1"), "{err}");
        let err = parse("[scan]\nsensitivity = \"paranoid\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("paranoid"), "{err}");
        let check = |cfg: ScanConfig| cfg.validate().unwrap_err().to_string();
        assert!(check(ScanConfig {
            ports: Some(0),
            ..Default::default()
        })
        .starts_with("scan.ports:"));
        assert!(check(ScanConfig {
            block_level: 5,
            ..Default::default()
        })
        .starts_with("scan.block_level:"));
        assert!(check(ScanConfig {
            answer_timeout: 90,
            ..Default::default()
        })
        .starts_with("scan.answer_timeout:"));
        assert!(check(ScanConfig {
            block_ttl_max: 1,
            ..Default::default()
        })
        .starts_with("scan.block_ttl_max:"));
    }

    #[test]
    fn answers_to_stealth_probes_count_as_rejects() {
        let d = medium();
        scan(&d, ProbeKind::Null, 1..=4, 0);
        for p in 1..=4 {
            d.on_input(ms(5), rst(p));
        }
        let alerts = scan(&d, ProbeKind::Null, [5], 10);
        assert_eq!(
            (alerts[0].rejects, alerts[0].scan_type),
            (4, ScanType::PortScan)
        );
        // Answers for probes never seen change nothing.
        assert!(d
            .on_input(
                ms(5),
                answer(ip("192.0.2.9"), ip(TARGET), 6, 1, AnswerKind::TcpRst)
            )
            .is_empty());
    }

    #[test]
    fn detector_is_shared_between_threads() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<ScanDetector>();
        let d = std::sync::Arc::new(det(ScanConfig {
            max_sources: 4096,
            ..Default::default()
        }));
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                let d = std::sync::Arc::clone(&d);
                std::thread::spawn(move || {
                    let src = IpAddr::from([10, 1, t, 1]);
                    (1..=15u16)
                        .flat_map(|p| d.on_input(ms(0), probe_from(src, ProbeKind::Fin, TARGET, p)))
                        .count()
                })
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 8, "levels 1 and 2 for each of 4 scanners");
    }

    proptest::proptest! {
        /// Any sequence of events and answers keeps the detector within its bounds and its
        /// tallies consistent with its records.
        #[test]
        fn any_event_stream_stays_bounded(
            steps in proptest::collection::vec(
                (0u8..12, 0u8..6, 0u8..4, 0u16..40, 0u8..6, 0u64..2_000), 1..400)
        ) {
            let d = det(ScanConfig { max_sources: 4, max_records: 64, ..Default::default() });
            let mut now = 0u64;
            for (kind, src, dst, port, action, dt) in steps {
                now += dt;
                let t = ms(now);
                let src = IpAddr::from([10, 0, 0, src]);
                let dst = IpAddr::from([203, 0, 113, dst]);
                let kind = ProbeKind::ALL[usize::from(kind)];
                let proto = if kind.technique() == Technique::Udp { 17 } else { 6 };
                match action {
                    0 | 1 => drop(d.on_input(t, probe_flow(kind, (src, 40000), (dst, port)))),
                    2 => drop(d.on_input(t, answer(src, dst, proto, port, AnswerKind::TcpRst))),
                    3 => drop(d.on_input(t, reply(src, dst, proto, port))),
                    4 => drop(d.on_input(t, ScanInput::Established { flow: flow(proto, (src, 40000), (dst, port)) })),
                    _ => drop(d.on_timer(t)),
                }
                proptest::prop_assert!(d.tracked_sources() <= 4);
                proptest::prop_assert!(d.tracked_records() <= 64);
            }
            for shard in d.shards.iter() {
                let shard = lock(shard);
                let mut records = 0;
                for source in shard.sources.values() {
                    records += source.records.len();
                    let counted = source.records.values().filter(|r| matches!(r.state, RecState::Counted(_))).count();
                    let by_dst: u32 = source.tallies.by_dst.values().flat_map(|t| t.0.iter().map(|(_, c)| c.n)).sum();
                    let by_port: u32 = source.tallies.by_port.values().flat_map(|t| t.0.iter().map(|(_, c)| c.n)).sum();
                    proptest::prop_assert_eq!(by_dst as usize, counted);
                    proptest::prop_assert_eq!(by_port as usize, counted);
                }
                proptest::prop_assert_eq!(records, shard.records);
            }
        }
    }
}
