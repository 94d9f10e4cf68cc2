//! The kernel table's side of the daemon (docs/ha.md): what statewall adopts from the kernel's
//! conntrack table at start, the watch of that table on a gateway of a pair, and the
//! `takeover` / `standby` commands.
//!
//! * A restart (with kernel tracking, i.e. without `notrack`): every flow the kernel table holds
//!   with the ADMITTED bit is adopted before the workers start, and the gateway is active at
//!   once: the kernel table kept every flow statewall admitted, so a mid-stream segment of any
//!   other flow is `no_connection` as usual. The takeover window is for a pair, where a flow's
//!   replication from the peer may be late. This replaces blind pickup, which stays for
//!   `notrack` (the kernel then knows nothing).
//! * `[ha] enable`: the daemon starts as the standby. It subscribes to the table's events
//!   first, then adopts what the table holds, then keeps adopting (and forgetting) entries as
//!   conntrackd injects (and removes) them, so that it is ready before keepalived moves the
//!   addresses — keepalived tells it only afterwards (`statewall takeover`). With `[ha]
//!   addresses`, it also watches the host's addresses and stands by the moment one of them
//!   leaves (keepalived removes them as soon as the peer preempts this gateway; its BACKUP
//!   notification, `statewall standby`, comes later).

use std::net::IpAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::adopt::AdoptionReport;
use crate::config::Settings;
use crate::control::HaReport;
use crate::daemon::DaemonError;
use crate::engine::{Engine, Role};
use crate::io::addr_watch::{AddrWatch, AddrWatchError};
use crate::io::ctnetlink::CtError;
use crate::io::kernel_flows::{self, KernelChange, KernelWatch};
use crate::marks::ConnMarks;
use crate::time::Timestamp;

/// Adopts flows from the kernel table into the engine.
pub struct Adopter {
    engine: Arc<Engine>,
    marks: ConnMarks,
    start: Instant,
    window: Duration,
}

impl Adopter {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.start.elapsed())
    }

    /// One pass over the kernel table: adopts every entry with the ADMITTED bit.
    pub fn adopt_all(&self) -> Result<AdoptionReport, CtError> {
        let now = self.now();
        let mut report = AdoptionReport::default();
        let skipped = kernel_flows::dump_admitted(self.marks, |flow| {
            report.seen += 1;
            report.count(self.engine.adopt_kernel(&flow, now));
        })?;
        report.seen += skipped;
        report.skipped += skipped;
        Ok(report)
    }

    /// Subscribes to the kernel table's events and applies them from a thread of their own:
    /// new and changed entries with the ADMITTED bit are adopted, destroyed ones forgotten. A
    /// socket that overflowed lost events: the table is read again.
    fn watch(self: &Arc<Self>) -> Result<(), DaemonError> {
        let mut watch = KernelWatch::open(self.marks, Duration::from_secs(1))?;
        let me = Arc::clone(self);
        thread::Builder::new()
            .name("kernel-table".into())
            .spawn(move || {
                let mut changes = Vec::new();
                loop {
                    match watch.recv(&mut changes) {
                        Ok(()) => {}
                        Err(CtError::EventsLost) => {
                            tracing::warn!("conntrack events lost: reading the kernel table again");
                            match me.adopt_all() {
                                Ok(r) => tracing::info!("kernel table read again: {r}"),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read the kernel table")
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "conntrack events");
                            thread::sleep(Duration::from_secs(1));
                        }
                    }
                    let now = me.now();
                    for change in changes.drain(..) {
                        match change {
                            KernelChange::Admitted(flow) => {
                                me.engine.adopt_kernel(&flow, now);
                            }
                            KernelChange::Gone(flow) => {
                                me.engine.forget_kernel(&flow);
                            }
                        }
                    }
                }
            })
            .map_err(|source| DaemonError::Setup {
                what: "start the kernel table watch",
                source,
            })?;
        Ok(())
    }

    /// Watches the host's addresses from a thread of its own: when one of `vips` leaves this
    /// host while it handles traffic, it stands by, as `statewall standby` would. Removals
    /// lost to an overflowed socket are logged; keepalived's notification still comes.
    fn watch_addresses(self: &Arc<Self>, vips: Vec<IpAddr>) -> Result<(), DaemonError> {
        let mut watch = AddrWatch::open(Duration::from_secs(1))?;
        let me = Arc::clone(self);
        thread::Builder::new()
            .name("ha-addresses".into())
            .spawn(move || {
                let mut gone = Vec::new();
                loop {
                    gone.clear();
                    match watch.recv(&mut gone) {
                        Ok(()) => {}
                        Err(AddrWatchError::Lost) => {
                            tracing::warn!(
                                "address changes lost: the standby waits for keepalived's \
                                 notification"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "address changes");
                            thread::sleep(Duration::from_secs(1));
                        }
                    }
                    let Some(vip) = gone.iter().find(|a| vips.contains(a)) else {
                        continue;
                    };
                    if me.engine.role(me.now()) == Role::Standby {
                        continue;
                    }
                    tracing::info!(address = %vip, "a virtual address left this host");
                    me.stand_by();
                }
            })
            .map_err(|source| DaemonError::Setup {
                what: "start the watch of the virtual addresses",
                source,
            })?;
        Ok(())
    }

    /// `statewall takeover`: the takeover window opens and the table is read once more
    /// (whatever the watch may have missed).
    pub fn take_over(&self) -> Result<HaReport, String> {
        let now = self.now();
        self.engine.take_over(now, now.saturating_add(self.window));
        let r = self
            .adopt_all()
            .map_err(|e| format!("took over, but the kernel table cannot be read: {e}"))?;
        tracing::info!("takeover: kernel table {r}; window {:?}", self.window);
        Ok(HaReport {
            role: self.engine.role(self.now()).to_string(),
            seen: r.seen,
            adopted: r.adopted,
            refreshed: r.refreshed,
            known: r.known,
            no_room: r.no_room,
            skipped: r.skipped,
            following: 0,
        })
    }

    /// `statewall standby`: every flow follows the kernel table again.
    pub fn stand_by(&self) -> HaReport {
        let now = self.now();
        let following = self.engine.stand_by(now);
        tracing::info!(
            flows = following,
            "standby: every flow follows the kernel table"
        );
        HaReport {
            role: self.engine.role(now).to_string(),
            following,
            ..HaReport::default()
        }
    }
}

/// What the start-up does about flows established before this process started (see the
/// module doc). Returns the adopter, or `None` without kernel tracking (or when the kernel
/// table cannot be read after a plain restart: blind pickup is then the fallback).
pub fn start(
    settings: &Settings,
    engine: &Arc<Engine>,
    restart: bool,
    start: Instant,
) -> Result<Option<Arc<Adopter>>, DaemonError> {
    if settings.netfilter.notrack {
        return Ok(None);
    }
    let adopter = Arc::new(Adopter {
        engine: Arc::clone(engine),
        marks: settings.netfilter.marks(),
        start,
        window: Duration::from_secs(settings.ha.takeover_window),
    });
    if settings.ha.enable {
        engine.stand_by(adopter.now());
        adopter.watch()?;
        if !settings.ha.addresses.is_empty() {
            adopter.watch_addresses(settings.ha.addresses.clone())?;
        }
        let t0 = Instant::now();
        let r = adopter.adopt_all()?;
        tracing::info!(
            "standby: kernel table {r} in {:?}; waiting for `statewall takeover`",
            t0.elapsed()
        );
        return Ok(Some(adopter));
    }
    if restart {
        let t0 = Instant::now();
        match adopter.adopt_all() {
            Ok(r) => {
                // No takeover window: the table is complete (nothing is replicated late).
                tracing::info!(
                    "restart detected: adopted the flows the kernel table holds with the \
                     ADMITTED mark ({r}) in {:?}; no blind pickup",
                    t0.elapsed()
                );
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "restart detected, but the kernel table cannot be read: blind pickup"
                );
                return Ok(None);
            }
        }
    }
    Ok(Some(adopter))
}
