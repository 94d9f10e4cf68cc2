//! The daemon's side of the control socket: status, counters, connection listing, rule
//! reload (shared with SIGHUP), kill, block, rule hits and the event stream, answered from the
//! running engine; and the snapshot the metrics listener renders.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

use crate::config::{ReloadMode, Settings};
use crate::conntrack::RuleTag;
use crate::control::protocol::{BlockReport, KillReport, RuleEntry};
use crate::control::server::EventFeed;
use crate::control::{
    BlockEntry, ConnEntry, ConnFilter, ControlHandler, HaReport, QueueStatus, ReloadFailure,
    ReloadReport, StatsReport, Status,
};
use crate::daemon::ha::Adopter;
use crate::daemon::{load_policy, DaemonError};
use crate::engine::Engine;
use crate::io::actions::ActionHandler;
use crate::io::events::{json, EventHub, Subscription};
use crate::io::metrics::{MetricsSource, RuleHits, Snapshot};
use crate::io::queue::QueueCounters;
use crate::rules::RuleInfo;
use crate::time::Timestamp;
use crate::verdict::DropReason;

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
    /// The event stream.
    hub: Arc<EventHub>,
    /// Reloads that succeeded.
    reloads_ok: AtomicU64,
    /// Reloads that failed (the running rules stayed).
    reloads_failed: AtomicU64,
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
        hub: Arc<EventHub>,
    ) -> DaemonControl {
        DaemonControl {
            settings,
            engine,
            counters,
            start,
            actions,
            loaded_at: Mutex::new(unix_now()),
            reload_lock: Mutex::new(()),
            hub,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
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
            for event in &r.events {
                self.actions.report(event);
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

    fn conns(&self, filter: &ConnFilter) -> Vec<ConnEntry> {
        let list = self.engine.connections(self.now(), |c| filter.matches(c));
        let mut rules = RuleNames::default();
        list.into_iter()
            .map(|c| {
                let rule = rules.get(&self.engine, c.rule);
                ConnEntry::new(c, rule.as_deref())
            })
            .collect()
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
        let events = self.engine.unblock(addr, self.now());
        let lifted = !events.is_empty();
        for event in &events {
            // Unblock events go where block events go: the log, syslog and the event stream.
            self.actions.report(event);
        }
        Ok(lifted)
    }

    fn kill(&self, filter: &ConnFilter) -> KillReport {
        let kill = self
            .engine
            .kill(self.now(), |record| filter.matches_record(record));
        let rsts = kill.actions.len() as u64;
        for action in kill.actions {
            self.actions.perform(action);
        }
        for event in &kill.events {
            self.actions.report(event);
        }
        tracing::info!(killed = kill.killed, rsts, "connections killed");
        KillReport {
            killed: kill.killed,
            rsts,
        }
    }

    fn block(&self, net: IpNet, ttl_secs: u64) -> Result<BlockReport, String> {
        let ttl = Duration::from_secs(ttl_secs);
        let events = self
            .engine
            .block(net, ttl, self.now())
            .map_err(|e| e.to_string())?;
        for event in &events {
            self.actions.report(event);
        }
        Ok(BlockReport {
            net: net.trunc(),
            ttl_secs,
        })
    }

    fn rules(&self) -> Vec<RuleEntry> {
        let (policy, conns) = self.engine.rule_counts(self.now(), true);
        let mut list: Vec<RuleEntry> = policy
            .rules()
            .map(|r| RuleEntry {
                rule: format!("{}:{}", r.file, r.line),
                action: r.action.to_string(),
                label: r.label.clone(),
                text: r.text.clone(),
                hits: policy.hits(r.id),
                conns: conns.get(r.id).copied().unwrap_or(0),
            })
            .collect();
        list.push(RuleEntry {
            rule: "default".into(),
            action: policy.default_action().to_string(),
            label: None,
            text: format!("policy {}", policy.default_action()),
            hits: policy.default_hits(),
            conns: 0,
        });
        list
    }

    fn events(&self) -> Result<Box<dyn EventFeed>, String> {
        Ok(Box::new(Feed(self.hub.subscribe(EVENTS_PER_READER))))
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

/// Events a reader of `statewall events` may have waiting; more are lost (counted and told).
pub const EVENTS_PER_READER: usize = 8192;

/// A reader of the event stream, as the control socket sees it.
struct Feed(Subscription);

impl EventFeed for Feed {
    fn poll(&mut self, out: &mut Vec<String>, max: usize) {
        let lost = self.0.take_lost();
        if lost > 0 {
            out.push(json::lost(lost, SystemTime::now()).to_string());
        }
        while out.len() < max {
            let Some(ev) = self.0.next() else {
                break;
            };
            out.push(json::to_json(&ev).to_string());
        }
    }
}

/// Resolves rule tags to rules, remembering the last one (a listing names the same few rules
/// over and over).
#[derive(Default)]
struct RuleNames {
    last: Option<(RuleTag, Option<Arc<RuleInfo>>)>,
}

impl RuleNames {
    fn get(&mut self, engine: &Engine, tag: RuleTag) -> Option<Arc<RuleInfo>> {
        if let Some((t, r)) = &self.last {
            if *t == tag {
                return r.clone();
            }
        }
        let r = engine.rule_info(tag);
        self.last = Some((tag, r.clone()));
        r
    }
}

impl MetricsSource for DaemonControl {
    fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let stats = self.engine.stats();
        let (policy, _) = self.engine.rule_counts(now, false);
        let mut rules: Vec<RuleHits> = policy
            .rules()
            .map(|r| RuleHits {
                rule: format!("{}:{}", r.file, r.line),
                action: r.action.to_string(),
                label: r.label.clone().unwrap_or_default(),
                hits: policy.hits(r.id),
            })
            .collect();
        rules.push(RuleHits {
            rule: "default".into(),
            action: policy.default_action().to_string(),
            label: String::new(),
            hits: policy.default_hits(),
        });
        let drops = DropReason::ALL
            .iter()
            .map(|r| {
                let n = stats
                    .drops
                    .iter()
                    .find(|(name, _)| name == r.name())
                    .map_or(0, |(_, n)| *n);
                (r.name(), n)
            })
            .collect();
        Snapshot {
            drops,
            states: self.engine.state_counts(now),
            family_entries: self.engine.family_entries(),
            limit: self.settings.conntrack.max_entries as u64,
            rules,
            scan_alerts: self.actions.scan_alerts.load(Ordering::Relaxed),
            blocks_active: self.engine.blocks(now).len() as u64,
            queues: self.counters.iter().map(|(n, c)| c.snapshot(*n)).collect(),
            kernel: crate::io::queue::kernel_stats(),
            reloads: (
                self.reloads_ok.load(Ordering::Relaxed),
                self.reloads_failed.load(Ordering::Relaxed),
            ),
            events: self.hub.stats(),
            stats,
        }
    }
}
