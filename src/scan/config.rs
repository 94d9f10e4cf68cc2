//! The `[scan]` section: [`ScanConfig`] with its [`Sensitivity`] presets and overrides, the
//! [`Thresholds`] in force, validation, and the settings a detector derives from them (allow
//! lists, alert levels, the action an alert announces, the startup description).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::alert::AlertAction;
use super::input::{Shape, Technique};
use super::record::Counts;
use crate::block::Blocklist;
use crate::proto::PortRange;
use crate::ratelimit::source_group;
use crate::source::SourcePrefix;
use crate::verdict::ProbeMode;

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
    /// `"host"` (default: the source, an address or IPv6 /64, see `[sources]`) or `"group"`
    /// (/24, /64).
    pub block_scope: BlockScope,
    /// First block duration, seconds (default 600).
    pub block_ttl: u64,
    /// Longest block for repeat offenders, seconds (default 86400).
    pub block_ttl_max: u64,
    /// What one scanner is: an IPv4 address, an IPv6 /64 by default (`[sources]`, set by the
    /// engine from its limits).
    #[serde(skip)]
    pub sources: SourcePrefix,
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
            sources: SourcePrefix::default(),
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

/// Settings a detector derives from its [`ScanConfig`].
#[derive(Debug)]
pub(super) struct Settings {
    /// The configuration as given.
    pub(super) cfg: ScanConfig,
    /// Its thresholds.
    pub(super) t: Thresholds,
    /// The `[probes]` answer mode, the action of alerts that do not block.
    pub(super) respond: ProbeMode,
    /// Records per source and technique: enough to reach level 4.
    pub(super) max_records_per_source: usize,
    /// Sources per shard.
    pub(super) max_sources: usize,
    /// Records per shard.
    pub(super) max_records: usize,
}

impl Settings {
    /// The settings of a detector for `cfg` with `shards` shards.
    pub(super) fn new(cfg: ScanConfig, respond: ProbeMode, shards: usize) -> Settings {
        let t = cfg.thresholds();
        let top = t.ports.max(t.hosts).max(t.rejects).max(t.stealth);
        let top_level = LEVELS[LEVELS.len() - 1] as usize;
        let max_records_per_source = (top as usize).saturating_mul(top_level).saturating_add(32);
        Settings {
            max_sources: (cfg.max_sources / shards).max(1),
            max_records: (cfg.max_records / shards).max(1),
            max_records_per_source,
            t,
            respond,
            cfg,
        }
    }

    /// The source `ip` belongs to, as its first address: what the detector keys on.
    pub(super) fn source(&self, ip: IpAddr) -> IpAddr {
        self.cfg.sources.key(ip)
    }

    /// False for traffic the configuration says never to count.
    pub(super) fn counts(&self, src: IpAddr, dst: IpAddr, port: u16) -> bool {
        let c = &self.cfg;
        c.enabled
            && !c.allow_sources.iter().any(|n| n.contains(&src))
            && !c.allow_targets.iter().any(|n| n.contains(&dst))
            && !c.allow_ports.iter().any(|p| p.contains(port))
    }

    /// The level reached by the counts of one host or port (0: none).
    pub(super) fn level(&self, shape: Shape, tech: Technique, c: Counts) -> u8 {
        let t = &self.t;
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

    /// What an alert of `level` about `src` announces, and what to block if it blocks: only
    /// an alert on `proven` evidence (completed handshakes, see `proof`) ever blocks.
    pub(super) fn action(
        &self,
        level: u8,
        src: IpAddr,
        proven: bool,
    ) -> (AlertAction, Option<IpNet>) {
        let c = &self.cfg;
        let blocks = c.block && proven && level >= c.block_level;
        let action = match (blocks, self.respond) {
            (true, _) => AlertAction::Block,
            (false, ProbeMode::Rst) => AlertAction::Rst,
            (false, ProbeMode::Drop) => AlertAction::Drop,
        };
        let block = blocks.then(|| match c.block_scope {
            BlockScope::Host => c.sources.net(src),
            BlockScope::Group => source_group(src),
        });
        (action, block)
    }

    /// One line for the daemon to print at startup.
    pub(super) fn describe(&self) -> String {
        let c = &self.cfg;
        if !c.enabled {
            return "scan detection: off".to_owned();
        }
        let t = &self.t;
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(",")
            }
        };
        let block = if c.block {
            format!(
                "block from level {} on completed handshakes only ({:?}, ttl {}s doubling up to {}s)",
                c.block_level, c.block_scope, c.block_ttl, c.block_ttl_max
            )
        } else {
            "no blocking".to_owned()
        };
        let levels: Vec<String> = LEVELS.iter().map(|m| format!("x{m}")).collect();
        format!(
            "scan detection: sensitivity={} window={}s ports={} hosts={} rejects={} stealth={} \
             answer_timeout={}s levels={} max_sources={} max_records={} \
             allow_sources={} allow_targets={} allow_ports={}; {block}; probes answered: {}",
            c.sensitivity.name(),
            t.window.as_secs(),
            t.ports,
            t.hosts,
            t.rejects,
            t.stealth,
            t.answer_timeout.as_secs(),
            levels.join("/"),
            c.max_sources,
            c.max_records,
            list(c.allow_sources.iter().map(ToString::to_string).collect()),
            list(c.allow_targets.iter().map(ToString::to_string).collect()),
            list(c.allow_ports.iter().map(ToString::to_string).collect()),
            self.respond,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::ScanDetector;

    #[test]
    fn describe_names_the_settings() {
        let cfg = ScanConfig {
            allow_ports: vec![PortRange::new(33434, 33534).expect("ordered")],
            ..Default::default()
        };
        cfg.validate().unwrap();
        let text = ScanDetector::new(cfg, ProbeMode::Rst).describe();
        assert!(text.starts_with("scan detection: sensitivity=medium window=90s ports=15 hosts=10 rejects=10 stealth=5"), "{text}");
        assert!(text.contains("allow_ports=33434-33534"), "{text}");
        assert!(text.contains("no blocking"), "{text}");
    }

    fn parse(toml: &str) -> Result<ScanConfig, ::config::ConfigError> {
        ::config::Config::builder()
            .add_source(::config::File::from_str(toml, ::config::FileFormat::Toml))
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
}
