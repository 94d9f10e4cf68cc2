//! Tests of the parser: one line in, a statement or issues out.

use super::*;
use crate::proto::PortRange;
use crate::rules::ast::{AddrExpr, IfaceAst, LimitAst, RuleAst};
use crate::rules::diag::Severity;

fn range(lo: u16, hi: u16) -> PortRange {
    PortRange::new(lo, hi).unwrap_or_else(|| panic!("{lo}-{hi}"))
}

fn ok(line: &str) -> Stmt {
    let p = parse_line(line);
    assert!(
        p.issues.iter().all(|i| i.severity == Severity::Warning),
        "{line}: {:?}",
        p.issues
    );
    p.stmt.unwrap_or_else(|| panic!("no statement for {line}"))
}

fn err(line: &str) -> Issue {
    let p = parse_line(line);
    assert!(p.stmt.is_none(), "{line} parsed");
    p.issues
        .into_iter()
        .find(|i| i.severity == Severity::Error)
        .unwrap_or_else(|| panic!("no error for {line}"))
}

fn rule(line: &str) -> RuleAst {
    match ok(line) {
        Stmt::Rule(r) => *r,
        other => panic!("not a rule: {other:?}"),
    }
}

#[test]
fn blank_and_comment_lines() {
    assert!(parse_line("").stmt.is_none());
    assert!(parse_line("   # just a comment").stmt.is_none());
    assert!(parse_line("  \t ").issues.is_empty());
}

#[test]
fn policy_probes_include() {
    assert_eq!(
        ok("policy drop # c"),
        Stmt::Policy {
            action: RuleAction::Drop
        }
    );
    assert_eq!(
        ok("policy allow"),
        Stmt::Policy {
            action: RuleAction::Allow
        }
    );
    assert_eq!(
        ok("probes rst"),
        Stmt::Probes {
            mode: ProbeMode::Rst
        }
    );
    assert_eq!(
        ok("include \"dmz.rules\""),
        Stmt::Include {
            path: "dmz.rules".into(),
            col: 9
        }
    );
    assert_eq!(
        err("policy dorp").hint.as_deref(),
        Some("did you mean `drop`?")
    );
    assert_eq!(
        err("probes").message,
        "expected `rst` or `drop` after `probes`"
    );
    assert_eq!(
        err("policy drop now").message,
        "unexpected `now` at end of statement"
    );
}

#[test]
fn sets_nest_and_mix_families() {
    let s = ok("set $web = { 203.0.113.10, 2001:db8:2::10, $other, { 10.0.0.0/8 } }");
    let Stmt::Set {
        name,
        col: 5,
        addrs: AddrExpr::List(items),
    } = s
    else {
        panic!("{s:?}")
    };
    assert_eq!(name, "web");
    assert_eq!(items.len(), 4);
    assert!(matches!(items[2], AddrExpr::Set { ref name, col: 44 } if name == "other"));
    assert_eq!(
        err("set web = { 1.2.3.4 }").message,
        "set names start with `$`"
    );
    assert_eq!(
        err("set $a { 1.2.3.4 }").message,
        "expected `=` after the set name, found `{`"
    );
}

#[test]
fn full_rule() {
    let r = rule("allow in g0 out ppp+ tcp from $admin port 1024-65535 to 203.0.113.2 port { 80, 443 } log label \"dmz web\" limit 50/s");
    assert_eq!(r.action, RuleAction::Allow);
    assert_eq!(
        r.in_iface,
        Some(IfaceAst {
            name: "g0".into(),
            wildcard: false
        })
    );
    assert_eq!(
        r.out_iface,
        Some(IfaceAst {
            name: "ppp".into(),
            wildcard: true
        })
    );
    assert_eq!(r.proto, Some(6));
    let from = r.from.as_ref().map(|e| e.ports.clone());
    assert_eq!(from, Some(Some(vec![range(1024, 65535)])));
    let to = r.to.as_ref().map(|e| (&e.addrs, e.ports.clone()));
    assert_eq!(
        to,
        Some((
            &AddrExpr::Net("203.0.113.2/32".parse().unwrap_or_else(|_| unreachable!())),
            Some(vec![PortRange::single(80), PortRange::single(443)])
        ))
    );
    assert!(r.log);
    assert_eq!(r.label.as_deref(), Some("dmz web"));
    assert_eq!(
        r.limit,
        Some(LimitAst {
            count: 50,
            per_nanos: 1_000_000_000,
            burst: 50
        })
    );
}

#[test]
fn protocols() {
    assert_eq!(rule("allow").proto, None);
    assert_eq!(rule("allow any").proto, None);
    assert_eq!(rule("allow gre").proto, Some(47));
    assert_eq!(rule("allow proto 132").proto, Some(132));
    assert_eq!(rule("allow proto esp").proto, Some(50));
    assert_eq!(rule("allow icmpv6").proto, Some(58));
    assert_eq!(
        err("allow tcp udp").message,
        "protocol given twice in one rule"
    );
    assert_eq!(err("allow proto 256").message, "unknown protocol `256`");
    assert_eq!(
        err("allow tpc").hint.as_deref(),
        Some("did you mean `tcp`?")
    );
}

#[test]
fn icmp_types() {
    assert_eq!(
        rule("allow icmp type { echo-request, 3 }").icmp_types,
        Some(vec![3, 8])
    );
    assert_eq!(
        rule("allow icmpv6 type echo-request").icmp_types,
        Some(vec![128])
    );
    assert_eq!(
        rule("allow icmpv6 type packet-too-big").icmp_types,
        Some(vec![2])
    );
    assert_eq!(
        err("allow icmp type packet-too-big").message,
        "ICMP type `packet-too-big` does not exist for icmp"
    );
    assert_eq!(
        err("allow tcp type 3").message,
        "`type` needs protocol `icmp` or `icmpv6`"
    );
    assert_eq!(
        err("allow icmp type echo-reqest").hint.as_deref(),
        Some("did you mean `echo-request`?")
    );
}

#[test]
fn limits() {
    assert_eq!(
        rule("allow limit 10/m").limit,
        Some(LimitAst {
            count: 10,
            per_nanos: 60_000_000_000,
            burst: 10
        })
    );
    assert_eq!(
        rule("allow limit 10/s burst 3").limit.map(|l| l.burst),
        Some(3)
    );
    assert_eq!(
        err("allow limit 0/s").message,
        "bad rate `0/s`: the rate must be at least 1"
    );
    assert_eq!(
        err("allow limit 5/x").message,
        "bad rate `5/x`: unknown unit `x`, expected s, m, h or d"
    );
    assert_eq!(err("allow limit 5").message, "bad rate `5`: expected N/s");
    assert_eq!(
        err("allow limit").message,
        "expected a rate like `50/s` after `limit`"
    );
    assert_eq!(
        err("allow limit 5/s burst 0").message,
        "bad burst `0`: expected a number at least 1"
    );
}

#[test]
fn address_errors() {
    let e = err("allow from 198.51.100.0/33");
    assert_eq!(
        (e.col, e.message.as_str()),
        (
            12,
            "bad CIDR `198.51.100.0/33`: prefix length 33 is longer than 32"
        )
    );
    assert_eq!(
        err("allow to 300.1.2.3").message,
        "invalid address `300.1.2.3`"
    );
    assert_eq!(
        err("allow tcp to port 22").message,
        "missing address before `port`"
    );
    let e = err("allow tcp to");
    assert_eq!(
        (e.col, e.message.as_str()),
        (13, "missing address after `to`")
    );
    assert_eq!(
        err("allow to lan").hint.as_deref(),
        Some("sets are written with `$`: `$lan`")
    );
    assert_eq!(
        err("allow to ayn").hint.as_deref(),
        Some("did you mean `any`?")
    );
    assert_eq!(
        err("allow to ANY").hint.as_deref(),
        Some("did you mean `any`?")
    );
    assert_eq!(err("allow to 10.0.0.256").hint, None);
    assert_eq!(
        err("allow to { 1.2.3.4").message,
        "unterminated list: missing `}`"
    );
    assert_eq!(err("allow to { }").message, "empty address list");
    assert_eq!(
        err("allow to 2001:db8::/129").message,
        "bad CIDR `2001:db8::/129`: prefix length 129 is longer than 128"
    );
}

#[test]
fn host_bits_warn_and_truncate() {
    let p = parse_line("allow from 198.51.100.7/24");
    assert_eq!(p.issues.len(), 1);
    assert_eq!(p.issues[0].severity, Severity::Warning);
    assert_eq!(
        p.issues[0].message,
        "`198.51.100.7/24` has host bits set; it means `198.51.100.0/24`"
    );
    let Some(Stmt::Rule(r)) = p.stmt else {
        panic!("no rule")
    };
    assert_eq!(
        r.from.map(|e| e.addrs),
        Some(AddrExpr::Net(
            "198.51.100.0/24".parse().unwrap_or_else(|_| unreachable!())
        ))
    );
}

#[test]
fn port_errors() {
    assert_eq!(
        err("allow tcp to any port 70000").message,
        "port 70000 out of range (0-65535)"
    );
    let e = err("allow tcp to any port 90-80");
    assert_eq!(
        (e.message.as_str(), e.hint.as_deref()),
        ("reversed port range 90-80", Some("did you mean `80-90`?"))
    );
    assert_eq!(
        err("allow udp to any port { 80, 443").message,
        "unterminated list: missing `}`"
    );
    assert_eq!(err("allow udp to any port {}").message, "empty port list");
    assert_eq!(
        err("allow to any port 22").message,
        "`port` needs protocol `tcp` or `udp`"
    );
    assert_eq!(err("allow icmp to any port 22").col, 19);
    assert_eq!(
        err("allow tcp port 22").message,
        "`port` must follow `from ADDRS` or `to ADDRS`"
    );
    assert_eq!(
        err("allow tcp to any port http").message,
        "bad port `http`: expected a number 0-65535"
    );
}

#[test]
fn lexer_errors() {
    let e = err("allow label \"open");
    assert_eq!((e.col, e.message.as_str()), (13, "unterminated string"));
    assert_eq!(err("allow ; drop").message, "unexpected character `;`");
    assert_eq!(err("allow to $").message, "expected a set name after `$`");
    assert_eq!(
        rule("allow label \"a \\\"q\\\" # not a comment\"")
            .label
            .as_deref(),
        Some("a \"q\" # not a comment")
    );
}

#[test]
fn unknown_keywords_get_hints() {
    let e = err("alow tcp");
    assert_eq!(
        (e.col, e.message.as_str(), e.hint.as_deref()),
        (1, "unknown keyword `alow`", Some("did you mean `allow`?"))
    );
    assert_eq!(
        err("allow tcp frm any").hint.as_deref(),
        Some("did you mean `from`?")
    );
    assert_eq!(
        err("allow lgo").hint.as_deref(),
        Some("did you mean `log`?")
    );
    assert_eq!(
        err("allow 1.2.3.4").message,
        "unexpected address `1.2.3.4`: write `from 1.2.3.4` or `to 1.2.3.4`"
    );
    assert_eq!(
        err("allow from any from any").message,
        "`from` given twice in one rule"
    );
    assert_eq!(
        err("allow tcp to any port 80 443").message,
        "unexpected port `443`: several ports are written as a list, like `port { 80, 443 }`"
    );
    let e = err("allow tcp to any port 80, 443");
    assert_eq!((e.col, e.message.as_str()), (25, "unexpected `,` in rule"));
    assert!(e.hint.is_some());
}

#[test]
fn interfaces() {
    assert_eq!(
        err("allow in").message,
        "expected an interface name after `in`"
    );
    assert_eq!(err("allow in a+b").message, "bad interface name `a+b`");
    assert_eq!(
        err("allow in abcdefghijklmnopq").message,
        "bad interface name `abcdefghijklmnopq`"
    );
    assert_eq!(
        rule("allow in +").in_iface,
        Some(IfaceAst {
            name: String::new(),
            wildcard: true
        })
    );
}
