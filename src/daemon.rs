//! `statewall run`: the daemon wiring.
//!
//! Start-up order matters for traffic that is already flowing:
//! 1. load the rules (a broken file stops the start, nothing is touched);
//! 2. detect a restart (see [`restart_detected`]);
//! 3. open and bind every queue (so that no packet is queued to a queue nobody reads);
//! 4. flows established before this process: adopted from the kernel table after a restart,
//!    or watched there as the standby of a pair ([`ha`]); blind pickup only without kernel
//!    tracking (a pair gateway that cannot read the kernel table stops here, nothing touched);
//! 5. open the control socket (a client that waits for the netfilter rules can talk to the
//!    daemon the moment they appear; until the workers start it sees zero counters), then the
//!    JSON event log and the metrics listener when configured;
//! 6. install the netfilter rules (removing leftovers of a killed run first);
//! 7. start the workers and the timer, tell systemd `READY=1`.
//!
//! Then the main thread waits for events: SIGHUP reloads the rules, SIGTERM/SIGINT log a final
//! stats line and return (workers blocked in `recv` end with the process). A worker that fails
//! for good (or dies) also ends the daemon (exit status 1), so that systemd restarts it; so
//! does a setup error after the rules were installed.
//!
//! **Every exit leaves the diversion in place** (fail closed: traffic waits for the next
//! statewall), unless `[netfilter] on_stop = "remove"`; the log says which of the two
//! happened. `statewall cleanup` removes the rules explicitly. A start replaces an earlier
//! run's rules in one transaction per family, so a restart has no moment without them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use thiserror::Error;

mod control;
pub mod ha;
pub mod health;
mod logging;
pub mod offload;

pub use control::DaemonControl;
pub use logging::init_logging;

use crate::config::{OnStop, Settings};
use crate::engine::{Engine, Stats};
use crate::io::actions::ActionHandler;
use crate::io::events::{log::EventLog, EventHub};
use crate::io::metrics::{MetricsServer, MetricsSource};
use crate::io::netfilter::{self, NetfilterError, Plan};
use crate::io::queue::{self, KernelQueueStats, QueueCounters, QueueError, QueueStats, Worker};
use crate::rules::Policy;
use crate::time::Timestamp;

/// Why the daemon could not start or had to stop.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The rule file cannot be used.
    #[error("rules: {0}")]
    Rules(RuleErrors),
    /// A queue could not be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// An iptables command failed.
    #[error(transparent)]
    Netfilter(#[from] NetfilterError),
    /// The runtime directory is not usable.
    #[error("runtime directory {path}: {source}")]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handlers or threads could not be set up.
    #[error("cannot {what}: {source}")]
    Setup {
        /// What failed.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel conntrack table cannot be read (a gateway of a pair needs it).
    #[error("kernel conntrack table: {0}")]
    Kernel(#[from] crate::io::ctnetlink::CtError),
    /// The watch of the pair's virtual addresses (`[ha] addresses`) could not start.
    #[error("[ha] addresses: {0}")]
    AddrWatch(#[from] crate::io::addr_watch::AddrWatchError),
    /// A queue worker failed for good.
    #[error(transparent)]
    Worker(#[from] queue::WorkerFailed),
    /// A queue worker's thread ended by a panic outside the packet path's guards.
    #[error("queue {0}: worker thread died (panic)")]
    WorkerDied(u16),
}

/// The runtime directory: where the control socket lives (`/run/statewall` by default, the
/// systemd `RuntimeDirectory`). It also holds the restart marker.
pub fn runtime_dir(settings: &Settings) -> PathBuf {
    settings
        .control
        .socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("/run/statewall"), Path::to_path_buf)
}

/// Name of the marker file written in the runtime directory at every start.
pub const MARKER: &str = "started";

/// Whether this start is a restart, i.e. connections statewall did not see open may be
/// established through the gateway:
/// * the marker file exists in the runtime directory: statewall ran before since boot (the
///   runtime directory is on tmpfs, so a cold boot has no marker), whether it stopped
///   cleanly, crashed, was killed or is restarted by systemd; the marker is never removed;
/// * or a `STATEWALL` chain was left behind by a run that could not clean up.
pub fn restart_detected(marker_exists: bool, leftover_chain: bool) -> bool {
    marker_exists || leftover_chain
}

/// Reads the rule file named in the settings, or the allow-all policy when there is none.
pub fn load_policy(settings: &Settings) -> Result<Arc<Policy>, DaemonError> {
    match &settings.rules {
        None => {
            tracing::warn!("no `rules` file configured: every new connection is allowed");
            Ok(Arc::new(Policy::allow_all()))
        }
        Some(path) => match crate::rules::load(path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{}", w.to_string().lines().next().unwrap_or_default());
                }
                tracing::info!(
                    file = %path.display(),
                    rules = loaded.policy.rule_count(),
                    files = loaded.files.len(),
                    "rules loaded"
                );
                Ok(Arc::new(loaded.policy))
            }
            Err(diags) => {
                let errors: Vec<String> = diags
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| d.to_string())
                    .collect();
                for e in &errors {
                    tracing::error!("{}", e.lines().next().unwrap_or_default());
                }
                let mut files = vec![path.clone()];
                for d in diags.iter().filter(|d| d.is_error()) {
                    let f = PathBuf::from(&d.file);
                    if !files.contains(&f) {
                        files.push(f);
                    }
                }
                Err(DaemonError::Rules(RuleErrors {
                    file: path.clone(),
                    errors,
                    files,
                }))
            }
        },
    }
}

/// Every error of a rule file that cannot be loaded.
#[derive(Debug)]
pub struct RuleErrors {
    /// The top-level rule file.
    pub file: PathBuf,
    /// Rendered diagnostics (`FILE:LINE:COL: error: ...`, source line, caret).
    pub errors: Vec<String>,
    /// The top-level file and every file an error was found in.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} error(s)", self.file.display(), self.errors.len())?;
        for e in &self.errors {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

/// Events the main thread reacts to.
enum Event {
    /// SIGTERM / SIGINT.
    Shutdown(i32),
    /// SIGHUP.
    Reload,
    /// A worker gave up.
    WorkerFailed(queue::WorkerFailed),
    /// A worker thread died.
    WorkerDied(u16),
}

/// Runs the daemon until a shutdown signal (`Ok`) or a fatal worker failure (`Err`, after
/// cleanup).
pub fn run(settings: Settings) -> Result<(), DaemonError> {
    let start = Instant::now();
    let now = || Timestamp::from_duration(start.elapsed());
    let policy = load_policy(&settings)?;
    let (offload_sync, engine_config) = offload::open(&settings);
    let fastpath = engine_config.offload.enable;
    let engine = Arc::new(Engine::new(engine_config));
    engine.set_policy(policy);

    let manage = settings.netfilter.manage;
    let dir = runtime_dir(&settings);
    std::fs::create_dir_all(&dir).map_err(|source| DaemonError::RuntimeDir {
        path: dir.clone(),
        source,
    })?;
    let marker = dir.join(MARKER);
    let leftover = manage && netfilter::leftover_exists();
    let restart = restart_detected(marker.exists(), leftover);

    // Queues first: a rule pointing to a queue nobody reads drops (or, fail-open, passes) all.
    let opts = queue::QueueOptions::from(&settings.queue);
    let first = settings.queue.first;
    let mut queues = Vec::new();
    for num in first..=first.saturating_add(settings.queue.count - 1) {
        let mut q = queue::open(num, opts)?;
        let (granted, whole) = queue::set_recv_buffer(&mut q, num, opts.recv_buffer)?;
        if whole {
            tracing::info!(queue = num, bytes = granted, "receive buffer set");
        } else {
            tracing::warn!(
                queue = num,
                asked = opts.recv_buffer,
                bytes = granted,
                "receive buffer smaller than asked (SO_RCVBUFFORCE needs CAP_NET_ADMIN, \
                 SO_RCVBUF is capped by net.core.rmem_max): bursts may be lost at the socket \
                 (kernel_user_dropped) before the queue is full"
            );
        }
        queues.push((num, q));
    }

    // Flows established before this process: adopted from the kernel table (restart, pair
    // standby), or picked up blindly where the kernel does not track them. Before the workers
    // start, so that their first packets find the flows.
    let adopter = ha::start(&settings, &engine, restart, start)?;
    let grace = settings.conntrack.pickup_grace;
    if adopter.is_none() && restart && grace > 0 {
        engine.set_pickup_until(Some(now() + Duration::from_secs(grace)));
        tracing::info!(
            grace_s = grace,
            leftover_chain = leftover,
            "restart detected: adopting established TCP connections (blind pickup: the kernel \
             does not track them)"
        );
    }

    // The control socket before the rules: whoever waits for the rules finds it listening.
    let wiring = Wiring::new(&settings, &engine, &queues, start, adopter);
    let control_server = match crate::control::serve(&settings.control, wiring.handler.clone()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "control socket unavailable; netfilter rules not touched");
            let what = "open the control socket";
            let source = std::io::Error::other(e.to_string());
            return Err(DaemonError::Setup { what, source });
        }
    };
    tracing::info!(socket = %control_server.path().display(), "control socket ready");
    let outputs = match Outputs::start(&settings, &wiring) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "netfilter rules not touched");
            return Err(e);
        }
    };

    let plan = Plan::new(&settings.queue, &settings.netfilter, fastpath);
    if manage {
        if let Err(e) = plan.install() {
            tracing::error!(
                error = %e,
                "netfilter rules not installed; nothing was changed (an earlier run's rules, \
                 if any, stay in place)"
            );
            return Err(e.into());
        }
        tracing::info!(
            hooks = ?plan.hooks(),
            notrack = plan.notrack(),
            "netfilter rules installed"
        );
    } else {
        tracing::info!("netfilter.manage = false: no iptables rules touched (see print-rules)");
    }
    // After the rules: installing them loads nf_conntrack, which pulls nf_defrag in.
    if let Some(w) = crate::io::defrag::warning(crate::io::defrag::kernel_reassembly(), manage) {
        tracing::warn!("{w}");
    }
    if let Some(sync) = offload_sync {
        let every = Duration::from_secs(settings.offload.refresh);
        if let Err(source) = offload::spawn(sync, Arc::clone(&engine), start, every) {
            let what = "start the fast-path thread";
            return Err(DaemonError::Setup { what, source });
        }
    }
    let result = serve(&settings, &engine, queues, wiring, &outputs, start, &marker);
    drop(control_server);
    if manage {
        leave_rules(&settings);
    }
    // Let packets already queued get their verdicts before the sockets close.
    thread::sleep(Duration::from_millis(20));
    let (counters, _) = &result;
    tracing::info!(
        "final stats {}",
        stats_line(&engine.stats(), counters, &queue::kernel_stats())
    );
    result.1
}

/// At exit: removes the rules with `on_stop = "remove"`, else leaves them; logs which.
fn leave_rules(settings: &Settings) {
    match settings.netfilter.on_stop {
        OnStop::Remove => match netfilter::remove_all() {
            Ok(_) => tracing::info!(
                "netfilter rules removed (on_stop = \"remove\"): traffic now passes unjudged"
            ),
            Err(e) => tracing::error!(error = %e, "netfilter rules could not be removed"),
        },
        OnStop::Keep => {
            let meanwhile = if settings.queue.fail_open {
                "passes unjudged (fail_open = true)"
            } else {
                "is dropped by the kernel"
            };
            tracing::info!(
                "netfilter rules left in place (on_stop = \"keep\"): until the next statewall \
                 runs, diverted traffic {meanwhile}; `statewall cleanup` removes them"
            );
        }
    }
}

type Counters = Vec<(u16, Arc<QueueCounters>)>;

/// What the workers, the timer and the control socket share, made before any of them starts.
struct Wiring {
    /// Per-queue counters, in queue order.
    counters: Counters,
    /// Answers and event outputs.
    actions: Arc<ActionHandler>,
    /// The control socket's handler.
    handler: Arc<DaemonControl>,
    /// The event stream.
    hub: Arc<EventHub>,
}

impl Wiring {
    fn new(
        settings: &Settings,
        engine: &Arc<Engine>,
        queues: &[(u16, nfq::Queue)],
        start: Instant,
        adopter: Option<Arc<ha::Adopter>>,
    ) -> Wiring {
        let syslog = match crate::io::syslog::Syslog::spawn(settings.syslog.clone()) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "syslog output unavailable: alerts go to the log only");
                None
            }
        };
        let prefixes = crate::io::syslog::lines::Prefixes {
            drop: settings.syslog.drop_prefix.clone(),
            reject: settings.syslog.reject_prefix.clone(),
        };
        // journald reads /dev/log (a link to its dev-log socket under systemd): lines sent
        // there are in the journal already.
        let local = matches!(
            settings.syslog.validate(),
            Ok(crate::config::Target::Unix(p))
                if p == Path::new("/dev/log") || p == Path::new("/run/systemd/journal/dev-log")
        );
        // While anyone reads the stream (a client of `statewall events`, the event log), the
        // engine builds connection and drop events.
        let hub = Arc::new(EventHub::new({
            let engine = Arc::clone(engine);
            move |interest| engine.set_interest(interest)
        }));
        let actions = ActionHandler::new(Some(settings.netfilter.mark), syslog, prefixes, local);
        let actions = Arc::new(actions.with_events(Arc::clone(&hub)));
        let counters: Counters = queues
            .iter()
            .map(|(num, _)| (*num, Arc::new(QueueCounters::default())))
            .collect();
        let handler = Arc::new(
            DaemonControl::new(
                settings.clone(),
                Arc::clone(engine),
                counters.clone(),
                start,
                Arc::clone(&actions),
                Arc::clone(&hub),
            )
            .with_adopter(adopter),
        );
        Wiring {
            counters,
            actions,
            handler,
            hub,
        }
    }
}

/// The optional outputs beside the control socket: the JSON event log and the metrics
/// listener, started before the netfilter rules (a configured one that cannot start stops
/// the start, nothing touched).
struct Outputs {
    event_log: Option<EventLog>,
    _metrics: Option<MetricsServer>,
}

impl Outputs {
    fn start(settings: &Settings, wiring: &Wiring) -> Result<Outputs, DaemonError> {
        let event_log = match &settings.events.log {
            Some(path) => {
                let log = EventLog::spawn(path, &wiring.hub, settings.events.log_queue).map_err(
                    |source| DaemonError::Setup {
                        what: "open the event log",
                        source,
                    },
                )?;
                tracing::info!(path = %path.display(), "event log open");
                Some(log)
            }
            None => None,
        };
        let metrics = match settings.metrics.listen {
            Some(addr) => {
                let source: Arc<dyn MetricsSource> = wiring.handler.clone();
                let server =
                    MetricsServer::spawn(addr, source).map_err(|source| DaemonError::Setup {
                        what: "listen for metrics",
                        source,
                    })?;
                tracing::info!(listen = %server.addr(), "metrics listener ready (/metrics)");
                Some(server)
            }
            None => None,
        };
        Ok(Outputs {
            event_log,
            _metrics: metrics,
        })
    }
}

/// Starts workers and the timer, then handles events. Returns the queue counters and how the
/// daemon ended.
fn serve(
    settings: &Settings,
    engine: &Arc<Engine>,
    queues: Vec<(u16, nfq::Queue)>,
    wiring: Wiring,
    outputs: &Outputs,
    start: Instant,
    marker: &Path,
) -> (Counters, Result<(), DaemonError>) {
    let (tx, rx) = mpsc::channel::<Event>();
    if let Some(description) = engine.scan_description() {
        tracing::info!("scan detection: {description}");
    }
    let Wiring {
        counters,
        actions,
        handler,
        hub: _,
    } = wiring;
    for ((num, q), (_, c)) in queues.into_iter().zip(&counters) {
        let c = Arc::clone(c);
        let worker = Worker {
            num,
            engine: Arc::clone(engine),
            counters: c,
            actions: Arc::clone(&actions),
            start,
            marks: (!settings.netfilter.notrack).then(|| settings.netfilter.marks()),
            batching: queue::Batching::from(&settings.queue),
        };
        let tx = tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("queue-{num}"))
            .spawn(move || {
                let event = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker.run(q)
                })) {
                    Ok(failed) => Event::WorkerFailed(failed),
                    Err(_) => Event::WorkerDied(num),
                };
                let _ = tx.send(event);
            });
        if let Err(source) = spawned {
            let what = "start a queue worker";
            return (counters, Err(DaemonError::Setup { what, source }));
        }
    }

    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(source) => {
            let what = "install signal handlers";
            return (counters, Err(DaemonError::Setup { what, source }));
        }
    };
    let signal_tx = tx.clone();
    let spawned = thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let ev = if sig == SIGHUP {
                    Event::Reload
                } else {
                    Event::Shutdown(sig)
                };
                if signal_tx.send(ev).is_err() {
                    break;
                }
            }
        });
    if let Err(source) = spawned {
        let what = "start the signal thread";
        return (counters, Err(DaemonError::Setup { what, source }));
    }

    let timer = Timer {
        engine: Arc::clone(engine),
        actions: Arc::clone(&actions),
        counters: counters.clone(),
        start,
        stats_every: Duration::from_secs(settings.log.stats_interval),
    };
    if let Err(source) = thread::Builder::new()
        .name("timer".into())
        .spawn(move || timer.run())
    {
        let what = "start the timer thread";
        return (counters, Err(DaemonError::Setup { what, source }));
    }

    if let Err(e) = std::fs::write(marker, format!("{}\n", std::process::id())) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot write the restart marker");
    }
    let _ = sd_notify::notify(
        false,
        &[
            NotifyState::Ready,
            NotifyState::Status("forwarding through statewall"),
        ],
    );
    tracing::info!(
        queues = ?counters.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        rules = settings.rules.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "statewall running"
    );

    loop {
        match rx.recv() {
            Ok(Event::Reload) => {
                let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
                if let Some(log) = &outputs.event_log {
                    // logrotate's postrotate: write to a new file at the configured path.
                    log.reopen();
                }
                if let Err(f) = handler.do_reload() {
                    tracing::error!("reload failed: {}", f.message);
                }
                let _ = sd_notify::notify(false, &[NotifyState::Ready]);
            }
            Ok(Event::Shutdown(sig)) => {
                tracing::info!(signal = sig, "shutting down");
                let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
                return (counters, Ok(()));
            }
            Ok(Event::WorkerFailed(f)) => {
                tracing::error!(error = %f, "queue worker failed; stopping");
                let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
                return (counters, Err(f.into()));
            }
            Ok(Event::WorkerDied(num)) => {
                tracing::error!(queue = num, "queue worker died; stopping");
                let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
                return (counters, Err(DaemonError::WorkerDied(num)));
            }
            // Every sender is gone: nothing can wake us any more.
            Err(_) => return (counters, Ok(())),
        }
    }
}

/// Several times a second: the engine's timers (which sweep the table once a second), the
/// systemd watchdog ping while every worker beats, a warning when the kernel loses queued
/// packets, the stats line when due.
struct Timer {
    engine: Arc<Engine>,
    actions: Arc<ActionHandler>,
    counters: Counters,
    start: Instant,
    stats_every: Duration,
}

impl Timer {
    fn run(self) {
        let mut usec = 0u64;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
        // Time-driven alerts ("filtered" scans) must leave within a second.
        let mut tick = Duration::from_millis(250);
        let mut stale = health::STALE_AFTER;
        if watchdog {
            let interval = Duration::from_micros(usec);
            tick = tick.min(interval / 4).max(Duration::from_millis(10));
            stale = stale.min(interval / 2);
        }
        let mut last_loss_check = Instant::now();
        let mut last_stats = Instant::now();
        let kernel = queue::read_kernel_stats().unwrap_or_else(|e| {
            tracing::warn!(path = queue::KERNEL_STATS, error = %e, "cannot read the kernel's queue counters: packets lost to a full queue will not be reported (socket buffer overflows still are, as enobufs)");
            Vec::new()
        });
        let mut losses = health::LossWatch::new(health::Losses::read(&kernel, &self.counters));
        let mut silent: Option<u16> = None;
        loop {
            thread::sleep(tick);
            match health::silent_worker(&self.counters, self.start.elapsed(), stale) {
                None => {
                    if let Some(num) = silent.take() {
                        tracing::info!(queue = num, "queue worker beats again");
                    }
                    if watchdog {
                        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
                    }
                }
                Some((num, for_)) => {
                    if silent.replace(num).is_none() {
                        tracing::error!(
                            queue = num,
                            silent_ms = u64::try_from(for_.as_millis()).unwrap_or(u64::MAX),
                            "queue worker is stuck or dead: watchdog pings stopped"
                        );
                    }
                }
            }
            let report = self
                .engine
                .on_timer(Timestamp::from_duration(self.start.elapsed()));
            for event in &report.events {
                self.actions.report(event);
            }
            if report.expired > 0 {
                tracing::debug!(expired = report.expired, "swept");
            }
            if last_loss_check.elapsed() >= Duration::from_secs(1) {
                last_loss_check = Instant::now();
                let now = health::Losses::read(&queue::kernel_stats(), &self.counters);
                if let Some(delta) = losses.check(now, Instant::now()) {
                    health::warn_losses(delta);
                }
            }
            if !self.stats_every.is_zero() && last_stats.elapsed() >= self.stats_every {
                last_stats = Instant::now();
                let line = stats_line(&self.engine.stats(), &self.counters, &queue::kernel_stats());
                tracing::info!("stats {line}");
            }
        }
    }
}

/// One line of `key=value` pairs: engine totals, queue totals, kernel queue drops and drops
/// per reason as `drop.REASON=N`. Periodic lines start with `stats `, the line logged at exit
/// with `final stats `.
pub fn stats_line(stats: &Stats, queues: &Counters, kernel: &[KernelQueueStats]) -> String {
    let q: Vec<QueueStats> = queues.iter().map(|(n, c)| c.snapshot(*n)).collect();
    let sum = |f: fn(&QueueStats) -> u64| q.iter().map(f).sum::<u64>();
    let mut line = format!(
        "packets={} accepted={} dropped={} entries={} new={} ignored={} expired={} early_drops={} resumed={} answered={} answers_limited={} logs_suppressed={} adopted={}",
        stats.packets,
        stats.accepted,
        stats.dropped,
        stats.entries,
        stats.new_connections,
        stats.ignored,
        stats.expired,
        stats.early_drops,
        stats.resumed,
        stats.answered,
        stats.answers_limited,
        stats.logs_suppressed,
        stats.adopted,
    );
    let _ = write!(
        line,
        " recv_errors={} enobufs={} verdict_errors={} panics={} kernel_queue_dropped={} kernel_user_dropped={}",
        sum(|s| s.recv_errors),
        sum(|s| s.enobufs),
        sum(|s| s.verdict_errors),
        sum(|s| s.panics),
        kernel.iter().map(|k| k.queue_dropped).sum::<u64>(),
        kernel.iter().map(|k| k.user_dropped).sum::<u64>(),
    );
    for s in &q {
        let _ = write!(line, " queue{}={}", s.queue, s.packets);
    }
    for (reason, n) in &stats.drops {
        let _ = write!(line, " drop.{reason}={n}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn restart_needs_a_marker_or_a_leftover_chain() {
        assert!(!restart_detected(false, false));
        assert!(restart_detected(true, false));
        assert!(restart_detected(false, true));
    }

    #[test]
    fn runtime_dir_is_the_control_socket_directory() {
        let mut s = Settings::default();
        assert_eq!(runtime_dir(&s), PathBuf::from("/run/statewall"));
        s.control.socket = PathBuf::from("/tmp/x/ctl.sock");
        assert_eq!(runtime_dir(&s), PathBuf::from("/tmp/x"));
        s.control.socket = PathBuf::from("ctl.sock");
        assert_eq!(runtime_dir(&s), PathBuf::from("/run/statewall"));
    }

    #[test]
    fn stats_line_is_key_value() {
        let stats = Stats {
            packets: 10,
            accepted: 7,
            dropped: 3,
            entries: 2,
            adopted: 6,
            drops: vec![("no_connection".into(), 2), ("tcp_null".into(), 1)],
            ..Stats::default()
        };
        let c = Arc::new(QueueCounters::default());
        c.packets.store(10, Ordering::Relaxed);
        c.recv_errors.store(1, Ordering::Relaxed);
        let kernel = [KernelQueueStats {
            queue: 0,
            waiting: 0,
            queue_dropped: 4,
            user_dropped: 5,
        }];
        let line = stats_line(&stats, &vec![(0, c)], &kernel);
        let kv: std::collections::HashMap<&str, &str> = line
            .split(' ')
            .map(|w| w.split_once('=').expect("key=value"))
            .collect();
        assert_eq!(kv["packets"], "10");
        assert_eq!(kv["dropped"], "3");
        assert_eq!(kv["drop.no_connection"], "2");
        assert_eq!(kv["drop.tcp_null"], "1");
        assert_eq!(kv["recv_errors"], "1");
        assert_eq!(kv["kernel_queue_dropped"], "4");
        assert_eq!(kv["kernel_user_dropped"], "5");
        assert_eq!(kv["queue0"], "10");
        assert_eq!(kv["adopted"], "6");
        assert_eq!(kv["logs_suppressed"], "0");
    }

    #[test]
    fn shipped_example_config_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/statewall.toml");
        let s = Settings::load_with_env(&path, Some(Default::default())).expect("valid");
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn no_rules_means_allow_all() {
        let p = load_policy(&Settings::default()).expect("allow all");
        assert_eq!(p.rule_count(), 0);
    }
}
