//! The rule language: parser, compiled policy and lint.
//!
//! A rule file decides the *first* packet of each new connection; packets of tracked
//! connections are judged by state, not by rules. The language is described in `docs/rules.md`.
//!
//! A file goes through these modules:
//!
//! - `lexer` — one line into tokens with their columns;
//! - `parser` — tokens into one statement of the syntax tree (`ast`), or issues;
//! - `load` — files, `include`, `set` resolution, compilation into a [`Policy`], every
//!   diagnostic of every file at once (`diag`: [`Diagnostic`], places, suggestions);
//! - `matcher`, `index`, `policy` — a compiled rule's requirements ([`Query`] in, yes or no),
//!   the index over the rules by protocol, destination port and prefix, and first-match
//!   evaluation ([`Policy::evaluate`]);
//! - `lint` — shadowed and duplicate rules, rules that can never match (unused sets are the
//!   loader's).
//!
//! Imports between these files run one way: `diag` ← `lexer` ← `parser` ← `load`,
//! `matcher` ← `index` ← `policy` ← `lint` ← `load`, and `ast` between (it names
//! [`RuleAction`]); none of them imports this module.
//!
//! ```
//! use statewall::rules::{self, Query, RuleAction};
//! use statewall::Timestamp;
//!
//! let loaded = rules::load_str("example.rules", "policy drop\nallow tcp to any port 22\n")
//!     .map_err(|diags| diags.len())
//!     .unwrap_or_else(|n| panic!("{n} diagnostics"));
//! let q = Query {
//!     src: "198.51.100.2".parse().unwrap(),
//!     dst: "203.0.113.2".parse().unwrap(),
//!     proto: 6,
//!     sport: 40000,
//!     dport: 22,
//!     icmp_type: None,
//!     icmp_code: None,
//!     in_iface: Some("g0"),
//!     out_iface: Some("g1"),
//! };
//! assert_eq!(loaded.policy.evaluate(&q, Timestamp::ZERO).action, RuleAction::Allow);
//! ```

mod ast;
mod diag;
mod index;
mod lexer;
mod lint;
mod load;
mod matcher;
mod parser;
mod policy;

use std::path::{Path, PathBuf};

use serde_json::json;

pub use crate::verdict::ProbeMode;
pub use diag::{Diagnostic, Severity};
pub use matcher::Query;
pub use policy::{Outcome, ParseKeywordError, Policy, RuleAction, RuleInfo};

/// A successfully loaded rule file.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled rules.
    pub policy: Policy,
    /// Lint and other warnings (the file is usable anyway).
    pub warnings: Vec<Diagnostic>,
    /// Every file read: the top-level file first, then includes in the order they were read.
    pub files: Vec<PathBuf>,
}

fn into_result(report: load::Report) -> Result<Loaded, Vec<Diagnostic>> {
    match report.policy {
        Some(policy) => Ok(Loaded {
            policy,
            warnings: report.diagnostics,
            files: report.files,
        }),
        None => Err(report.diagnostics),
    }
}

/// Read, parse and compile a rule file and everything it includes.
///
/// On failure, returns every diagnostic of every file: all errors (at least one) and the
/// warnings found alongside them, in file and line order.
pub fn load(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    into_result(load::load_path(path))
}

/// Like [`load()`] for text in memory named `name`; `include` paths are relative to the current
/// directory.
pub fn load_str(name: &str, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    into_result(load::load_text(name, text))
}

/// What `statewall check FILE [--json]` prints, and its exit code (0 valid, 1 errors).
///
/// Text: every diagnostic rendered as by [`Diagnostic`]'s `Display`, each followed by a blank
/// line, then a summary line `FILE: ok (N rules, M warnings)` or `FILE: E errors, M warnings`.
/// JSON: one object `{"file", "ok", "errors", "warnings", "rules"}` on one line.
pub fn check_report(path: &Path, json: bool) -> (i32, String) {
    let report = load::load_path(path);
    let (errors, warnings): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        report.diagnostics.iter().partition(|d| d.is_error());
    let ok = errors.is_empty();
    let code = if ok { 0 } else { 1 };
    let file = path.display().to_string();
    let out = if json {
        let v = json!({
            "file": file,
            "ok": ok,
            "errors": errors.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "warnings": warnings.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
            "rules": report.rule_count,
        });
        format!("{v}\n")
    } else {
        let mut s = String::new();
        for d in &report.diagnostics {
            s.push_str(&d.to_string());
            s.push_str("\n\n");
        }
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        if ok {
            s.push_str(&format!(
                "{file}: ok ({}, {})\n",
                plural(report.rule_count, "rule"),
                plural(warnings.len(), "warning")
            ));
        } else {
            s.push_str(&format!(
                "{file}: {}, {}\n",
                plural(errors.len(), "error"),
                plural(warnings.len(), "warning")
            ));
        }
        s
    };
    (code, out)
}
