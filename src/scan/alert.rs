//! What the detector reports: a [`ScanAlert`] (a typed value: scanner, scan type, technique,
//! targets, ports, counts, level, action) and its key=value syslog rendering
//! ([`ScanAlert::body`]).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::input::{ProbeKind, Shape, Technique};
use crate::alert::KvLine;
use crate::proto;

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
    /// The type of a scan of `shape`; `filtered` when its probes mostly got no answer.
    pub(super) fn new(shape: Shape, filtered: bool) -> ScanType {
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

/// A detected scan, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanAlert {
    /// The address the scanner last probed from. Its probes are counted per source (an IPv6
    /// /64 by default: `[sources]`, [`crate::source::SourcePrefix`]), whatever address of it
    /// each came from.
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
pub(super) const MAX_LISTED_TARGETS: usize = 8;

impl ScanAlert {
    /// The syslog line, iptables-LOG-like key=value pairs:
    /// `SCAN type=portscan nmap=-sF SRC=… GROUP=… DST=… targets=… PROTO=TCP ports=22-1024
    /// nports=37 hosts=1 probes=41 rejects=37 flags=… level=2 action=rst`. `DST=` is one
    /// address (the first probed host, so that parsers typing `DST` as an address read it);
    /// `targets=` lists the probed hosts (at most eight, then `...`).
    pub fn body(&self) -> String {
        let mut targets: Vec<String> = self.targets.iter().map(IpAddr::to_string).collect();
        if self.ntargets > self.targets.len() {
            targets.push("...".to_owned());
        }
        let first = self
            .targets
            .first()
            .map(IpAddr::to_string)
            .unwrap_or_default();
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        KvLine::new("SCAN")
            .kv("type", self.scan_type)
            .kv("nmap", self.technique.nmap())
            .kv("SRC", self.scanner)
            .kv("GROUP", self.group)
            .kv("DST", first)
            .kv("targets", targets.join(","))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lists_at_most_eight_targets_then_dots() {
        let targets: Vec<IpAddr> = (1..=9u16)
            .map(|i| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]))
            .collect();
        let alert = ScanAlert {
            scanner: "2001:db8:1::2".parse().unwrap(),
            group: "2001:db8:1::/64".parse().unwrap(),
            scan_type: ScanType::new(Shape::Sweep, true),
            technique: Technique::Udp,
            targets: targets[..MAX_LISTED_TARGETS].to_vec(),
            ntargets: targets.len(),
            proto: 17,
            ports: (53, 53),
            nports: 1,
            probes: 12,
            rejects: 0,
            kinds: vec![ProbeKind::UdpNew, ProbeKind::UdpDropped],
            level: 1,
            action: AlertAction::Block,
            block: Some("2001:db8:1::2/128".parse().unwrap()),
        };
        assert_eq!(
            alert.body(),
            "SCAN type=filtered_portsweep nmap=-sU SRC=2001:db8:1::2 GROUP=2001:db8:1::/64 \
             DST=2001:db8::1 targets=2001:db8::1,2001:db8::2,2001:db8::3,2001:db8::4,\
             2001:db8::5,2001:db8::6,2001:db8::7,2001:db8::8,... PROTO=UDP ports=53-53 nports=1 hosts=9 probes=12 \
             rejects=0 flags=udp,udp_dropped level=1 action=block"
        );
    }
}
