//! The rule language: parser, compiled policy and lint.
//!
//! (Minimal interface until the rule language lands: only the allow-all policy.)

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::time::Timestamp;

/// What a rule (or the default policy) does with a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    /// Track and pass.
    Allow,
    /// Drop silently.
    Drop,
    /// Drop and answer (TCP RST / ICMP unreachable).
    Reject,
}

/// How out-of-state probes are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// With a RST.
    Rst,
    /// Silently dropped.
    Drop,
}

/// Where a rule comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Rule number.
    pub id: usize,
    /// File.
    pub file: Arc<str>,
    /// Line.
    pub line: u32,
    /// Label.
    pub label: Option<String>,
    /// Whether matches are logged.
    pub log: bool,
    /// Action.
    pub action: RuleAction,
    /// Source text.
    pub text: String,
}

/// A new connection to judge.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// IP protocol.
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code.
    pub icmp_code: Option<u8>,
    /// Input interface.
    pub in_iface: Option<&'a str>,
    /// Output interface.
    pub out_iface: Option<&'a str>,
}

/// The verdict of the policy on a new connection.
#[derive(Clone, Copy, Debug)]
pub struct Outcome<'p> {
    /// Action.
    pub action: RuleAction,
    /// Rule that decided, `None` for the default policy.
    pub rule: Option<&'p RuleInfo>,
}

/// A compiled policy.
#[derive(Debug, Default)]
pub struct Policy;

impl Policy {
    /// Allows everything.
    pub fn allow_all() -> Policy {
        Policy
    }
    /// Judges a new connection.
    pub fn evaluate(&self, _q: &Query<'_>, _now: Timestamp) -> Outcome<'_> {
        Outcome {
            action: RuleAction::Allow,
            rule: None,
        }
    }
    /// Default action.
    pub fn default_action(&self) -> RuleAction {
        RuleAction::Allow
    }
    /// Probe mode from the file.
    pub fn probes(&self) -> Option<ProbeMode> {
        None
    }
    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        0
    }
    /// Source file.
    pub fn source(&self) -> Option<&Path> {
        None
    }
}
