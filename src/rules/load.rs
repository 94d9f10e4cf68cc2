//! The loader: reads files, follows includes, resolves sets and compiles rules into a
//! [`Policy`], collecting every diagnostic of every file on the way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ast::{AddrExpr, IfaceAst, RuleAst, Stmt};
use super::diag::{did_you_mean, whole_file, Diagnostic, Loc, Severity};
use super::lint;
use super::matcher::{normalize_ports, Addrs, Iface, Match};
use super::parser::parse_line;
use super::policy::{Policy, RateLimit, Rule, RuleAction, RuleInfo};
use crate::verdict::ProbeMode;

/// Includes nested deeper than this are refused (a cycle through different spellings of one
/// path, or a mistake).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Everything a load produced, whether or not it succeeded.
#[derive(Debug)]
pub(crate) struct Report {
    /// `Some` when there are no errors.
    pub policy: Option<Policy>,
    /// Errors and warnings, in the order found (per file in line order, lint last).
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read.
    pub files: Vec<PathBuf>,
    /// Rules compiled (rules with errors are not counted).
    pub rule_count: usize,
}

struct SetDef {
    addrs: Addrs,
    loc: Loc,
    used: bool,
}

#[derive(Default)]
struct Loader {
    diags: Vec<Diagnostic>,
    files: Vec<PathBuf>,
    /// Canonical paths of the files being read, outermost first, with their display names.
    stack: Vec<(PathBuf, String)>,
    /// Canonical paths already read, with where they were included.
    seen: HashMap<PathBuf, String>,
    sets: HashMap<String, SetDef>,
    /// Set names in definition order, for deterministic unused-set warnings.
    set_order: Vec<String>,
    policy: Option<(RuleAction, Loc)>,
    probes: Option<(ProbeMode, Loc)>,
    rules: Vec<Rule>,
    locs: Vec<Loc>,
}

/// Load a file and everything it includes.
pub(crate) fn load_path(path: &Path) -> Report {
    let mut l = Loader::default();
    let name = path.display().to_string();
    l.file(path, name.clone(), None);
    l.finish(&name, Some(path.to_path_buf()))
}

/// Load rules from text named `name`; includes are resolved relative to the current directory.
pub(crate) fn load_text(name: &str, text: &str) -> Report {
    let mut l = Loader::default();
    l.text(Arc::from(name), None, text);
    l.finish(name, None)
}

impl Loader {
    /// Read one file. `from` is the `include` statement that names it, if any.
    fn file(&mut self, path: &Path, display: String, from: Option<&Loc>) {
        let report = |l: &mut Loader, msg: String| match from {
            Some(loc) => l.diags.push(loc.diag(Severity::Error, msg, None)),
            None => l.diags.push(whole_file(&display, Severity::Error, msg)),
        };
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => {
                let what = if from.is_some() {
                    "include file"
                } else {
                    "rule file"
                };
                return report(self, format!("cannot read {what} `{display}`: {e}"));
            }
        };
        if let Some(pos) = self.stack.iter().position(|(p, _)| *p == canonical) {
            let chain: Vec<&str> = self.stack[pos..].iter().map(|(_, d)| d.as_str()).collect();
            return report(
                self,
                format!("include cycle: {} -> {display}", chain.join(" -> ")),
            );
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return report(
                self,
                format!("includes nested more than {MAX_INCLUDE_DEPTH} deep"),
            );
        }
        if let Some(first) = self.seen.get(&canonical) {
            if let Some(loc) = from {
                let msg = format!("`{display}` is already included (at {first}); skipped");
                self.diags.push(loc.diag(Severity::Warning, msg, None));
            }
            return;
        }
        let text = match crate::files::read_regular(path, crate::files::MAX_FILE) {
            Ok(t) => t,
            Err(e) => {
                let what = if from.is_some() {
                    "include file"
                } else {
                    "rule file"
                };
                return report(self, format!("cannot read {what} `{display}`: {e}"));
            }
        };
        let included_at = from.map_or_else(|| "top level".to_owned(), Loc::short);
        self.seen.insert(canonical.clone(), included_at);
        self.files.push(path.to_path_buf());
        self.stack.push((canonical, display.clone()));
        let dir = path.parent().map(Path::to_path_buf);
        self.text(
            Arc::from(display.as_str()),
            Some(dir.unwrap_or_default()),
            &text,
        );
        self.stack.pop();
    }

    /// Process the text of one file. `dir` is the folder includes are relative to (`None`:
    /// the current directory).
    fn text(&mut self, file: Arc<str>, dir: Option<PathBuf>, text: &str) {
        for (i, line) in text.lines().enumerate() {
            let loc = Loc {
                file: file.clone(),
                line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                col: first_col(line),
                source_line: line.to_owned(),
            };
            let parsed = parse_line(line);
            for issue in parsed.issues {
                self.diags.push(loc.issue(issue));
            }
            if let Some(stmt) = parsed.stmt {
                self.stmt(stmt, &loc, dir.as_deref());
            }
        }
    }

    fn error(&mut self, loc: &Loc, msg: String, hint: Option<String>) {
        self.diags.push(loc.diag(Severity::Error, msg, hint));
    }

    fn stmt(&mut self, stmt: Stmt, loc: &Loc, dir: Option<&Path>) {
        match stmt {
            Stmt::Policy { action } => match &self.policy {
                Some((_, first)) => {
                    let hint = Some(format!("`policy` is first set at {}", first.short()));
                    self.error(loc, "duplicate `policy`".into(), hint);
                }
                None => self.policy = Some((action, loc.clone())),
            },
            Stmt::Probes { mode } => match &self.probes {
                Some((_, first)) => {
                    let hint = Some(format!("`probes` is first set at {}", first.short()));
                    self.error(loc, "duplicate `probes`".into(), hint);
                }
                None => self.probes = Some((mode, loc.clone())),
            },
            Stmt::Set { name, col, addrs } => {
                let here = loc.at(col);
                if let Some(first) = self.sets.get(&name) {
                    let hint = Some(format!(
                        "`${name}` is first defined at {}",
                        first.loc.short()
                    ));
                    self.error(&here, format!("set `${name}` defined twice"), hint);
                    return;
                }
                if let Some(addrs) = self.resolve(&addrs, loc) {
                    self.set_order.push(name.clone());
                    self.sets.insert(
                        name,
                        SetDef {
                            addrs,
                            loc: here,
                            used: false,
                        },
                    );
                }
            }
            Stmt::Include { path, col } => {
                let here = loc.at(col);
                let display = match dir {
                    Some(_) => Path::new(&*loc.file)
                        .parent()
                        .unwrap_or_else(|| Path::new(""))
                        .join(&path)
                        .display()
                        .to_string(),
                    None => path.clone(),
                };
                let full = match dir {
                    Some(d) => d.join(&path),
                    None => PathBuf::from(&path),
                };
                self.file(&full, display, Some(&here));
            }
            Stmt::Rule(r) => self.rule(*r, loc),
        }
    }

    /// Resolve an address expression; `None` (with errors reported) when a set is unknown.
    fn resolve(&mut self, expr: &AddrExpr, loc: &Loc) -> Option<Addrs> {
        let mut out = Addrs::default();
        if self.resolve_into(expr, loc, &mut out) {
            out.normalize();
            Some(out)
        } else {
            None
        }
    }

    fn resolve_into(&mut self, expr: &AddrExpr, loc: &Loc, out: &mut Addrs) -> bool {
        match expr {
            AddrExpr::Any => {
                out.any = true;
                true
            }
            AddrExpr::Net(ipnet::IpNet::V4(n)) => {
                out.v4.push(*n);
                true
            }
            AddrExpr::Net(ipnet::IpNet::V6(n)) => {
                out.v6.push(*n);
                true
            }
            AddrExpr::Set { name, col } => match self.sets.get_mut(name) {
                Some(def) => {
                    def.used = true;
                    out.any |= def.addrs.any;
                    out.v4.extend_from_slice(&def.addrs.v4);
                    out.v6.extend_from_slice(&def.addrs.v6);
                    true
                }
                None => {
                    let hint = did_you_mean(name, self.set_order.iter().map(String::as_str))
                        .map(|h| h.replacen('`', "`$", 1))
                        .or_else(|| {
                            Some(format!("define it before use: `set ${name} = {{ ... }}`"))
                        });
                    self.error(&loc.at(*col), format!("unknown set `${name}`"), hint);
                    false
                }
            },
            AddrExpr::List(items) => {
                let mut ok = true;
                for item in items {
                    ok &= self.resolve_into(item, loc, out);
                }
                ok
            }
        }
    }

    fn rule(&mut self, r: RuleAst, loc: &Loc) {
        let (src, sport) = match r.from {
            Some(ep) => (self.resolve(&ep.addrs, loc), ep.ports),
            None => (Some(Addrs::any()), None),
        };
        let (dst, dport) = match r.to {
            Some(ep) => (self.resolve(&ep.addrs, loc), ep.ports),
            None => (Some(Addrs::any()), None),
        };
        let (Some(src), Some(dst)) = (src, dst) else {
            return;
        };
        let icmp_types = r.icmp_types.map(|types| {
            let mut bits = [0u64; 4];
            for t in types {
                bits[usize::from(t >> 6)] |= 1u64 << (t & 63);
            }
            bits
        });
        let m = Match {
            in_iface: r.in_iface.map(iface),
            out_iface: r.out_iface.map(iface),
            proto: r.proto,
            src,
            sport: sport.map(normalize_ports),
            dst,
            dport: dport.map(normalize_ports),
            icmp_types,
        };
        let info = RuleInfo {
            id: self.rules.len(),
            file: loc.file.clone(),
            line: loc.line,
            label: r.label,
            log: r.log,
            action: r.action,
            text: loc.source_line.trim().to_owned(),
        };
        let limit = r
            .limit
            .map(|l| RateLimit::new(l.count, l.per_nanos, l.burst));
        self.rules.push(Rule { info, m, limit });
        self.locs.push(loc.clone());
    }

    /// Whole-file checks, lint, compilation. `top` is the top-level file's name.
    fn finish(mut self, top: &str, source: Option<PathBuf>) -> Report {
        // Whole-file notes only make sense once the top-level file was read.
        let read_something = !self.files.is_empty() || source.is_none();
        if self.policy.is_none() && read_something {
            let file = top;
            self.diags.push(whole_file(
                file,
                Severity::Warning,
                "no `policy` line: new connections that match no rule are dropped".into(),
            ));
        }
        for name in &self.set_order {
            if let Some(def) = self.sets.get(name) {
                if !def.used {
                    self.diags.push(def.loc.diag(
                        Severity::Warning,
                        format!("set `${name}` is never used"),
                        None,
                    ));
                }
            }
        }
        if let Some((RuleAction::Allow, loc)) = &self.policy {
            if !self
                .rules
                .iter()
                .any(|r| r.info.action != RuleAction::Allow)
            {
                self.diags.push(
                    loc.diag(
                        Severity::Warning,
                        "`policy allow` with no drop or reject rule: every connection is allowed"
                            .into(),
                        Some("use `policy drop` and allow what is needed".into()),
                    ),
                );
            }
        }
        let policy = Policy::new(
            self.rules,
            self.policy.map_or(RuleAction::Drop, |(a, _)| a),
            self.probes.map(|(m, _)| m),
            source,
        );
        self.diags.extend(lint::lint(&policy, &self.locs));
        let rule_count = policy.rule_count();
        let ok = !self.diags.iter().any(Diagnostic::is_error);
        let policy = ok.then_some(policy);
        Report {
            policy,
            diagnostics: self.diags,
            files: self.files,
            rule_count,
        }
    }
}

fn iface(i: IfaceAst) -> Iface {
    Iface {
        name: i.name.into_boxed_str(),
        wildcard: i.wildcard,
    }
}

/// Column of the first non-blank character (1 for a blank line).
fn first_col(line: &str) -> u32 {
    let n = line.chars().take_while(|c| c.is_whitespace()).count();
    if n == line.chars().count() {
        1
    } else {
        u32::try_from(n + 1).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        load_text("t.rules", text)
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect()
    }

    #[test]
    fn all_errors_of_a_file_are_reported() {
        let e = errors(
            "policy drop\nalow tcp\nallow tcp to any port 70000\nallow to $nope\npolicy allow\n",
        );
        assert_eq!(
            e,
            vec![
                "2:1: unknown keyword `alow`",
                "3:23: port 70000 out of range (0-65535)",
                "4:10: unknown set `$nope`",
                "5:1: duplicate `policy`",
            ]
        );
    }

    #[test]
    fn sets_resolve_nested_and_track_use() {
        let r = load_text(
            "t.rules",
            "policy drop\nset $a = { 192.0.2.1, 2001:db8::1 }\nset $b = { $a, 192.0.2.0/24 }\nset $c = any\ndrop to $b\n",
        );
        let p = r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics));
        let dst = &p.compiled()[0].m.dst;
        assert_eq!(dst.v4, vec!["192.0.2.0/24".parse().unwrap_or_default()]);
        assert_eq!(dst.v6.len(), 1);
        let unused: Vec<_> = r.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(unused, vec!["set `$c` is never used"]);
    }

    #[test]
    fn set_defined_twice_and_typo_hint() {
        let r = load_text(
            "t.rules",
            "set $web = { 192.0.2.1 }\nset $web = any\nallow to $wbe\n",
        );
        let d: Vec<_> = r.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert_eq!(d[0].message, "set `$web` defined twice");
        assert_eq!(d[0].col, 5);
        assert_eq!(
            d[0].hint.as_deref(),
            Some("`$web` is first defined at t.rules:1")
        );
        assert_eq!(d[1].hint.as_deref(), Some("did you mean `$web`?"));
    }

    #[test]
    fn missing_policy_warning_names_the_file_even_without_rules() {
        let r = load_text("empty.rules", "# nothing\n");
        assert_eq!(r.diagnostics.len(), 1);
        assert_eq!(r.diagnostics[0].file, "empty.rules");
    }

    #[test]
    fn missing_policy_defaults_to_drop_with_warning() {
        let r = load_text("t.rules", "allow tcp\n");
        let p = r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics));
        assert_eq!(p.default_action(), RuleAction::Drop);
        assert_eq!(
            r.diagnostics[0].to_string(),
            "t.rules: warning: no `policy` line: new connections that match no rule are dropped"
        );
    }

    #[test]
    fn rule_info_is_filled() {
        let r = load_text(
            "t.rules",
            "policy drop\n  allow tcp to any port 22 log label \"ssh\" # admins\n",
        );
        let p = r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics));
        let info = p.rules().next().cloned();
        let info = info.unwrap_or_else(|| panic!("no rule"));
        assert_eq!((info.id, info.line, info.log), (0, 2, true));
        assert_eq!(info.label.as_deref(), Some("ssh"));
        assert_eq!(
            info.text,
            "allow tcp to any port 22 log label \"ssh\" # admins"
        );
        assert_eq!(&*info.file, "t.rules");
    }

    #[test]
    fn first_col_skips_indentation() {
        assert_eq!(first_col("  x"), 3);
        assert_eq!(first_col(""), 1);
        assert_eq!(first_col("   "), 1);
    }
}
