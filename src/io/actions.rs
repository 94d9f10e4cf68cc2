//! Performs what the engine decided: sends the packets of its [`Action`]s and reports its
//! [`Event`]s (to syslog and, through `tracing`, to the journal).
//!
//! Every action goes through [`ActionHandler::perform`] and every event through
//! [`ActionHandler::report`], one `match` each: a new variant is one new arm here.
//!
//! **Each event reaches the journal once.** With the syslog target on the local socket
//! (`unix:/dev/log`, the default), journald (or the local syslog daemon) receives the line
//! there, with its severity; the `tracing` copy on stderr, which systemd also puts in the
//! journal, is then logged at debug level only. With a remote target, or no syslog output at
//! all, the stderr copy is logged at the event's level (warn for alerts, info otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::alert::Severity;
use crate::engine::Decision;
use crate::event::Event;
use crate::io::events::EventHub;
use crate::io::rawsend::RawSender;
use crate::io::syslog::lines::{self, Prefixes};
use crate::io::syslog::SyslogHandle;
use crate::proto;
use crate::respond::{rst_packet, unreachable_packet, ReplyOptions};
use crate::rules::RuleAction;
use crate::verdict::Action;

/// TTL / hop limit of every answer statewall sends (the same for all, so answers do not
/// reveal which host or path produced them).
pub const REPLY_TTL: u8 = 64;

/// Executes actions for the queue workers (shared by all of them).
#[derive(Debug, Default)]
pub struct ActionHandler {
    /// Raw sockets for RST and ICMP answers; `None` when they could not be opened (answers are
    /// then counted as failed).
    sender: Option<RawSender>,
    /// Answers sent.
    pub sent: AtomicU64,
    /// Answers that could not be built or sent.
    pub send_errors: AtomicU64,
    /// Scan alerts reported.
    pub scan_alerts: AtomicU64,
    /// The event stream (`statewall events`, the event log): every event goes there too.
    events: Option<Arc<EventHub>>,
    /// Where alert and rule-log lines go (`[syslog]`); operational logs stay on stderr.
    syslog: Option<SyslogHandle>,
    /// Prefixes of drop and reject lines.
    prefixes: Prefixes,
    /// Whether the stderr (`tracing`) copy of each event is the journal's: false when syslog
    /// goes to the local socket, which the journal reads already.
    journal_copy: bool,
}

impl ActionHandler {
    /// A handler sending answers from raw sockets marked with `mark` (so an output-hook rule
    /// never queues them) and reporting events to `syslog` (packet lines with `prefixes`) and
    /// to stderr; `local_syslog`: the syslog target is the local socket, which the journal
    /// reads (the stderr copy is then at debug level).
    pub fn new(
        mark: Option<u32>,
        syslog: Option<SyslogHandle>,
        prefixes: Prefixes,
        local_syslog: bool,
    ) -> ActionHandler {
        let sender = match RawSender::new(mark) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open raw sockets: probes and rejects will be dropped without an answer");
                None
            }
        };
        ActionHandler {
            sender,
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            scan_alerts: AtomicU64::new(0),
            events: None,
            journal_copy: syslog.is_none() || !local_syslog,
            syslog,
            prefixes,
        }
    }

    /// The same handler, every event also going to the event stream `hub`.
    pub fn with_events(mut self, hub: Arc<EventHub>) -> ActionHandler {
        self.events = Some(hub);
        self
    }

    /// Performs a decision's action and reports its events, in that order.
    pub fn handle(&self, decision: Decision) {
        if let Some(action) = decision.action {
            self.perform(action);
        }
        for event in &decision.events {
            self.report(event);
        }
    }

    fn send(&self, packet: Option<Vec<u8>>) {
        let result = match (&self.sender, packet) {
            (Some(sender), Some(p)) => sender.send(&p).map_err(|e| e.to_string()),
            (None, _) => Err("no raw socket".to_string()),
            (_, None) => Err("nothing to answer".to_string()),
        };
        match result {
            Ok(()) => self.sent.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(error = %e, "answer not sent");
                self.send_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn reply_options() -> ReplyOptions {
        ReplyOptions {
            ttl: REPLY_TTL,
            // Random per answer: never a global counter (no idle-scan zombie).
            ip_id: rand::random(),
        }
    }

    /// Sends the packet of one action.
    pub fn perform(&self, action: Action) {
        let opts = Self::reply_options();
        match action {
            Action::SendRst(rst) => self.send(rst_packet(&rst, &opts)),
            Action::SendUnreachable(u) => self.send(unreachable_packet(&u, &opts)),
        }
    }

    /// Reports one event: to the event stream (never blocks: each reader has its queue), its
    /// line for syslog (never blocks: the handle queues), and a
    /// `tracing` event for stderr / the journal (at debug level when syslog reaches the
    /// journal already).
    pub fn report(&self, event: &Event) {
        if let Some(hub) = &self.events {
            hub.publish(event);
        }
        if let Event::Scan(_) = event {
            self.scan_alerts.fetch_add(1, Ordering::Relaxed);
        }
        // Connection events, and drops whose line is not due, are for the stream only.
        let Some(body) = lines::render(event, &self.prefixes) else {
            return;
        };
        let severity = lines::severity(event);
        if self.journal_copy {
            self.trace(event, severity, &body);
        } else {
            tracing::debug!(target: "statewall::alert", "{body}");
        }
        if let Some(syslog) = &self.syslog {
            syslog.send(severity, body);
        }
    }

    /// The stderr copy of an event: rule matches with their fields, the rest as their line.
    fn trace(&self, event: &Event, severity: Severity, body: &str) {
        if let Event::RuleMatch(m) = event {
            let flow = m.packet.flow();
            tracing::info!(
                target: "statewall::rule",
                rule = m.rule.id,
                file = %m.rule.file,
                line = m.rule.line,
                label = m.rule.label.as_deref().unwrap_or(""),
                action = action_name(m.action),
                proto = %proto::Name(flow.proto),
                src = %flow.src,
                sport = flow.sport,
                dst = %flow.dst,
                dport = flow.dport,
                "rule matched"
            );
        } else if severity <= Severity::Warning {
            tracing::warn!(target: "statewall::alert", "{body}");
        } else {
            tracing::info!(target: "statewall::alert", "{body}");
        }
    }
}

fn action_name(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Allow => "allow",
        RuleAction::Drop => "drop",
        RuleAction::Reject => "reject",
    }
}
