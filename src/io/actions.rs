//! Performs the work the engine asks for in [`Decision::actions`](crate::engine::Decision).
//!
//! All actions go through [`ActionHandler::perform`], one `match`: a new [`Action`] variant is
//! one new arm here.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::alert::{flow_fields, Severity};
use crate::engine::Action;
use crate::io::rawsend::RawSender;
use crate::io::syslog::SyslogHandle;
use crate::proto;
use crate::respond::{icmp_port_unreachable, rst_for, ReplyOptions};
use crate::rules::RuleAction;

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
    /// Where alert and rule-log lines go (`[syslog]`); operational logs stay on stderr.
    syslog: Option<SyslogHandle>,
}

impl ActionHandler {
    /// A handler logging rule matches through `tracing` and sending answers from raw sockets
    /// marked with `mark` (so an output-hook rule never queues them).
    pub fn new(mark: Option<u32>, syslog: Option<SyslogHandle>) -> ActionHandler {
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
            syslog,
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

    /// Sends an event line to syslog (never blocks: the handle queues).
    fn event(&self, severity: Severity, line: String) {
        if let Some(syslog) = &self.syslog {
            syslog.send(severity, line);
        }
    }

    fn reply_options() -> ReplyOptions {
        ReplyOptions {
            ttl: REPLY_TTL,
            // Random per answer: never a global counter (no idle-scan zombie).
            ip_id: rand::random(),
        }
    }

    /// Performs one action.
    pub fn perform(&self, action: Action) {
        match action {
            Action::LogRule { rule, flow, action } => {
                tracing::info!(
                    target: "statewall::rule",
                    rule = rule.id,
                    file = %rule.file,
                    line = rule.line,
                    label = rule.label.as_deref().unwrap_or(""),
                    action = action_name(action),
                    proto = %proto::Name(flow.proto),
                    src = %flow.src,
                    sport = flow.sport,
                    dst = %flow.dst,
                    dport = flow.dport,
                    "rule matched"
                );
                let mut line = format!(
                    "RULE action={} rule={}:{}",
                    action_name(action),
                    rule.file,
                    rule.line
                );
                if let Some(label) = &rule.label {
                    line.push_str(&format!(" label=\"{label}\""));
                }
                line.push(' ');
                line.push_str(&flow_fields(
                    flow.src, flow.dst, flow.proto, flow.sport, flow.dport,
                ));
                self.event(Severity::Notice, line);
            }
            Action::SendRst(probe) => self.send(rst_for(&probe, &Self::reply_options())),
            Action::SendUnreachable(original) => {
                self.send(icmp_port_unreachable(&original, &Self::reply_options()))
            }
            Action::Alert(line) => {
                tracing::warn!(target: "statewall::alert", "{line}");
                self.event(Severity::Warning, line);
            }
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
