//! Time-driven work, in one call: [`Engine::on_timer`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::operator::MAX_CLOSE_EVENTS;
use super::Engine;
use crate::event::{CloseReason, Event};
use crate::scan::ScanInput;
use crate::time::Timestamp;

/// How often the table is swept for expired entries (a sweep walks every entry).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What one [`Engine::on_timer`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerReport {
    /// Events for the outputs: scan alerts that needed time to pass (filtered and half-open
    /// scans, and those of connections that just expired), blocks, expired blocks, the report
    /// of suppressed packet lines.
    pub events: Vec<Event>,
    /// Entries that expired (0 when the table was not due for a sweep).
    pub expired: usize,
}

impl Engine {
    /// Time-driven work; call it every 250 ms or so (the scan detector's "filtered" scans need
    /// that resolution). At most once a second (`SWEEP_EVERY`) it also sweeps the table; expired
    /// connections are reported to the scan detector as closed. Then the scan detector's own
    /// timers run, and blocks expire.
    pub fn on_timer(&self, now: Timestamp) -> TimerReport {
        let mut report = TimerReport::default();
        if now.as_nanos() >= self.next_sweep.load(Ordering::Relaxed) {
            let next = now.saturating_add(SWEEP_EVERY).as_nanos();
            self.next_sweep.store(next, Ordering::Relaxed);
            report.expired = self.sweep(now, &mut report.events);
        }
        if let Some(scan) = &self.scan {
            let alerts = scan.on_timer(now);
            self.raise(alerts, now, &mut report.events);
        }
        if let Some(s) = self.drop_log.report(now) {
            report.events.push(Event::Suppressed(s));
        }
        report
            .events
            .extend(self.blocks.expire(now).into_iter().map(Event::Block));
        report
    }

    /// Removes expired entries, telling the scan detector each flow closed and the outputs
    /// that it ended (at most [`MAX_CLOSE_EVENTS`] destroy events per sweep; entries revoked
    /// earlier were reported then). Returns how many.
    fn sweep(&self, now: Timestamp, events: &mut Vec<Event>) -> usize {
        let mut alerts = Vec::new();
        let report = self.interest().conns;
        let mut reported = 0;
        let expired = self.conntrack.sweep(now, |record, revoked| {
            if let Some(scan) = &self.scan {
                let flow = record.flow;
                alerts.extend(scan.on_input(now, ScanInput::Closed { flow }));
            }
            if report && !revoked && reported < MAX_CLOSE_EVENTS {
                reported += 1;
                events.push(self.closed(record, CloseReason::Expired));
            }
        });
        self.raise(alerts, now, events);
        expired
    }
}
