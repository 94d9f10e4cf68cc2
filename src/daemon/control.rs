//! The daemon's side of the control socket: status, counters, connection listing and rule
//! reload (shared with SIGHUP), answered from the running engine.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{ReloadMode, Settings};
use crate::conntrack::ConnInfo;
use crate::control::{
    BlockEntry, ConnFilter, ControlHandler, HaReport, QueueStatus, ReloadFailure, ReloadReport,
    StatsReport, Status,
};
use crate::daemon::ha::Adopter;
use crate::daemon::{load_policy, DaemonError};
use crate::engine::Engine;
use crate::io::actions::ActionHandler;
use crate::io::queue::QueueCounters;
use crate::time::Timestamp;

/// Answers control requests for a running daemon.
pub struct DaemonControl {
    settings: Settings,
    engine: Arc<Engine>,
    counters: Vec<(u16, Arc<QueueCounters>)>,
    start: Instant,
    /// Performs the RSTs of a recheck.
    actions: Arc<ActionHandler>,
    /// When the rules in force were loaded (unix seconds).
    loaded_at: Mutex<Option<u64>>,
    /// Serialises reloads (SIGHUP and the socket).
    reload_lock: Mutex<()>,
    /// Adoption from the kernel table (`takeover`, `standby`); none with `notrack`.
    adopter: Option<Arc<Adopter>>,
}

fn unix_now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

impl DaemonControl {
    /// A handler over the running engine; the rules in force were just loaded.
    pub fn new(
        settings: Settings,
        engine: Arc<Engine>,
        counters: Vec<(u16, Arc<QueueCounters>)>,
        start: Instant,
        actions: Arc<ActionHandler>,
    ) -> DaemonControl {
        DaemonControl {
            settings,
            engine,
            counters,
            start,
            actions,
            loaded_at: Mutex::new(unix_now()),
            reload_lock: Mutex::new(()),
            adopter: None,
        }
    }

    /// The handler answers `takeover` and `standby` through `adopter`.
    pub fn with_adopter(mut self, adopter: Option<Arc<Adopter>>) -> DaemonControl {
        self.adopter = adopter;
        self
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.start.elapsed())
    }

    /// Loads the rule file again and swaps it in; a file with errors keeps the running rules.
    /// With `[reload] mode = "recheck"`, tracked connections the new rules refuse are closed.
    pub fn do_reload(&self) -> Result<ReloadReport, ReloadFailure> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let policy = load_policy(&self.settings).map_err(|e| match e {
            DaemonError::Rules(r) => ReloadFailure {
                message: format!(
                    "{}: {} error(s); the running rules stay in force",
                    r.file.display(),
                    r.errors.len()
                ),
                errors: r.errors,
                sources: r.files,
            },
            other => ReloadFailure {
                message: other.to_string(),
                errors: Vec::new(),
                sources: Vec::new(),
            },
        })?;
        let rules = policy.rule_count();
        self.engine.set_policy(Arc::clone(&policy));
        let revoked = if self.settings.reload.mode == ReloadMode::Recheck {
            let r = self.engine.recheck(&policy, self.now());
            for action in r.actions {
                self.actions.perform(action);
            }
            r.revoked
        } else {
            0
        };
        *self.loaded_at.lock().unwrap_or_else(|p| p.into_inner()) = unix_now();
        tracing::info!(rules, revoked, "rules reloaded");
        Ok(ReloadReport {
            rules_file: self.settings.rules.clone(),
            rules,
            warnings: Vec::new(),
            revoked,
        })
    }
}

impl ControlHandler for DaemonControl {
    fn status(&self) -> Status {
        let stats = self.engine.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_secs: self.start.elapsed().as_secs(),
            rules_file: self.settings.rules.clone(),
            rules_loaded_at: *self.loaded_at.lock().unwrap_or_else(|p| p.into_inner()),
            rules: self.engine.policy().rule_count(),
            entries: stats.entries,
            max_entries: self.settings.conntrack.max_entries as u64,
            blocked: self.engine.blocks(self.now()).len() as u64,
            queues: self
                .counters
                .iter()
                .map(|(num, c)| QueueStatus {
                    queue: *num,
                    packets: load(&c.packets),
                    accepted: load(&c.accepted),
                    dropped: load(&c.dropped),
                    errors: load(&c.recv_errors) + load(&c.verdict_errors),
                })
                .collect(),
            drops: stats.drops.into_iter().collect(),
            role: self.engine.role(self.now()).to_string(),
        }
    }

    fn stats(&self) -> StatsReport {
        StatsReport::new(self.engine.stats(), self.engine.state_counts(self.now()))
    }

    fn conns(&self, filter: &ConnFilter) -> Vec<ConnInfo> {
        self.engine.connections(self.now(), |c| filter.matches(c))
    }

    fn reload(&self) -> Result<ReloadReport, ReloadFailure> {
        self.do_reload()
    }

    fn blocks(&self) -> Vec<BlockEntry> {
        self.engine
            .blocks(self.now())
            .into_iter()
            .map(|b| BlockEntry {
                net: b.net,
                src: b.src,
                reason: b.reason,
                level: b.level,
                ttl_secs: b.ttl.as_secs(),
                remaining_secs: b.remaining.as_secs(),
            })
            .collect()
    }

    fn unblock(&self, addr: IpAddr) -> Result<bool, String> {
        let events = self.engine.unblock(addr, self.now())?;
        let lifted = !events.is_empty();
        for event in &events {
            // Unblock events go where block events go: the log and syslog.
            self.actions.report(event);
        }
        Ok(lifted)
    }

    fn takeover(&self) -> Result<HaReport, String> {
        match &self.adopter {
            Some(a) => a.take_over(),
            None => Err(
                "kernel connection tracking is off ([netfilter] notrack): nothing to \
                         adopt from"
                    .into(),
            ),
        }
    }

    fn standby(&self) -> Result<HaReport, String> {
        match &self.adopter {
            Some(a) => Ok(a.stand_by()),
            None => Err(
                "kernel connection tracking is off ([netfilter] notrack): a standby \
                         could not adopt anything"
                    .into(),
            ),
        }
    }
}
