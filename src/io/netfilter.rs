//! The iptables/ip6tables rules that divert traffic to statewall's queues.
//!
//! Everything statewall installs lives in one chain named [`CHAIN`], in the filter table (and,
//! with `netfilter.notrack`, in the raw table), reached by one unconditional jump inserted at
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
//! The rules are built as data ([`Plan`]), so `statewall print-rules` shows exactly what the
//! daemon runs. Commands run with `-w` (wait for the xtables lock). Removal deletes every jump
//! to the chain found in the hook chains (whatever their position), then flushes and deletes
//! the chain: it also cleans up after a run that was killed before it could clean up.

use std::fmt;
use std::process::Command;

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// One iptables/ip6tables invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Which program.
    pub family: Family,
    /// Arguments after `-w`.
    pub args: Vec<String>,
}

impl Rule {
    fn new(family: Family, args: &[&str]) -> Rule {
        Rule {
            family,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Runs the command; an error carries its stderr.
    pub fn run(&self) -> Result<String, NetfilterError> {
        let out = Command::new(self.family.program())
            .arg("-w")
            .args(&self.args)
            .output()
            .map_err(|source| NetfilterError::Spawn {
                command: self.to_string(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(NetfilterError::Failed {
                command: self.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -w {}", self.family.program(), self.args.join(" "))
    }
}

/// The rules for one configuration, in installation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Commands that create the chains and jumps.
    pub install: Vec<Rule>,
    /// Filter-table hook chains that jump to [`CHAIN`].
    hooks: Vec<Hook>,
    /// Raw-table chains that jump to [`CHAIN`] (empty without notrack).
    raw_hooks: Vec<&'static str>,
}

/// Where statewall's chains may be jumped to from: (table, hook chains). Removal looks in all
/// of them, so a configuration change between runs still cleans up.
const ALL_HOOKS: [(&str, &[&str]); 2] = [
    ("filter", &["FORWARD", "INPUT", "OUTPUT"]),
    ("raw", &["PREROUTING", "OUTPUT"]),
];

impl Plan {
    /// The rules for `queue` and `netfilter`.
    pub fn new(queue: &QueueSection, netfilter: &NetfilterSection) -> Plan {
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
            let r = |args: &[&str]| Rule::new(family, args);
            install.push(r(&["-N", CHAIN]));
            install.push(r(&["-A", CHAIN, "-i", "lo", "-j", "RETURN"]));
            install.push(r(&["-A", CHAIN, "-o", "lo", "-j", "RETURN"]));
            install.push(r(&[
                "-A", CHAIN, "-m", "mark", "--mark", &mark, "-j", "RETURN",
            ]));
            let mut queue_rule = vec!["-A", CHAIN];
            queue_rule.extend(target.iter().map(String::as_str));
            install.push(r(&queue_rule));
            for hook in &hooks {
                install.push(r(&["-I", hook.chain(), "1", "-j", CHAIN]));
            }
            if !raw_hooks.is_empty() {
                let raw = |args: &[&str]| {
                    let mut a = vec!["-t", "raw"];
                    a.extend_from_slice(args);
                    Rule::new(family, &a)
                };
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

    /// Removes leftovers, then installs the plan. On failure, whatever was installed is removed
    /// again before the error is returned.
    pub fn install(&self) -> Result<(), NetfilterError> {
        remove_all();
        for rule in &self.install {
            if let Err(e) = rule.run() {
                remove_all();
                return Err(e);
            }
        }
        Ok(())
    }
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
        t.push("--queue-cpu-fanout".to_string());
    }
    if q.fail_open {
        t.push("--queue-bypass".to_string());
    }
    t
}

/// Whether a [`CHAIN`] chain exists in the filter table (v4 or v6): a run that did not clean
/// up (killed, crashed) left it behind.
pub fn leftover_exists() -> bool {
    Family::BOTH
        .iter()
        .any(|f| Rule::new(*f, &["-S", CHAIN]).run().is_ok())
}

/// Removes every jump to [`CHAIN`] and the chain itself, in both tables and both families.
/// Missing pieces are fine; returns how many commands succeeded (0: nothing was there).
pub fn remove_all() -> usize {
    let mut done = 0;
    for family in Family::BOTH {
        for (table, hooks) in ALL_HOOKS {
            for hook in hooks {
                for rule in jumps_in(family, table, hook) {
                    match rule.run() {
                        Ok(_) => done += 1,
                        Err(e) => tracing::warn!(error = %e, "cannot remove jump"),
                    }
                }
            }
            for op in ["-F", "-X"] {
                if Rule::new(family, &["-t", table, op, CHAIN]).run().is_ok() {
                    done += 1;
                }
            }
        }
    }
    done
}

/// The `-D` commands that delete every rule of `hook` (in `table`) jumping to [`CHAIN`].
fn jumps_in(family: Family, table: &str, hook: &str) -> Vec<Rule> {
    let Ok(listing) = Rule::new(family, &["-t", table, "-S", hook]).run() else {
        return Vec::new();
    };
    deletions_for(family, table, hook, &listing)
}

/// Parses `iptables -S HOOK` output into deletions of the rules that jump to [`CHAIN`].
fn deletions_for(family: Family, table: &str, hook: &str, listing: &str) -> Vec<Rule> {
    listing
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let jumps = words.windows(2).any(|w| w == ["-j", CHAIN]);
            if words.len() < 2 || words[0] != "-A" || words[1] != hook || !jumps {
                return None;
            }
            let mut args = vec!["-t", table, "-D"];
            args.extend_from_slice(&words[1..]);
            Some(Rule::new(family, &args))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        Plan::new(&q, &n)
            .install
            .iter()
            .map(|r| r.to_string())
            .collect()
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
                "iptables -w -A STATEWALL -j NFQUEUE --queue-num 0",
                "iptables -w -I FORWARD 1 -j STATEWALL",
                "ip6tables -w -N STATEWALL",
                "ip6tables -w -A STATEWALL -i lo -j RETURN",
                "ip6tables -w -A STATEWALL -o lo -j RETURN",
                "ip6tables -w -A STATEWALL -m mark --mark 0x5717 -j RETURN",
                "ip6tables -w -A STATEWALL -j NFQUEUE --queue-num 0",
                "ip6tables -w -I FORWARD 1 -j STATEWALL",
            ]
        );
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

    #[test]
    fn leftover_jumps_are_found_wherever_they_are() {
        let listing = "-P FORWARD ACCEPT\n-A FORWARD -i eth0 -j ACCEPT\n-A FORWARD -j STATEWALL\n-A FORWARD -j STATEWALLX\n-A FORWARD -s 10.0.0.0/8 -j STATEWALL\n";
        let d: Vec<String> = deletions_for(Family::V6, "filter", "FORWARD", listing)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            d,
            vec![
                "ip6tables -w -t filter -D FORWARD -j STATEWALL",
                "ip6tables -w -t filter -D FORWARD -s 10.0.0.0/8 -j STATEWALL",
            ]
        );
    }
}
