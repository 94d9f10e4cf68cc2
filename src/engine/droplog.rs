//! Drop lines: which dropped packets get a [`Event::Drop`], within which rate limits, and the
//! [`Event::Suppressed`] report when the limits bite.
//!
//! The decision costs a bit test for a reason that is not logged and two token buckets for one
//! that is (per source group, /24 or /64, then global); the packet's fields are copied into
//! the event only once both said yes, so a flood of unlogged or rate-limited drops allocates
//! nothing. Suppressed lines (drop lines and rule `log` lines alike) are counted, and
//! [`Engine::on_timer`](super::Engine::on_timer) reports them at most every
//! [`SUPPRESSED_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Decision, Engine};
use crate::event::{DropEvent, Event, LoggedPacket, Suppressed};
use crate::packet::{Packet, PacketMeta};
use crate::ratelimit::{KeyedBuckets, Rate, TokenBucket};
use crate::time::Timestamp;
use crate::verdict::{DropReason, Verdict};

// One bit per reason in [`DropLog::reasons`].
const _: () = assert!(DropReason::ALL.len() <= 64);

/// The shortest time between two [`Event::Suppressed`] reports.
pub const SUPPRESSED_EVERY: Duration = Duration::from_secs(5);

/// Which drops get a line, and how many lines at most (`[syslog] drops`, `drop_rate`, ...).
///
/// The product's defaults (in [`crate::config::SyslogConfig`]) let a complete 100-port scan
/// of each of nmap's four TCP scan types from one source through in full (400 lines at once,
/// the per-source burst), then 20 lines a second per source group; 200 a second for all
/// sources together (bursts of 1000). [`Default`] here logs nothing (a library user opts in).
#[derive(Clone, Debug, PartialEq)]
pub struct DropLogConfig {
    /// Reasons whose drops are logged.
    pub reasons: Vec<DropReason>,
    /// Lines per second, all sources together.
    pub rate: Rate,
    /// Burst of lines, all sources together.
    pub burst: u32,
    /// Lines per second from one source group (/24 or /64).
    pub source_rate: Rate,
    /// Burst of lines from one source group.
    pub source_burst: u32,
    /// Source groups tracked at once.
    pub max_sources: usize,
}

impl Default for DropLogConfig {
    fn default() -> Self {
        DropLogConfig {
            reasons: Vec::new(),
            rate: Rate::per_sec(200.0),
            burst: 1000,
            source_rate: Rate::per_sec(20.0),
            source_burst: 400,
            max_sources: 4096,
        }
    }
}

/// The reasons that are logged, the limits, and the suppressed lines not yet reported.
#[derive(Debug)]
pub(super) struct DropLog {
    /// Bit `reason as usize` set: logged.
    reasons: u64,
    global: TokenBucket,
    per_source: KeyedBuckets,
    /// Lines suppressed since the last report.
    suppressed: AtomicU64,
    /// When the last report was made, or when the quiet period before the first began (ns).
    since: AtomicU64,
}

impl DropLog {
    pub(super) fn new(cfg: &DropLogConfig) -> DropLog {
        DropLog {
            reasons: cfg
                .reasons
                .iter()
                .fold(0, |bits, r| bits | (1u64 << (*r as u32))),
            global: TokenBucket::new(cfg.rate, cfg.burst),
            per_source: KeyedBuckets::new(cfg.source_rate, cfg.source_burst, cfg.max_sources),
            suppressed: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    fn logs(&self, reason: DropReason) -> bool {
        self.reasons & (1u64 << (reason as u32)) != 0
    }

    /// Takes a token for one line from `src`: its group's bucket, then the global one.
    fn take(&self, src: std::net::IpAddr, now: Timestamp) -> bool {
        self.per_source.try_take(src, now) && self.global.try_take(now)
    }

    /// Counts a line the limits suppressed.
    pub(super) fn suppress(&self) {
        self.suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// The report of the lines suppressed since the last one, when there are some and the
    /// last report is at least [`SUPPRESSED_EVERY`] old.
    pub(super) fn report(&self, now: Timestamp) -> Option<Suppressed> {
        let since = self.since.load(Ordering::Relaxed);
        let every = u64::try_from(SUPPRESSED_EVERY.as_nanos()).unwrap_or(u64::MAX);
        if now.as_nanos().saturating_sub(since) < every {
            return None;
        }
        let lines = self.suppressed.swap(0, Ordering::Relaxed);
        if lines == 0 {
            return None;
        }
        self.since.store(now.as_nanos(), Ordering::Relaxed);
        let seconds = now.as_nanos().saturating_sub(since) / 1_000_000_000;
        Some(Suppressed { lines, seconds })
    }
}

impl Engine {
    /// Adds the drop line of a dropped packet to `d`, if its reason is logged and the limits
    /// leave room. Called once per packet: by the admission for policy drops and rejects that
    /// no `log` rule reports (and for mid-stream segments pickup refuses), by
    /// [`Engine::process`] for every other reason.
    pub(super) fn log_drop(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        d: &mut Decision,
        now: Timestamp,
    ) {
        let Verdict::Drop(reason) = d.verdict else {
            return;
        };
        if !self.drop_log.logs(reason) {
            return;
        }
        if !self.drop_log.take(pkt.src, now) {
            self.drop_log.suppress();
            self.counters.logs_suppressed();
            return;
        }
        d.events.push(Event::Drop(DropEvent {
            reason,
            packet: LoggedPacket::of(pkt, meta),
            line: true,
        }));
    }
}
