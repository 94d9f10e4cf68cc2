//! Settings: a TOML file plus `STATEWALL_SECTION__KEY` environment overrides, through the
//! `config` crate, deserialised into typed sections and validated. Unknown keys are errors.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::conntrack::{Limits, Offload, Timeouts};
use crate::engine::EngineConfig;
mod observe;
mod syslog;

use crate::marks::ConnMarks;
use crate::ratelimit::ProbesConfig;
use crate::scan::ScanConfig;
use crate::source::SourcePrefix;
pub use observe::{EventsSection, MetricsSection};
pub use syslog::{Facility, Format, SyslogConfig, SyslogConfigError, Target};

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is missing, unreadable or not TOML, or a key has the wrong type or is unknown.
    #[error("{path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What the parser said (it names the key).
        message: String,
    },
    /// A key has a value outside its range.
    #[error("{path}: invalid value for `{key}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The key, dotted.
        key: &'static str,
        /// Why.
        message: String,
    },
}

/// Netfilter hooks statewall can divert.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// Forwarded packets (the gateway's job).
    Forward,
    /// Packets to the gateway itself.
    Input,
    /// Packets from the gateway itself.
    Output,
}

impl Hook {
    /// The iptables chain name.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Forward => "FORWARD",
            Hook::Input => "INPUT",
            Hook::Output => "OUTPUT",
        }
    }
}

/// `[queue]`: the NFQUEUE side.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// First queue number.
    pub first: u16,
    /// Number of queues (one worker thread each).
    pub count: u16,
    /// Bytes of each packet copied to statewall: headers only.
    pub copy_range: u16,
    /// Receive GSO super-packets unsegmented.
    pub gso: bool,
    /// Kernel queue length (packets waiting for a verdict).
    pub max_len: u32,
    /// When the queue is full or statewall is not running, let packets through
    /// (`--queue-bypass` / fail-open) instead of dropping them.
    pub fail_open: bool,
    /// With several queues, pick a packet's queue by the CPU that handles it
    /// (`--queue-cpu-fanout`) instead of by a hash of its addresses.
    pub cpu_fanout: bool,
    /// Packets taken from the kernel per receive system call at most (`recvmmsg`).
    pub recv_batch: usize,
    /// Verdicts held before they are sent to the kernel together.
    pub verdict_batch: usize,
    /// Microseconds the oldest held verdict may wait for more (held verdicts are sent anyway
    /// as soon as no packet is waiting).
    pub verdict_delay_us: u64,
    /// Receive buffer of each queue's socket, bytes (0: sized to hold `max_len` packets,
    /// [`crate::io::queue::recv_buffer_for`]).
    pub recv_buffer: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            first: 0,
            count: 1,
            copy_range: 256,
            gso: true,
            max_len: 1024,
            fail_open: false,
            cpu_fanout: true,
            recv_batch: 16,
            verdict_batch: 32,
            verdict_delay_us: 200,
            recv_buffer: 0,
        }
    }
}

/// `[netfilter]`: the iptables rules statewall installs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NetfilterSection {
    /// Install and remove the rules (false: print them with `statewall print-rules`).
    pub manage: bool,
    /// Hooks to divert.
    pub hooks: Vec<Hook>,
    /// Skip kernel connection tracking for diverted traffic (raw table NOTRACK). Faster; not
    /// compatible with NAT on the same traffic.
    pub notrack: bool,
    /// Firewall mark on statewall's own packets (RSTs, ICMP errors): never queued.
    pub mark: u32,
    /// What happens to the rules when statewall exits, for whatever reason.
    pub on_stop: OnStop,
    /// The two bits of the connection mark that belong to statewall (the lower: ADMITTED, the
    /// upper: FASTPATH; see [`crate::marks`]).
    pub connmark_mask: u32,
}

/// `[netfilter] on_stop`: whether the diversion outlives the daemon.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnStop {
    /// Leave the rules in place (fail closed): traffic waits for the next statewall — dropped
    /// by the kernel while none listens, or passed unjudged with `fail_open = true`.
    #[default]
    Keep,
    /// Remove the rules: traffic is forwarded unjudged until the next start.
    Remove,
}

impl Default for NetfilterSection {
    fn default() -> Self {
        NetfilterSection {
            manage: true,
            hooks: vec![Hook::Forward],
            notrack: false,
            mark: 0x5717,
            on_stop: OnStop::Keep,
            connmark_mask: ConnMarks::DEFAULT_MASK,
        }
    }
}

impl NetfilterSection {
    /// The connection mark layout (valid once the settings are validated).
    pub fn marks(&self) -> ConnMarks {
        ConnMarks::new(self.connmark_mask, self.mark).unwrap_or_default()
    }
}

/// `[ha]`: this gateway is one of a pair (docs/ha.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HaSection {
    /// Start as the standby: adopt the flows the kernel table holds with the ADMITTED bit
    /// (replicated there by conntrackd) as they appear, and drop unknown mid-stream segments
    /// silently until `statewall takeover`.
    pub enable: bool,
    /// Seconds after a takeover during which mid-stream TCP segments of
    /// unknown flows are dropped silently, since their flow's replication may be late.
    pub takeover_window: u64,
    /// The virtual addresses keepalived moves between the pair: when one of them leaves this
    /// host (rtnetlink `RTM_DELADDR`), statewall stands by at once instead of waiting for
    /// keepalived's BACKUP notification, which runs after the peer took the address. Empty:
    /// the notification alone.
    pub addresses: Vec<std::net::IpAddr>,
}

impl Default for HaSection {
    fn default() -> Self {
        HaSection {
            enable: false,
            takeover_window: 10,
            addresses: Vec::new(),
        }
    }
}

/// `[offload]`: the kernel fast path for flows statewall has validated (docs/performance.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OffloadSection {
    /// Let the kernel forward the middle of validated flows (packets without SYN, FIN or RST
    /// of connections the kernel calls ESTABLISHED) without queueing them to statewall. Needs
    /// kernel connection tracking: off with `[netfilter] notrack = true`.
    pub enable: bool,
    /// TCP: segments each direction must have sent after the handshake before the flow is
    /// offloaded (1 to 7).
    pub tcp_segments: u8,
    /// UDP, ICMP echo and other protocols: offloaded once replied.
    pub datagrams: bool,
    /// Seconds between two passes over the kernel's fast-path flows (their entries refreshed,
    /// flows statewall no longer holds handed back); a block or a recheck runs one at once.
    pub refresh: u64,
}

impl Default for OffloadSection {
    fn default() -> Self {
        OffloadSection {
            enable: true,
            tcp_segments: 7,
            datagrams: true,
            refresh: 10,
        }
    }
}

/// `[control]`: the control socket.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Unix socket path.
    pub socket: PathBuf,
    /// Group allowed to use the socket (mode 0660); none: root only (0600).
    pub group: Option<String>,
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection {
            socket: PathBuf::from("/run/statewall/control.sock"),
            group: None,
        }
    }
}

/// `[conntrack]`: table limits, timeouts and restart pickup.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackSection {
    /// Maximum tracked connections.
    pub max_entries: usize,
    /// Maximum open connections per source (0: a tenth of `max_entries`).
    pub per_source: usize,
    /// Entries examined to find one to evict when the table is full.
    pub early_drop_scan: usize,
    /// Seconds after a restart during which mid-stream TCP flows are adopted (0: never).
    pub pickup_grace: u64,
    /// Per-state timeouts, seconds.
    pub timeouts: Timeouts,
}

impl Default for ConntrackSection {
    fn default() -> Self {
        let l = Limits::default();
        ConntrackSection {
            max_entries: l.max_entries,
            per_source: l.per_source,
            early_drop_scan: l.early_drop_scan,
            pickup_grace: 60,
            timeouts: Timeouts::default(),
        }
    }
}

/// `[log]`: operational logging (stderr / journald).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    pub level: String,
    /// Seconds between periodic stats lines (0: none).
    pub stats_interval: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            stats_interval: 60,
        }
    }
}

/// What a reload does with tracked connections.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReloadMode {
    /// Tracked connections stay whatever the new rules say.
    #[default]
    Keep,
    /// Tracked connections the new rules would not allow are closed.
    Recheck,
}

/// `[reload]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    /// `keep` or `recheck`.
    pub mode: ReloadMode,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Rule file; none: every new connection is allowed (state validation still applies).
    pub rules: Option<PathBuf>,
    /// `[queue]`.
    pub queue: QueueSection,
    /// `[netfilter]`.
    pub netfilter: NetfilterSection,
    /// `[control]`.
    pub control: ControlSection,
    /// `[conntrack]`.
    pub conntrack: ConntrackSection,
    /// `[log]`.
    pub log: LogSection,
    /// `[reload]`.
    pub reload: ReloadSection,
    /// `[probes]`: answers to out-of-state probes and their rate limits.
    pub probes: ProbesConfig,
    /// `[scan]`: scan detection and automatic blocking.
    pub scan: ScanConfig,
    /// `[sources]`: what one source is (IPv4 and IPv6 prefix lengths), for the per-source
    /// connection limit, scan tracking, host blocks and the answer rate limits.
    pub sources: SourcePrefix,
    /// `[syslog]`: where alerts go.
    pub syslog: SyslogConfig,
    /// `[ha]`: one gateway of a pair.
    pub ha: HaSection,
    /// `[offload]`: the kernel fast path.
    pub offload: OffloadSection,
    /// `[metrics]`: the Prometheus listener.
    pub metrics: MetricsSection,
    /// `[events]`: the JSON event log.
    pub events: EventsSection,
}

impl Settings {
    /// Loads `path` (TOML) with `STATEWALL_*` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        // Read the file ourselves so a missing or unreadable file gets a plain message.
        let text = crate::files::read_regular(path, crate::files::MAX_FILE).map_err(|e| {
            ConfigError::Load {
                path: shown.clone(),
                message: e.to_string(),
            }
        })?;
        Self::from_text(&text, &shown, env)
    }

    /// Settings from TOML `text` (named `shown` in errors), without environment overrides,
    /// validated.
    pub fn from_toml(text: &str, shown: &str) -> Result<Settings, ConfigError> {
        Self::from_text(text, shown, Some(std::collections::HashMap::new()))
    }

    fn from_text(
        text: &str,
        shown: &str,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let load_err = |e: config::ConfigError| ConfigError::Load {
            path: shown.to_string(),
            message: e.to_string(),
        };
        let env_source = config::Environment::with_prefix("STATEWALL")
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("netfilter.hooks")
            .try_parsing(true)
            .source(env);
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(env_source)
            .build()
            .map_err(load_err)?
            .try_deserialize()
            .map_err(load_err)?;
        settings.validate(shown)?;
        Ok(settings)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                path: path.to_string(),
                key,
                message: message.to_string(),
            })
        };
        let q = &self.queue;
        if q.count == 0 {
            return bad("queue.count", "must be at least 1");
        }
        if u32::from(q.first) + u32::from(q.count) - 1 > u32::from(u16::MAX) {
            return bad("queue.count", "queue numbers go beyond 65535");
        }
        if q.copy_range < 60 {
            return bad(
                "queue.copy_range",
                "must be at least 60 bytes (IPv6 + TCP headers)",
            );
        }
        if q.max_len == 0 {
            return bad("queue.max_len", "must be at least 1");
        }
        if !(1..=Offload::MAX_TCP_SEGMENTS).contains(&self.offload.tcp_segments) {
            return bad("offload.tcp_segments", "must be 1 to 7");
        }
        if !(1..=60).contains(&self.offload.refresh) {
            return bad("offload.refresh", "must be 1 to 60 seconds");
        }
        if !(1..=nfq::RECV_BATCH_MAX).contains(&q.recv_batch) {
            return bad("queue.recv_batch", "must be 1 to 64");
        }
        if !(1..=1024).contains(&q.verdict_batch) {
            return bad("queue.verdict_batch", "must be 1 to 1024");
        }
        if q.verdict_delay_us > 100_000 {
            return bad("queue.verdict_delay_us", "at most 100000 (0.1 s)");
        }
        if q.recv_buffer > 1 << 30 {
            return bad("queue.recv_buffer", "at most 1 GiB");
        }
        if let Err(e) = ConnMarks::new(self.netfilter.connmark_mask, self.netfilter.mark) {
            return bad("netfilter.connmark_mask", &e.to_string());
        }
        if self.ha.enable && self.netfilter.notrack {
            return bad(
                "ha.enable",
                "a pair of gateways needs kernel connection tracking: the kernel table is what \
                 conntrackd replicates and what the new master adopts (set [netfilter] notrack = \
                 false)",
            );
        }
        if self.ha.takeover_window > 3600 {
            return bad("ha.takeover_window", "at most 3600 seconds");
        }
        if !self.ha.enable && !self.ha.addresses.is_empty() {
            return bad(
                "ha.addresses",
                "the virtual addresses of a pair need [ha] enable = true",
            );
        }
        if self.netfilter.hooks.is_empty() {
            return bad(
                "netfilter.hooks",
                "needs at least one of forward, input, output",
            );
        }
        if self.conntrack.max_entries == 0 {
            return bad("conntrack.max_entries", "must be at least 1");
        }
        if self.conntrack.early_drop_scan == 0 {
            return bad("conntrack.early_drop_scan", "must be at least 1");
        }
        if self.control.socket.as_os_str().is_empty() {
            return bad("control.socket", "must not be empty");
        }
        let section = |e: String| ConfigError::Load {
            path: path.to_string(),
            message: e,
        };
        self.probes.validate().map_err(|e| section(e.to_string()))?;
        self.scan.validate().map_err(|e| section(e.to_string()))?;
        self.sources
            .validate()
            .map_err(|e| section(e.to_string()))?;
        self.syslog.validate().map_err(|e| section(e.to_string()))?;
        self.events.validate().map_err(section)?;
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            return bad("log.level", "not a log level or filter directive");
        }
        Ok(())
    }

    /// Whether the kernel fast path is in force: enabled, and the kernel tracks the diverted
    /// traffic (with NOTRACK it has no connection to carry).
    pub fn offload_active(&self) -> bool {
        self.offload.enable && !self.netfilter.notrack
    }

    /// The engine part of the settings.
    pub fn engine(&self) -> EngineConfig {
        let c = &self.conntrack;
        EngineConfig {
            timeouts: c.timeouts.clone(),
            limits: Limits {
                max_entries: c.max_entries,
                per_source: c.per_source,
                early_drop_scan: c.early_drop_scan,
                sources: self.sources,
            },
            probes: self.probes.clone(),
            scan: self.scan.enabled.then(|| self.scan.clone()),
            offload: Offload {
                enable: self.offload_active(),
                tcp_segments: self.offload.tcp_segments,
                datagrams: self.offload.datagrams,
            },
            drop_log: self.syslog.drop_log(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn file(text: &str) -> tempfile_lite::TempFile {
        let f = tempfile_lite::TempFile::new("toml");
        std::fs::File::create(&f.path)
            .and_then(|mut h| h.write_all(text.as_bytes()))
            .expect("write temp file");
        f
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let f = file(text);
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(&f.path, Some(env))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let s = load("", &[]).expect("valid");
        assert_eq!(s, Settings::default());
        assert_eq!(s.queue.copy_range, 256);
        assert_eq!(s.netfilter.hooks, vec![Hook::Forward]);
        assert_eq!(s.conntrack.pickup_grace, 60);
    }

    #[test]
    fn file_and_env_overrides() {
        let s = load(
            "rules = \"/etc/statewall/gateway.rules\"\n[queue]\ncount = 2\n[conntrack.timeouts]\nestablished = 3600\n",
            &[
                ("STATEWALL_QUEUE__FIRST", "5"),
                ("STATEWALL_NETFILTER__HOOKS", "forward,input"),
                ("STATEWALL_CONNTRACK__TIMEOUTS__TIME_WAIT", "30"),
            ],
        )
        .expect("valid");
        assert_eq!(s.queue.count, 2);
        assert_eq!(s.queue.first, 5);
        assert_eq!(s.netfilter.hooks, vec![Hook::Forward, Hook::Input]);
        assert_eq!(s.conntrack.timeouts.established, 3600);
        assert_eq!(s.conntrack.timeouts.time_wait, 30);
        assert_eq!(
            s.rules.as_deref(),
            Some(Path::new("/etc/statewall/gateway.rules"))
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = load("[queue]\ncopyrange = 10\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("copyrange"), "{e}");
        let e = load("", &[("STATEWALL_QUEUE__BOGUS", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = load("[queue]\ncount = \"many\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("count"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load("[queue]\ncount = 0\n", &[]).unwrap_err().to_string();
        assert!(e.contains("queue.count"), "{e}");
        let e = load("[queue]\ncopy_range = 20\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue.copy_range"), "{e}");
        let e = load("[netfilter]\nhooks = [\"prerouting\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("prerouting"), "{e}");
    }

    #[test]
    fn connmark_mask_is_two_bits_clear_of_the_own_mark() {
        let s = load("", &[]).expect("valid");
        assert_eq!(s.netfilter.connmark_mask, 0x3000_0000);
        assert_eq!(s.netfilter.marks().admitted(), 0x1000_0000);
        let s = load("[netfilter]\nconnmark_mask = 0xc0000000\n", &[]).expect("valid");
        assert_eq!(s.netfilter.marks().admitted(), 0x4000_0000);
        for bad in ["0x10000000", "0x70000000", "0x00000011"] {
            let e = load(&format!("[netfilter]\nconnmark_mask = {bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("netfilter.connmark_mask"), "{e}");
        }
    }

    #[test]
    fn ha_needs_kernel_conntrack() {
        let s = load("[ha]\nenable = true\n", &[]).expect("valid");
        assert!(s.ha.enable);
        assert_eq!(s.ha.takeover_window, 10);
        let e = load("[netfilter]\nnotrack = true\n[ha]\nenable = true\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ha.enable") && e.contains("notrack"), "{e}");
        let e = load("[ha]\ntakeover_window = 7200\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ha.takeover_window"), "{e}");
        let s = load(
            "[ha]\nenable = true\naddresses = [\"198.51.100.1\", \"2001:db8:1::1\"]\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            s.ha.addresses,
            [
                "198.51.100.1".parse::<std::net::IpAddr>().unwrap(),
                "2001:db8:1::1".parse().unwrap()
            ]
        );
        let e = load("[ha]\naddresses = [\"198.51.100.1\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ha.addresses"), "{e}");
        let e = load("[ha]\nenable = true\naddresses = [\"gw-a\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("addresses"), "{e}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = Settings::load(Path::new("/nonexistent/statewall.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/statewall.toml"), "{e}");
    }

    /// A temporary file removed on drop (no extra dependency).
    mod tempfile_lite {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct TempFile {
            pub path: PathBuf,
        }

        impl TempFile {
            pub fn new(ext: &str) -> TempFile {
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let path = std::env::temp_dir()
                    .join(format!("statewall-test-{}-{n}.{ext}", std::process::id()));
                TempFile { path }
            }
        }

        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
