//! The iptables/ip6tables rules that divert traffic to statewall's queues.
//!
//! Everything statewall installs lives in chains named [`CHAIN`] — in the filter table (and,
//! with `netfilter.notrack`, in the raw table) — reached by one unconditional jump inserted at
//! the top of each configured hook chain:
//!
//! ```text
//! -N STATEWALL
//! -A STATEWALL -i lo -j RETURN                          # never queue loopback (no lock-out)
//! -A STATEWALL -o lo -j RETURN
//! -A STATEWALL -m mark --mark 0x5717 -j RETURN          # statewall's own packets (RST, ICMP)
//! -A STATEWALL -j NFQUEUE --queue-num 0 [--queue-bypass]
//! -I FORWARD 1 -j STATEWALL                             # likewise INPUT / OUTPUT
//! ```
//!
//! With kernel connection tracking (no `notrack`), statewall's two connection mark bits
//! ([`crate::marks`], ADMITTED `A` and FASTPATH `F`, default 0x10000000 and 0x20000000) travel
//! between the kernel's connection and the packets statewall judges:
//!
//! ```text
//! # the kernel fast path ([offload] enable): the middle of flows statewall validated
//! -A STATEWALL -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark F/F -m conntrack --ctstate ESTABLISHED -j ACCEPT
//! -A STATEWALL ! -p tcp -m connmark --mark F/F -m conntrack --ctstate ESTABLISHED -j ACCEPT
//! # what the kernel knows of the flow, into the packet mark statewall receives
//! -A STATEWALL -j CONNMARK --restore-mark --nfmask A|F --ctmask A|F
//! # a packet of a fast-path flow that reaches the queue takes the flow off the fast path
//! -A STATEWALL -m connmark --mark F/F -m conntrack --ctstate ESTABLISHED -j CONNMARK --set-xmark 0x0/F
//! -A STATEWALL -j NFQUEUE ...
//! # after the filter table (an accept verdict moves the packet on to the next hook): the
//! # bits of statewall's verdict into the connection mark
//! -t mangle -N STATEWALL
//! -t mangle -A STATEWALL -m mark --mark A/A -j CONNMARK --save-mark --nfmask A|F --ctmask A|F
//! -t mangle -I POSTROUTING 1 -j STATEWALL               # security INPUT for the input hook
//! ```
//!
//! The restore tells statewall, per packet, whether the kernel associated the packet with a
//! connection statewall admitted (`A` set: the kernel's own TCP window check let it through)
//! and whether that connection is on the fast path (`F`). The verdict of a packet of a tracked
//! flow sets both bits (ADMITTED, and FASTPATH while the flow may bypass the queue); the save
//! rule, which only sees packets carrying `A`, writes them back, so a flow leaves the fast path
//! with the verdict that says so. Packets of the fast path never reach the restore, so they
//! never carry `A` in their packet mark and the save rule leaves them alone. Every other mark
//! bit stays as it is.
//!
//! A packet of a fast-path flow that reaches the queue (a SYN, FIN or RST, or anything the
//! kernel does not call ESTABLISHED) clears `F` in the connection mark before it is queued,
//! after the restore gave it `F` in its packet mark: the packets behind it (data after a RST,
//! the rest of a close) go to the queue too, in order, instead of overtaking it on the fast
//! path while statewall judges it; statewall's verdict puts the flow back on the fast path if
//! it still may be there. An ICMP error related to such a flow (`RELATED`, the flow's mark
//! restored) leaves it on the fast path: it is judged as an error, not as a packet of the flow.
//!
//! The rules are data ([`Plan`]: a list of [`Rule`]s, each naming its family and table), so
//! `statewall print-rules` shows exactly what the daemon installs, and more rules (in any
//! table, in a chain named [`CHAIN`]) are added by adding data.
//!
//! Changes are atomic: one `iptables-restore --noflush` / `ip6tables-restore --noflush`
//! transaction per family. An install first tests both transactions (`--test`), then commits
//! them; each one deletes the jumps of an earlier run (found in `iptables-save`, wherever they
//! are), empties or creates the chains and adds the new rules and jumps, so a restart replaces
//! the rules without a moment in which none are there. A failed transaction changes nothing;
//! if the second family fails after the first was committed, the first is removed again, so
//! both are alike. Removal ([`remove_all`], `statewall cleanup`) is one transaction per family
//! that deletes every jump to [`CHAIN`] and the chains, in every table where they exist.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::config::{Hook, NetfilterSection, QueueSection};

/// The chain statewall owns, in the filter table (and the raw table with notrack).
pub const CHAIN: &str = "STATEWALL";

/// An iptables command that failed.
#[derive(Debug, Error)]
pub enum NetfilterError {
    /// The program could not be started (not installed?).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program exited with an error.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
}

/// IP family, i.e. which program manages the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// Both families, v4 first.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// The program name.
    pub fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

/// One rule (or chain creation) of a plan: `iptables [-t TABLE] ARGS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Which program.
    pub family: Family,
    /// The table (`filter`, `raw`, `mangle`, ...).
    pub table: &'static str,
    /// The arguments: `-N CHAIN`, `-A CHAIN ...` or `-I HOOK 1 ...`.
    pub args: Vec<String>,
}

impl Rule {
    /// A rule of `family` in `table`.
    pub fn new(family: Family, table: &'static str, args: &[&str]) -> Rule {
        Rule {
            family,
            table,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The line of an `iptables-restore` file: `:CHAIN - [0:0]` for a chain creation (which
    /// also empties an existing chain), the arguments otherwise.
    fn restore_line(&self) -> String {
        match self.args.as_slice() {
            [n, chain] if n == "-N" => format!(":{chain} - [0:0]"),
            _ => self.args.join(" "),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -w", self.family.program())?;
        if self.table != "filter" {
            write!(f, " -t {}", self.table)?;
        }
        write!(f, " {}", self.args.join(" "))
    }
}

/// The rules for one configuration, in installation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Chain creations, rules and jumps, both families.
    pub install: Vec<Rule>,
    /// Filter-table hook chains that jump to [`CHAIN`].
    hooks: Vec<Hook>,
    /// Raw-table chains that jump to [`CHAIN`] (empty without notrack).
    raw_hooks: Vec<&'static str>,
}

impl Plan {
    /// The rules for `queue` and `netfilter`; `offload`: the kernel fast path is on (ignored
    /// with notrack, which leaves the kernel no connection to carry).
    pub fn new(queue: &QueueSection, netfilter: &NetfilterSection, offload: bool) -> Plan {
        let mut hooks: Vec<Hook> = Vec::new();
        for h in &netfilter.hooks {
            if !hooks.contains(h) {
                hooks.push(*h);
            }
        }
        let mut raw_hooks = Vec::new();
        if netfilter.notrack {
            if hooks.contains(&Hook::Forward) || hooks.contains(&Hook::Input) {
                raw_hooks.push("PREROUTING");
            }
            if hooks.contains(&Hook::Output) {
                raw_hooks.push("OUTPUT");
            }
        }
        let mark = format!("0x{:x}", netfilter.mark);
        let target = nfqueue_target(queue);
        let mut install = Vec::new();
        for family in Family::BOTH {
            let r = |args: &[&str]| Rule::new(family, "filter", args);
            install.push(r(&["-N", CHAIN]));
            install.push(r(&["-A", CHAIN, "-i", "lo", "-j", "RETURN"]));
            install.push(r(&["-A", CHAIN, "-o", "lo", "-j", "RETURN"]));
            install.push(r(&[
                "-A", CHAIN, "-m", "mark", "--mark", &mark, "-j", "RETURN",
            ]));
            if !netfilter.notrack {
                install.extend(mark_rules(family, netfilter, offload));
            }
            let mut queue_rule = vec!["-A", CHAIN];
            queue_rule.extend(target.iter().map(String::as_str));
            install.push(r(&queue_rule));
            for hook in &hooks {
                install.push(r(&["-I", hook.chain(), "1", "-j", CHAIN]));
            }
            if !netfilter.notrack {
                install.extend(connmark_rules(family, &hooks, netfilter));
            }
            if !raw_hooks.is_empty() {
                let raw = |args: &[&str]| Rule::new(family, "raw", args);
                install.push(raw(&["-N", CHAIN]));
                install.push(raw(&["-A", CHAIN, "-i", "lo", "-j", "RETURN"]));
                install.push(raw(&["-A", CHAIN, "-o", "lo", "-j", "RETURN"]));
                if !hooks.contains(&Hook::Input) {
                    // Forward only: keep kernel tracking for the gateway's own traffic, which
                    // statewall does not see (PREROUTING runs before the routing decision).
                    install.push(raw(&[
                        "-A",
                        CHAIN,
                        "-m",
                        "addrtype",
                        "--dst-type",
                        "LOCAL",
                        "-j",
                        "RETURN",
                    ]));
                }
                install.push(raw(&["-A", CHAIN, "-j", "CT", "--notrack"]));
                for hook in &raw_hooks {
                    install.push(raw(&["-I", hook, "1", "-j", CHAIN]));
                }
            }
        }
        Plan {
            install,
            hooks,
            raw_hooks,
        }
    }

    /// The hook chains diverted.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// Whether raw-table NOTRACK rules are part of the plan.
    pub fn notrack(&self) -> bool {
        !self.raw_hooks.is_empty()
    }

    /// The `iptables-restore --noflush` input that installs the plan's rules of `family` over
    /// what `saved` (that family's `iptables-save` output) shows: earlier jumps deleted,
    /// chains emptied (or created), rules and jumps added; a chain of ours left in a table the
    /// plan no longer uses is deleted.
    pub fn restore_input(&self, family: Family, saved: &str) -> String {
        let current = Installed::parse(saved);
        let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for rule in self.install.iter().filter(|r| r.family == family) {
            tables
                .entry(rule.table)
                .or_default()
                .push(rule.restore_line());
        }
        let mut text = String::new();
        for (table, lines) in &tables {
            text.push_str(&format!("*{table}\n"));
            // Declare first, so that a jump added below finds the chain; then delete old jumps.
            for line in lines.iter().filter(|l| l.starts_with(':')) {
                text.push_str(line);
                text.push('\n');
            }
            for jump in current.jumps_in(table) {
                text.push_str(&jump);
                text.push('\n');
            }
            for line in lines.iter().filter(|l| !l.starts_with(':')) {
                text.push_str(line);
                text.push('\n');
            }
            text.push_str("COMMIT\n");
        }
        for table in current.tables.keys() {
            if !tables.contains_key(table.as_str()) {
                text.push_str(&removal_for(&current, table));
            }
        }
        text
    }

    /// Installs the plan: both families tested, then committed (see the module doc). On
    /// failure nothing of the plan stays installed and the error says why.
    pub fn install(&self) -> Result<(), NetfilterError> {
        let mut inputs = Vec::new();
        for family in Family::BOTH {
            let saved = save(family)?;
            let input = self.restore_input(family, &saved);
            restore(family, &input, true)?;
            inputs.push((family, input));
        }
        let mut committed = Vec::new();
        for (family, input) in &inputs {
            if let Err(e) = restore(*family, input, false) {
                for done in committed {
                    if let Err(undo) = remove_family(done) {
                        tracing::error!(error = %undo, "cannot undo a partial install");
                    }
                }
                return Err(e);
            }
            committed.push(*family);
        }
        Ok(())
    }
}

/// What of statewall's a family's `iptables-save` output shows: per table, whether a
/// [`CHAIN`] chain exists and the rules (of any chain) that jump to it.
#[derive(Debug, Default)]
struct Installed {
    /// table → deletions (`-D HOOK ... -j STATEWALL`) of the jumps found in it.
    tables: BTreeMap<String, Vec<String>>,
}

impl Installed {
    fn parse(saved: &str) -> Installed {
        let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut table: Option<String> = None;
        let chain_decl = format!(":{CHAIN} ");
        for line in saved.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = Some(t.trim().to_string());
                continue;
            }
            let Some(t) = &table else { continue };
            if line.starts_with(&chain_decl) {
                tables.entry(t.clone()).or_default();
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let jumps = words.windows(2).any(|w| w == ["-j", CHAIN]);
            if words.len() >= 2 && words[0] == "-A" && words[1] != CHAIN && jumps {
                let mut d = vec!["-D"];
                d.extend_from_slice(&words[1..]);
                tables.entry(t.clone()).or_default().push(d.join(" "));
            }
        }
        Installed { tables }
    }

    fn jumps_in(&self, table: &str) -> Vec<String> {
        self.tables.get(table).cloned().unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// The restore text that deletes every jump to [`CHAIN`] and the chain in `table`.
fn removal_for(current: &Installed, table: &str) -> String {
    let mut text = format!("*{table}\n:{CHAIN} - [0:0]\n");
    for jump in current.jumps_in(table) {
        text.push_str(&jump);
        text.push('\n');
    }
    text.push_str(&format!("-X {CHAIN}\nCOMMIT\n"));
    text
}

/// The restore text that removes everything of statewall's `saved` shows (empty: nothing to
/// remove).
pub fn removal_input(saved: &str) -> String {
    let current = Installed::parse(saved);
    current
        .tables
        .keys()
        .map(|t| removal_for(&current, t))
        .collect()
}

/// `iptables-save` (or `ip6tables-save`) output.
fn save(family: Family) -> Result<String, NetfilterError> {
    let command = family.save().to_string();
    let out = Command::new(family.save())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetfilterError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetfilterError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs one `iptables-restore -w --noflush [--test]` transaction.
fn restore(family: Family, input: &str, test: bool) -> Result<(), NetfilterError> {
    let mut args = vec!["-w", "--noflush"];
    if test {
        args.push("--test");
    }
    let command = format!("{} {}", family.restore(), args.join(" "));
    let spawn_err = |source| NetfilterError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(family.restore())
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // A restore that stops early (a bad line) closes its input: its exit status and stderr
    // say why, not our broken pipe.
    let written = child
        .stdin
        .take()
        .map_or(Ok(()), |mut stdin| stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        written.map_err(spawn_err)
    } else {
        Err(NetfilterError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The filter-table rules before the queue: the fast path (with `offload`), then the restore
/// of statewall's connection mark bits into the packet mark (see the module doc).
fn mark_rules(family: Family, netfilter: &NetfilterSection, offload: bool) -> Vec<Rule> {
    let marks = netfilter.marks();
    let f = format!("0x{:x}", marks.fastpath());
    let marked = format!("{f}/{f}");
    let both = format!("0x{:x}", marks.mask());
    let r = |args: &[&str]| Rule::new(family, "filter", args);
    let mut rules = Vec::new();
    if offload {
        rules.push(r(&[
            "-A",
            CHAIN,
            "-p",
            "tcp",
            "--tcp-flags",
            "SYN,FIN,RST",
            "NONE",
            "-m",
            "connmark",
            "--mark",
            &marked,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "ACCEPT",
        ]));
        rules.push(r(&[
            "-A",
            CHAIN,
            "!",
            "-p",
            "tcp",
            "-m",
            "connmark",
            "--mark",
            &marked,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "ACCEPT",
        ]));
    }
    rules.push(r(&[
        "-A",
        CHAIN,
        "-j",
        "CONNMARK",
        "--restore-mark",
        "--nfmask",
        &both,
        "--ctmask",
        &both,
    ]));
    if offload {
        let clear = format!("0x0/{f}");
        rules.push(r(&[
            "-A",
            CHAIN,
            "-m",
            "connmark",
            "--mark",
            &marked,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-j",
            "CONNMARK",
            "--set-xmark",
            &clear,
        ]));
    }
    rules
}

/// The rules that save statewall's bits of the packet mark (ADMITTED, FASTPATH) into the
/// connection mark, after the filter table: mangle POSTROUTING for the forward and output
/// hooks, security INPUT for the input hook. Only packets carrying ADMITTED (restored from the
/// connection, or set by the verdict) are saved, and only statewall's two bits are written.
fn connmark_rules(family: Family, hooks: &[Hook], netfilter: &NetfilterSection) -> Vec<Rule> {
    let marks = netfilter.marks();
    let bit = format!("0x{:x}", marks.admitted());
    let bits = format!("{bit}/{bit}");
    let both = format!("0x{:x}", marks.mask());
    let save = [
        "-A",
        CHAIN,
        "-m",
        "mark",
        "--mark",
        &bits,
        "-j",
        "CONNMARK",
        "--save-mark",
        "--nfmask",
        &both,
        "--ctmask",
        &both,
    ];
    let mut rules = Vec::new();
    let forward_or_output = hooks
        .iter()
        .any(|h| matches!(h, Hook::Forward | Hook::Output));
    for (table, hook, wanted) in [
        ("mangle", "POSTROUTING", forward_or_output),
        ("security", "INPUT", hooks.contains(&Hook::Input)),
    ] {
        if wanted {
            rules.push(Rule::new(family, table, &["-N", CHAIN]));
            rules.push(Rule::new(family, table, &save));
            rules.push(Rule::new(family, table, &["-I", hook, "1", "-j", CHAIN]));
        }
    }
    rules
}

/// The NFQUEUE target arguments for the queue settings.
fn nfqueue_target(q: &QueueSection) -> Vec<String> {
    let mut t = vec!["-j".to_string(), "NFQUEUE".to_string()];
    if q.count <= 1 {
        t.extend(["--queue-num".to_string(), q.first.to_string()]);
    } else {
        let last = u32::from(q.first) + u32::from(q.count) - 1;
        t.extend([
            "--queue-balance".to_string(),
            format!("{}:{}", q.first, last),
        ]);
        if q.cpu_fanout {
            t.push("--queue-cpu-fanout".to_string());
        }
    }
    if q.fail_open {
        t.push("--queue-bypass".to_string());
    }
    t
}

/// Whether a [`CHAIN`] chain (or a jump to it) exists in any table, v4 or v6: a run that left
/// its rules (on_stop = "keep", killed, crashed) was here before.
pub fn leftover_exists() -> bool {
    Family::BOTH
        .iter()
        .any(|f| save(*f).is_ok_and(|s| !Installed::parse(&s).is_empty()))
}

fn remove_family(family: Family) -> Result<bool, NetfilterError> {
    let input = removal_input(&save(family)?);
    if input.is_empty() {
        return Ok(false);
    }
    restore(family, &input, false)?;
    Ok(true)
}

/// Removes every jump to [`CHAIN`] and the chains, in every table and both families, one
/// transaction per family. Returns whether anything was there.
pub fn remove_all() -> Result<bool, NetfilterError> {
    let mut removed = false;
    let mut first_error = None;
    for family in Family::BOTH {
        match remove_family(family) {
            Ok(r) => removed |= r,
            Err(e) => {
                tracing::error!(error = %e, "cannot remove the {} rules", family.program());
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(q: QueueSection, n: NetfilterSection, offload: bool) -> Vec<String> {
        Plan::new(&q, &n, offload)
            .install
            .iter()
            .map(|r| r.to_string())
            .collect()
    }

    fn plan(count: u16, fail_open: bool, hooks: Vec<Hook>, notrack: bool) -> Vec<String> {
        let q = QueueSection {
            count,
            fail_open,
            ..QueueSection::default()
        };
        let n = NetfilterSection {
            hooks,
            notrack,
            ..NetfilterSection::default()
        };
        plan_with(q, n, true)
    }

    #[test]
    fn one_queue_forward() {
        let p = plan(1, false, vec![Hook::Forward], false);
        assert_eq!(
            p,
            vec![
                "iptables -w -N STATEWALL",
                "iptables -w -A STATEWALL -i lo -j RETURN",
                "iptables -w -A STATEWALL -o lo -j RETURN",
                "iptables -w -A STATEWALL -m mark --mark 0x5717 -j RETURN",
                "iptables -w -A STATEWALL -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT",
                "iptables -w -A STATEWALL ! -p tcp -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT",
                "iptables -w -A STATEWALL -j CONNMARK --restore-mark --nfmask 0x30000000 --ctmask 0x30000000",
                "iptables -w -A STATEWALL -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j CONNMARK --set-xmark 0x0/0x20000000",
                "iptables -w -A STATEWALL -j NFQUEUE --queue-num 0",
                "iptables -w -I FORWARD 1 -j STATEWALL",
                "iptables -w -t mangle -N STATEWALL",
                "iptables -w -t mangle -A STATEWALL -m mark --mark 0x10000000/0x10000000 -j CONNMARK --save-mark --nfmask 0x30000000 --ctmask 0x30000000",
                "iptables -w -t mangle -I POSTROUTING 1 -j STATEWALL",
                "ip6tables -w -N STATEWALL",
                "ip6tables -w -A STATEWALL -i lo -j RETURN",
                "ip6tables -w -A STATEWALL -o lo -j RETURN",
                "ip6tables -w -A STATEWALL -m mark --mark 0x5717 -j RETURN",
                "ip6tables -w -A STATEWALL -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT",
                "ip6tables -w -A STATEWALL ! -p tcp -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT",
                "ip6tables -w -A STATEWALL -j CONNMARK --restore-mark --nfmask 0x30000000 --ctmask 0x30000000",
                "ip6tables -w -A STATEWALL -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j CONNMARK --set-xmark 0x0/0x20000000",
                "ip6tables -w -A STATEWALL -j NFQUEUE --queue-num 0",
                "ip6tables -w -I FORWARD 1 -j STATEWALL",
                "ip6tables -w -t mangle -N STATEWALL",
                "ip6tables -w -t mangle -A STATEWALL -m mark --mark 0x10000000/0x10000000 -j CONNMARK --save-mark --nfmask 0x30000000 --ctmask 0x30000000",
                "ip6tables -w -t mangle -I POSTROUTING 1 -j STATEWALL",
            ]
        );
    }

    #[test]
    fn fast_path_off_keeps_the_restore_and_follows_the_mask() {
        let n = NetfilterSection {
            connmark_mask: 0x0300_0000,
            ..NetfilterSection::default()
        };
        let p = plan_with(QueueSection::default(), n.clone(), false);
        assert!(!p.iter().any(|r| r.contains("-j ACCEPT")), "{p:?}");
        assert!(p.contains(
            &"iptables -w -A STATEWALL -j CONNMARK --restore-mark --nfmask 0x3000000 --ctmask 0x3000000"
                .to_string()
        ));
        let p = plan_with(QueueSection::default(), n, true);
        assert!(p.contains(
            &"ip6tables -w -A STATEWALL ! -p tcp -m connmark --mark 0x2000000/0x2000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT"
                .to_string()
        ));
        // The fast path and the restore come before the queue, in this order.
        let at = |needle: &str| p.iter().position(|r| r.contains(needle)).expect(needle);
        assert!(at("-p tcp --tcp-flags") < at("--restore-mark"));
        assert!(at("--restore-mark") < at("--set-xmark 0x0/0x2000000"));
        assert!(at("--set-xmark") < at("NFQUEUE"));
    }

    #[test]
    fn no_fast_path_without_kernel_tracking() {
        let n = NetfilterSection {
            notrack: true,
            ..NetfilterSection::default()
        };
        let p = plan_with(QueueSection::default(), n, true);
        assert!(
            !p.iter()
                .any(|r| r.contains("connmark") || r.contains("CONNMARK")),
            "{p:?}"
        );
    }

    #[test]
    fn admitted_bit_saved_after_the_filter_table_of_each_hook() {
        let p = plan(1, false, vec![Hook::Input], false);
        assert!(p.contains(&"iptables -w -t security -I INPUT 1 -j STATEWALL".to_string()));
        assert!(!p.iter().any(|r| r.contains("mangle")), "{p:?}");
        let p = plan(1, false, vec![Hook::Output, Hook::Input], false);
        assert!(p.contains(&"ip6tables -w -t mangle -I POSTROUTING 1 -j STATEWALL".to_string()));
        assert!(p.contains(&"ip6tables -w -t security -I INPUT 1 -j STATEWALL".to_string()));
        // The bit follows the configured mask.
        let n = NetfilterSection {
            connmark_mask: 0x0300_0000,
            ..NetfilterSection::default()
        };
        let p = Plan::new(&QueueSection::default(), &n, true);
        assert!(p.install.iter().any(|r| r.to_string().contains(
            "--mark 0x1000000/0x1000000 -j CONNMARK --save-mark --nfmask 0x3000000 --ctmask 0x3000000"
        )));
    }

    #[test]
    fn no_connmark_rules_without_kernel_tracking() {
        let p = plan(1, false, vec![Hook::Forward, Hook::Input], true);
        assert!(!p.iter().any(|r| r.contains("CONNMARK")), "{p:?}");
    }

    #[test]
    fn several_queues_balance_with_fanout_and_bypass() {
        let p = plan(2, true, vec![Hook::Forward, Hook::Input], false);
        assert!(p.contains(
            &"iptables -w -A STATEWALL -j NFQUEUE --queue-balance 0:1 --queue-cpu-fanout --queue-bypass"
                .to_string()
        ));
        assert!(p.contains(&"ip6tables -w -I INPUT 1 -j STATEWALL".to_string()));
        assert!(!p.iter().any(|r| r.contains("raw")));
        let q = QueueSection {
            count: 2,
            cpu_fanout: false,
            ..QueueSection::default()
        };
        let p = plan_with(q, NetfilterSection::default(), true);
        assert!(p.contains(&"iptables -w -A STATEWALL -j NFQUEUE --queue-balance 0:1".to_string()));
    }

    #[test]
    fn duplicate_hooks_jump_once() {
        let p = plan(1, false, vec![Hook::Forward, Hook::Forward], false);
        assert_eq!(p.iter().filter(|r| r.contains("-I FORWARD")).count(), 2);
    }

    #[test]
    fn notrack_forward_skips_local_destinations() {
        let p = plan(1, false, vec![Hook::Forward], true);
        let raw: Vec<&String> = p.iter().filter(|r| r.contains("-t raw")).collect();
        assert!(raw.contains(
            &&"iptables -w -t raw -A STATEWALL -m addrtype --dst-type LOCAL -j RETURN".to_string()
        ));
        assert!(raw.contains(&&"ip6tables -w -t raw -A STATEWALL -j CT --notrack".to_string()));
        assert!(raw.contains(&&"iptables -w -t raw -I PREROUTING 1 -j STATEWALL".to_string()));
        assert!(!raw.iter().any(|r| r.contains("-I OUTPUT")));
    }

    #[test]
    fn notrack_with_input_and_output_tracks_nothing_diverted() {
        let p = plan(1, false, vec![Hook::Input, Hook::Output], true);
        assert!(!p.iter().any(|r| r.contains("addrtype")));
        assert!(p.contains(&"iptables -w -t raw -I OUTPUT 1 -j STATEWALL".to_string()));
        assert!(p.contains(&"iptables -w -t raw -I PREROUTING 1 -j STATEWALL".to_string()));
    }

    const SAVED: &str = "# Generated by iptables-save\n*raw\n:PREROUTING ACCEPT [0:0]\n:STATEWALL - [0:0]\n-A PREROUTING -j STATEWALL\n-A STATEWALL -j CT --notrack\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:STATEWALL - [0:0]\n-A FORWARD -i eth0 -j ACCEPT\n-A FORWARD -j STATEWALL\n-A FORWARD -j STATEWALLX\n-A FORWARD -s 10.0.0.0/8 -j STATEWALL\n-A STATEWALL -j NFQUEUE --queue-num 0\nCOMMIT\n";

    #[test]
    fn leftover_jumps_are_found_wherever_they_are() {
        let i = Installed::parse(SAVED);
        assert_eq!(
            i.jumps_in("filter"),
            vec![
                "-D FORWARD -j STATEWALL",
                "-D FORWARD -s 10.0.0.0/8 -j STATEWALL"
            ]
        );
        assert_eq!(i.jumps_in("raw"), vec!["-D PREROUTING -j STATEWALL"]);
        assert!(Installed::parse("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn install_replaces_an_earlier_run_in_one_transaction_per_table() {
        let q = QueueSection::default();
        let n = NetfilterSection::default();
        let text = Plan::new(&q, &n, true).restore_input(Family::V4, SAVED);
        assert_eq!(
            text,
            "*filter\n:STATEWALL - [0:0]\n-D FORWARD -j STATEWALL\n-D FORWARD -s 10.0.0.0/8 -j STATEWALL\n\
             -A STATEWALL -i lo -j RETURN\n-A STATEWALL -o lo -j RETURN\n\
             -A STATEWALL -m mark --mark 0x5717 -j RETURN\n\
             -A STATEWALL -p tcp --tcp-flags SYN,FIN,RST NONE -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT\n\
             -A STATEWALL ! -p tcp -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j ACCEPT\n\
             -A STATEWALL -j CONNMARK --restore-mark --nfmask 0x30000000 --ctmask 0x30000000\n\
             -A STATEWALL -m connmark --mark 0x20000000/0x20000000 -m conntrack --ctstate ESTABLISHED -j CONNMARK --set-xmark 0x0/0x20000000\n\
             -A STATEWALL -j NFQUEUE --queue-num 0\n\
             -I FORWARD 1 -j STATEWALL\nCOMMIT\n\
             *mangle\n:STATEWALL - [0:0]\n\
             -A STATEWALL -m mark --mark 0x10000000/0x10000000 -j CONNMARK --save-mark --nfmask 0x30000000 --ctmask 0x30000000\n\
             -I POSTROUTING 1 -j STATEWALL\nCOMMIT\n\
             *raw\n:STATEWALL - [0:0]\n-D PREROUTING -j STATEWALL\n-X STATEWALL\nCOMMIT\n"
        );
        // Nothing there before: no deletions, no raw table touched.
        let fresh = Plan::new(&q, &n, true).restore_input(Family::V6, "");
        assert!(!fresh.contains("-D ") && !fresh.contains("*raw"), "{fresh}");
        assert!(
            fresh.ends_with("-I POSTROUTING 1 -j STATEWALL\nCOMMIT\n"),
            "{fresh}"
        );
    }

    #[test]
    fn removal_deletes_jumps_then_chains_where_they_exist() {
        assert_eq!(
            removal_input(SAVED),
            "*filter\n:STATEWALL - [0:0]\n-D FORWARD -j STATEWALL\n-D FORWARD -s 10.0.0.0/8 -j STATEWALL\n-X STATEWALL\nCOMMIT\n\
             *raw\n:STATEWALL - [0:0]\n-D PREROUTING -j STATEWALL\n-X STATEWALL\nCOMMIT\n"
        );
        assert_eq!(removal_input("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"), "");
    }
}
