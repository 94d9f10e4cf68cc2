//! Performs the work the engine asks for in [`Decision::actions`](crate::engine::Decision).
//!
//! All actions go through [`ActionHandler::perform`], one `match`: a new [`Action`] variant is
//! one new arm here.

use crate::engine::{proto_name, Action};
use crate::rules::RuleAction;

/// Executes actions for the queue workers (shared by all of them).
#[derive(Debug, Default)]
pub struct ActionHandler {}

impl ActionHandler {
    /// A handler that logs rule matches through `tracing`.
    pub fn new() -> ActionHandler {
        ActionHandler {}
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
                    proto = %proto_name(flow.proto),
                    src = %flow.src,
                    sport = flow.sport,
                    dst = %flow.dst,
                    dport = flow.dport,
                    "rule matched"
                );
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
