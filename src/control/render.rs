//! Human-readable output of the control commands: aligned columns an admin can read and grep.
//! Every function returns the whole text, newline-terminated (empty lists say so in words).

use std::fmt::Write as _;

use crate::time::Civil;

use super::protocol::{
    BlockEntry, BlockReport, ConnEntry, HaReport, KillReport, ReloadReport, RuleEntry, StatsReport,
    Status, UnblockReport,
};

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Lays `rows` out in columns separated by two spaces, no trailing blanks.
fn columns(rows: &[Vec<String>], align: &[Align]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let w = widths[i];
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => {
                    let _ = write!(line, "{cell:<w$}");
                }
                Align::Right => {
                    let _ = write!(line, "{cell:>w$}");
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `3d 4h 5m 6s`, leading zero units left out (`0s` for zero).
pub fn duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .map(|(v, u)| format!("{v}{u}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unix seconds as RFC 3339 UTC, e.g. `2026-11-24T19:54:02Z`.
pub fn rfc3339(unix: u64) -> String {
    Civil::from_unix(unix).rfc3339()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `statewall status`.
pub fn status(s: &Status) -> String {
    let mut out = format!(
        "statewall {}, pid {}, up {}\n",
        s.version,
        s.pid,
        duration(s.uptime_secs)
    );
    let rules = match &s.rules_file {
        Some(file) => {
            let mut r = format!(
                "{} ({}",
                file.display(),
                plural(s.rules as u64, "rule", "rules")
            );
            if let Some(at) = s.rules_loaded_at {
                let _ = write!(r, ", loaded {}", rfc3339(at));
            }
            r.push(')');
            r
        }
        None => "none (every new connection is allowed)".into(),
    };
    let pct = if s.max_entries > 0 {
        s.entries as f64 * 100.0 / s.max_entries as f64
    } else {
        0.0
    };
    out.push_str(&columns(
        &[
            vec!["rules".into(), rules],
            vec![
                "connections".into(),
                format!("{} of {} ({pct:.1}%)", s.entries, s.max_entries),
            ],
            vec!["blocked".into(), plural(s.blocked, "source", "sources")],
        ]
        .into_iter()
        .chain((!s.role.is_empty()).then(|| vec!["role".into(), s.role.clone()]))
        .collect::<Vec<_>>(),
        &[Align::Left, Align::Left],
    ));
    if !s.queues.is_empty() {
        out.push('\n');
        let mut rows = vec![vec![
            "queue".to_string(),
            "packets".into(),
            "accepted".into(),
            "dropped".into(),
            "errors".into(),
        ]];
        rows.extend(s.queues.iter().map(|q| {
            vec![
                q.queue.to_string(),
                q.packets.to_string(),
                q.accepted.to_string(),
                q.dropped.to_string(),
                q.errors.to_string(),
            ]
        }));
        out.push_str(&columns(&rows, &[Align::Right; 5]));
    }
    out.push('\n');
    out.push_str(&counts("drops", &s.drops, "no drops"));
    out
}

/// A titled, indented name/count list.
fn counts<'a>(
    title: &str,
    items: impl IntoIterator<Item = (&'a String, &'a u64)>,
    empty: &str,
) -> String {
    let rows: Vec<Vec<String>> = items
        .into_iter()
        .map(|(k, v)| vec![format!("  {k}"), v.to_string()])
        .collect();
    if rows.is_empty() {
        return format!("{title}: {empty}\n");
    }
    format!("{title}\n{}", columns(&rows, &[Align::Left, Align::Right]))
}

/// `statewall stats`: every counter of the engine, then drops per reason and states.
pub fn stats(s: &StatsReport) -> String {
    let rows: Vec<Vec<String>> = s
        .stats
        .rows()
        .iter()
        .map(|(k, v)| vec![k.to_string(), v.to_string()])
        .collect();
    let mut out = columns(&rows, &[Align::Left, Align::Right]);
    out.push('\n');
    let drops = s.stats.drops.iter().map(|(k, v)| (k, v));
    out.push_str(&counts("drops", drops, "none"));
    out.push('\n');
    out.push_str(&counts("states", &s.states, "no connections"));
    out
}

/// `statewall conns`, one line per connection like `conntrack -L`, columns aligned.
pub fn conns(list: &[ConnEntry]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.proto.clone(),
                c.state.clone(),
                format!("src={}", c.src),
                format!("dst={}", c.dst),
                format!("sport={}", c.sport),
                format!("dport={}", c.dport),
                format!("expires={}", c.expires_in),
                format!("packets={}/{}", c.orig_packets, c.reply_packets),
                format!("bytes={}/{}", c.orig_bytes, c.reply_bytes),
                if c.assured { "[ASSURED]" } else { "" }.to_string(),
                if c.offloaded { "[OFFLOAD]" } else { "" }.to_string(),
                c.rule
                    .as_ref()
                    .map_or_else(String::new, |r| format!("rule={r}")),
                c.label
                    .as_ref()
                    .map_or_else(String::new, |l| format!("label=\"{l}\"")),
            ]
        })
        .collect();
    columns(&rows, &[])
}

/// `statewall kill`.
pub fn kill(r: &KillReport) -> String {
    let mut out = format!("{} killed", plural(r.killed, "connection", "connections"));
    if r.rsts > 0 {
        let _ = write!(out, " ({} sent)", plural(r.rsts, "RST", "RSTs"));
    }
    out.push('\n');
    out
}

/// `statewall block`.
pub fn block(r: &BlockReport) -> String {
    let net = if r.net.prefix_len() == r.net.max_prefix_len() {
        r.net.addr().to_string()
    } else {
        r.net.to_string()
    };
    format!("blocked {net} for {}\n", duration(r.ttl_secs))
}

/// `statewall rules [-v]`: one line per rule (`FILE:LINE`, hits, action, label), and with
/// `verbose` the live connections each admitted and its source line.
pub fn rules(list: &[RuleEntry], verbose: bool) -> String {
    if list.is_empty() {
        return "no rules\n".into();
    }
    let mut head = vec!["rule".to_string(), "hits".into()];
    if verbose {
        head.push("conns".into());
    }
    head.extend(["action".into(), "label".into()]);
    if verbose {
        head.push("text".into());
    }
    let mut rows = vec![head];
    rows.extend(list.iter().map(|r| {
        let mut row = vec![r.rule.clone(), r.hits.to_string()];
        if verbose {
            row.push(r.conns.to_string());
        }
        row.push(r.action.clone());
        row.push(r.label.clone().unwrap_or_default());
        if verbose {
            row.push(r.text.clone());
        }
        row
    }));
    let right = if verbose {
        vec![Align::Left, Align::Right, Align::Right]
    } else {
        vec![Align::Left, Align::Right]
    };
    columns(&rows, &right)
}

/// `statewall conns` summary line (printed on stderr, like `conntrack -L`).
pub fn conns_summary(n: usize) -> String {
    format!("{} shown\n", plural(n as u64, "connection", "connections"))
}

/// `statewall reload` succeeded.
pub fn reload_ok(r: &ReloadReport) -> String {
    let file = r
        .rules_file
        .as_ref()
        .map_or_else(|| "no rule file".to_string(), |f| f.display().to_string());
    let mut out = format!(
        "reloaded {file}: {} in use\n",
        plural(r.rules as u64, "rule", "rules")
    );
    for w in &r.warnings {
        let _ = writeln!(out, "{w}");
    }
    if r.revoked > 0 {
        let _ = writeln!(
            out,
            "{} no longer allowed and closed",
            plural(r.revoked, "connection", "connections")
        );
    }
    out
}

/// A failed command: the summary, then every detail line (all errors of a rejected rule file).
pub fn failure(command: &str, error: &str, details: &[String]) -> String {
    let mut out = format!("statewall {command}: {error}\n");
    for d in details {
        let _ = writeln!(out, "{d}");
    }
    if command == "reload" {
        out.push_str("the running rules are unchanged\n");
    }
    out
}

/// `statewall blocks`.
pub fn blocks(list: &[BlockEntry]) -> String {
    if list.is_empty() {
        return "no blocked sources\n".into();
    }
    let mut rows = vec![vec![
        "blocked".to_string(),
        "source".into(),
        "level".into(),
        "remaining".into(),
        "ttl".into(),
        "reason".into(),
    ]];
    rows.extend(list.iter().map(|b| {
        let net = if b.net.prefix_len() == b.net.max_prefix_len() {
            b.net.addr().to_string()
        } else {
            b.net.to_string()
        };
        vec![
            net,
            b.src.to_string(),
            b.level.to_string(),
            duration(b.remaining_secs),
            duration(b.ttl_secs),
            b.reason.clone(),
        ]
    }));
    columns(
        &rows,
        &[
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
        ],
    )
}

/// `statewall takeover` / `statewall standby`.
pub fn ha(r: &HaReport) -> String {
    let mut out = format!("role: {}\n", r.role);
    if r.seen > 0 || r.adopted > 0 {
        let _ = writeln!(
            out,
            "kernel table: {} with the ADMITTED mark: {} adopted, {} refreshed, {} known, {} \
             without room, {} skipped",
            plural(r.seen, "flow", "flows"),
            r.adopted,
            r.refreshed,
            r.known,
            r.no_room,
            r.skipped
        );
    }
    if r.following > 0 {
        let _ = writeln!(
            out,
            "following the kernel table: {} (learned anew from their next packets)",
            plural(r.following, "flow", "flows")
        );
    }
    out
}

/// `statewall unblock`.
pub fn unblock(r: &UnblockReport) -> String {
    if r.unblocked {
        format!("unblocked {}\n", r.addr)
    } else {
        format!("{} was not blocked\n", r.addr)
    }
}

/// One event of `statewall events` as a line of text, like `conntrack -E`:
/// `TIME [NEW] tcp src=198.51.100.2 sport=40000 dst=203.0.113.2 dport=80 state=SYN_SENT ...`
/// (the flow first, then the other fields in name order; null fields left out).
pub fn event(v: &serde_json::Value) -> String {
    let Some(obj) = v.as_object() else {
        return v.to_string();
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let time = obj.get("time").map(text).unwrap_or_default();
    let kind = obj.get("event").map(text).unwrap_or_default();
    let mut out = format!("{time} [{}]", kind.to_ascii_uppercase());
    if let Some(p) = obj.get("proto") {
        let _ = write!(out, " {}", text(p));
    }
    let first = ["src", "sport", "dst", "dport"];
    let skip = ["time", "event", "proto"];
    for key in first {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            let _ = write!(out, " {key}={}", text(v));
        }
    }
    let mut rest: Vec<(&String, &serde_json::Value)> = obj
        .iter()
        .filter(|(k, v)| {
            !v.is_null() && !first.contains(&k.as_str()) && !skip.contains(&k.as_str())
        })
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in rest {
        let _ = write!(out, " {k}={}", text(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::QueueStatus;
    use crate::engine::Stats;
    use std::path::PathBuf;

    #[test]
    fn events_as_text() {
        let v = serde_json::json!({"time": "2026-12-02T01:30:05.123Z", "event": "new",
            "proto": "tcp", "src": "198.51.100.2", "sport": 40000, "dst": "203.0.113.2",
            "dport": 80, "state": "SYN_SENT", "rule": "gw.rules:4", "label": null,
            "adopted": false});
        assert_eq!(
            event(&v),
            "2026-12-02T01:30:05.123Z [NEW] tcp src=198.51.100.2 sport=40000 dst=203.0.113.2 \
             dport=80 adopted=false rule=gw.rules:4 state=SYN_SENT"
        );
        let lost = serde_json::json!({"time": "t", "event": "lost", "events": 3});
        assert_eq!(event(&lost), "t [LOST] events=3");
    }

    #[test]
    fn kill_block_and_rules() {
        assert_eq!(
            kill(&KillReport { killed: 1, rsts: 2 }),
            "1 connection killed (2 RSTs sent)\n"
        );
        assert_eq!(kill(&KillReport::default()), "0 connections killed\n");
        let net = "203.0.113.7/32".parse().expect("net");
        assert_eq!(
            block(&BlockReport { net, ttl_secs: 600 }),
            "blocked 203.0.113.7 for 10m 0s\n"
        );
        let list = vec![
            RuleEntry {
                rule: "gw.rules:3".into(),
                action: "allow".into(),
                label: Some("web".into()),
                text: "allow tcp to any port 80 label \"web\"".into(),
                hits: 12,
                conns: 2,
            },
            RuleEntry {
                rule: "default".into(),
                action: "drop".into(),
                hits: 4,
                ..RuleEntry::default()
            },
        ];
        assert_eq!(
            rules(&list, false),
            "rule        hits  action  label\ngw.rules:3    12  allow   web\ndefault        4  drop\n"
        );
        assert!(
            rules(&list, true).contains("conns"),
            "{}",
            rules(&list, true)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3_600), "1h 0m 0s");
        assert_eq!(duration(93_784), "1d 2h 3m 4s");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_550_042), "2026-11-24T19:54:02Z");
    }

    pub(crate) fn sample_status() -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_secs: 93_784,
            rules_file: Some(PathBuf::from("/etc/statewall/gateway.rules")),
            rules_loaded_at: Some(1_795_550_042),
            rules: 42,
            entries: 1234,
            max_entries: 262_144,
            blocked: 1,
            queues: vec![
                QueueStatus {
                    queue: 0,
                    packets: 1_000_000,
                    accepted: 999_000,
                    dropped: 1_000,
                    errors: 0,
                },
                QueueStatus {
                    queue: 1,
                    packets: 5,
                    accepted: 5,
                    dropped: 0,
                    errors: 2,
                },
            ],
            drops: [("no_connection".to_string(), 990), ("tcp_xmas".into(), 10)]
                .into_iter()
                .collect(),
            role: "taking over (7 s left)".into(),
        }
    }

    #[test]
    fn status_snapshot() {
        assert_eq!(
            status(&sample_status()),
            "\
statewall 0.1.0, pid 4242, up 1d 2h 3m 4s
rules        /etc/statewall/gateway.rules (42 rules, loaded 2026-11-24T19:54:02Z)
connections  1234 of 262144 (0.5%)
blocked      1 source
role         taking over (7 s left)

queue  packets  accepted  dropped  errors
    0  1000000    999000     1000       0
    1        5         5        0       2

drops
  no_connection  990
  tcp_xmas        10
"
        );
    }

    #[test]
    fn status_without_rules_or_queues() {
        let s = Status {
            version: "0.1.0".into(),
            pid: 1,
            ..Status::default()
        };
        assert_eq!(
            status(&s),
            "\
statewall 0.1.0, pid 1, up 0s
rules        none (every new connection is allowed)
connections  0 of 0 (0.0%)
blocked      0 sources

drops: no drops
"
        );
    }

    #[test]
    fn ha_reports() {
        let took = HaReport {
            role: "taking over (10 s left)".into(),
            seen: 203,
            adopted: 3,
            refreshed: 0,
            known: 198,
            no_room: 0,
            skipped: 2,
            following: 0,
        };
        assert_eq!(
            ha(&took),
            "role: taking over (10 s left)\n\
             kernel table: 203 flows with the ADMITTED mark: 3 adopted, 0 refreshed, 198 known, 0 \
             without room, 2 skipped\n"
        );
        let standby = HaReport {
            role: "standby".into(),
            following: 1,
            ..HaReport::default()
        };
        assert_eq!(
            ha(&standby),
            "role: standby\nfollowing the kernel table: 1 flow (learned anew from their next packets)\n"
        );
    }

    #[test]
    fn stats_snapshot() {
        let s = StatsReport {
            stats: Stats {
                packets: 100,
                accepted: 90,
                dropped: 10,
                new_connections: 7,
                entries: 3,
                logs_suppressed: 4,
                drops: vec![("policy_drop".to_string(), 10)],
                ..Stats::default()
            },
            states: [("ESTABLISHED".to_string(), 2), ("UNREPLIED".into(), 1)]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            stats(&s),
            "\
packets          100
accepted          90
dropped           10
ignored            0
new_connections    7
related            0
fragments          0
expired            0
early_drops        0
resumed            0
entries            3
answered           0
answers_limited    0
logs_suppressed    4
adopted            0

drops
  policy_drop  10

states
  ESTABLISHED  2
  UNREPLIED    1
"
        );
    }

    #[test]
    fn conns_snapshot() {
        let c = |proto: &str, state: &str, src: &str, dst: &str, sport, dport, exp, assured| {
            ConnEntry {
                proto: proto.into(),
                src: src.parse().expect("addr"),
                dst: dst.parse().expect("addr"),
                sport,
                dport,
                state: state.into(),
                expires_in: exp,
                assured,
                orig_packets: 3,
                orig_bytes: 180,
                reply_packets: 2,
                reply_bytes: 2960,
                rule: assured.then(|| "gw.rules:4".to_string()),
                label: assured.then(|| "web".to_string()),
                offloaded: proto == "udp" && assured,
            }
        };
        let list = [
            c(
                "tcp",
                "ESTABLISHED",
                "198.51.100.2",
                "203.0.113.2",
                40000,
                80,
                431_999,
                true,
            ),
            c(
                "udp",
                "UNREPLIED",
                "10.0.0.7",
                "192.0.2.53",
                5353,
                53,
                29,
                false,
            ),
            c(
                "udp",
                "REPLIED",
                "198.51.100.2",
                "203.0.113.2",
                40001,
                5201,
                118,
                true,
            ),
            c(
                "tcp",
                "SYN_SENT",
                "2001:db8::1",
                "2001:db8:1::2",
                51000,
                443,
                119,
                false,
            ),
        ];
        assert_eq!(
            conns(&list),
            "\
tcp  ESTABLISHED  src=198.51.100.2  dst=203.0.113.2    sport=40000  dport=80    expires=431999  packets=3/2  bytes=180/2960  [ASSURED]             rule=gw.rules:4  label=\"web\"
udp  UNREPLIED    src=10.0.0.7      dst=192.0.2.53     sport=5353   dport=53    expires=29      packets=3/2  bytes=180/2960
udp  REPLIED      src=198.51.100.2  dst=203.0.113.2    sport=40001  dport=5201  expires=118     packets=3/2  bytes=180/2960  [ASSURED]  [OFFLOAD]  rule=gw.rules:4  label=\"web\"
tcp  SYN_SENT     src=2001:db8::1   dst=2001:db8:1::2  sport=51000  dport=443   expires=119     packets=3/2  bytes=180/2960
"
        );
        assert_eq!(conns(&[]), "");
        assert_eq!(conns_summary(1), "1 connection shown\n");
    }

    #[test]
    fn reload_snapshots() {
        let r = ReloadReport {
            rules_file: Some(PathBuf::from("/etc/statewall/gateway.rules")),
            rules: 12,
            warnings: vec![
                "/etc/statewall/gateway.rules:9:1: warning: rule 9 is shadowed by rule 4".into(),
            ],
            revoked: 3,
        };
        assert_eq!(
            reload_ok(&r),
            "\
reloaded /etc/statewall/gateway.rules: 12 rules in use
/etc/statewall/gateway.rules:9:1: warning: rule 9 is shadowed by rule 4
3 connections no longer allowed and closed
"
        );
        assert_eq!(
            failure(
                "reload",
                "/etc/statewall/gateway.rules: 2 errors",
                &[
                    "g.rules:3:7: error: unknown keyword `alow`".into(),
                    "g.rules:5:1: error: bad port".into()
                ]
            ),
            "\
statewall reload: /etc/statewall/gateway.rules: 2 errors
g.rules:3:7: error: unknown keyword `alow`
g.rules:5:1: error: bad port
the running rules are unchanged
"
        );
    }

    #[test]
    fn blocks_snapshot() {
        let list = [
            BlockEntry {
                net: "203.0.113.9/32".parse().expect("net"),
                src: "203.0.113.9".parse().expect("addr"),
                reason: "port scan: 40 ports in 10s".into(),
                level: 1,
                ttl_secs: 600,
                remaining_secs: 540,
            },
            BlockEntry {
                net: "2001:db8:bad::/64".parse().expect("net"),
                src: "2001:db8:bad::7".parse().expect("addr"),
                reason: "syn flood".into(),
                level: 3,
                ttl_secs: 2_400,
                remaining_secs: 2_399,
            },
        ];
        assert_eq!(
            blocks(&list),
            "\
blocked            source           level  remaining     ttl  reason
203.0.113.9        203.0.113.9          1      9m 0s  10m 0s  port scan: 40 ports in 10s
2001:db8:bad::/64  2001:db8:bad::7      3    39m 59s  40m 0s  syn flood
"
        );
        assert_eq!(blocks(&[]), "no blocked sources\n");
    }

    #[test]
    fn unblock_messages() {
        let addr = "192.0.2.1".parse().expect("addr");
        assert_eq!(
            unblock(&UnblockReport {
                addr,
                unblocked: true
            }),
            "unblocked 192.0.2.1\n"
        );
        assert_eq!(
            unblock(&UnblockReport {
                addr,
                unblocked: false
            }),
            "192.0.2.1 was not blocked\n"
        );
    }
}
