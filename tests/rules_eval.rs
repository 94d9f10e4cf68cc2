//! Evaluation of every construct of the rule language, through the public API.

use std::net::IpAddr;

use statewall::rules::{load_str, Outcome, Policy, Query, RuleAction};
use statewall::Timestamp;

fn policy(text: &str) -> Policy {
    match load_str("t.rules", text) {
        Ok(l) => l.policy,
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn tcp(src: &str, dst: &str, dport: u16) -> Query<'static> {
    Query {
        src: ip(src),
        dst: ip(dst),
        proto: 6,
        sport: 40000,
        dport,
        icmp_type: None,
        icmp_code: None,
        in_iface: None,
        out_iface: None,
    }
}

fn with_proto(mut q: Query<'static>, proto: u8) -> Query<'static> {
    q.proto = proto;
    if proto != 6 && proto != 17 {
        q.sport = 0;
        q.dport = 0;
    }
    q
}

const T0: Timestamp = Timestamp::from_secs(100);

/// (action, line of the deciding rule or 0 for the default policy)
fn judge(p: &Policy, q: &Query<'_>) -> (RuleAction, u32) {
    let o: Outcome<'_> = p.evaluate(q, T0);
    let linear = p.evaluate_linear(q, T0);
    assert_eq!(
        o.rule.map(|r| r.id),
        linear.rule.map(|r| r.id),
        "index and linear disagree"
    );
    (o.action, o.rule.map_or(0, |r| r.line))
}

use RuleAction::{Allow, Drop, Reject};

#[test]
fn default_policies() {
    assert_eq!(
        judge(&policy("policy allow\n"), &tcp("192.0.2.1", "192.0.2.2", 1)),
        (Allow, 0)
    );
    assert_eq!(
        judge(
            &policy("policy reject\n"),
            &tcp("192.0.2.1", "192.0.2.2", 1)
        ),
        (Reject, 0)
    );
    assert_eq!(
        judge(&policy("policy drop\n"), &tcp("192.0.2.1", "192.0.2.2", 1)),
        (Drop, 0)
    );
    assert_eq!(
        judge(&policy("# nothing\n"), &tcp("192.0.2.1", "192.0.2.2", 1)),
        (Drop, 0)
    );
}

#[test]
fn first_match_wins() {
    let p = policy("policy allow\ndrop tcp to any port 22\nallow tcp to any port 22\nreject tcp\n");
    assert_eq!(judge(&p, &tcp("192.0.2.1", "192.0.2.2", 22)), (Drop, 2));
    assert_eq!(judge(&p, &tcp("192.0.2.1", "192.0.2.2", 23)), (Reject, 4));
    assert_eq!(
        judge(&p, &with_proto(tcp("192.0.2.1", "192.0.2.2", 0), 17)),
        (Allow, 0)
    );
}

#[test]
fn protocols() {
    let p = policy(
        "policy drop\nallow tcp\nallow udp\nallow icmp\nallow icmpv6\nallow gre\nallow proto 132\nreject any\n",
    );
    let base = tcp("192.0.2.1", "192.0.2.2", 80);
    assert_eq!(judge(&p, &base), (Allow, 2));
    assert_eq!(judge(&p, &with_proto(base, 17)), (Allow, 3));
    assert_eq!(judge(&p, &with_proto(base, 1)), (Allow, 4));
    assert_eq!(
        judge(&p, &with_proto(tcp("2001:db8::1", "2001:db8::2", 0), 58)),
        (Allow, 5)
    );
    assert_eq!(judge(&p, &with_proto(base, 47)), (Allow, 6));
    assert_eq!(judge(&p, &with_proto(base, 132)), (Allow, 7));
    assert_eq!(judge(&p, &with_proto(base, 50)), (Reject, 8));
    // `icmp` is ICMP over IPv4 and `icmpv6` ICMP over IPv6, nothing else.
    assert_eq!(
        judge(&p, &with_proto(tcp("2001:db8::1", "2001:db8::2", 0), 1)),
        (Reject, 8)
    );
    assert_eq!(judge(&p, &with_proto(base, 58)), (Reject, 8));
}

#[test]
fn addresses_cidrs_and_families() {
    let p = policy(
        "policy drop\nallow from 198.51.100.0/24 to 203.0.113.2\nallow to 2001:db8:2::/64\nallow from 0.0.0.0/0 to 192.0.2.0/25\n",
    );
    assert_eq!(
        judge(&p, &tcp("198.51.100.9", "203.0.113.2", 1)),
        (Allow, 2)
    );
    assert_eq!(judge(&p, &tcp("198.51.101.9", "203.0.113.2", 1)), (Drop, 0));
    assert_eq!(judge(&p, &tcp("198.51.100.9", "203.0.113.3", 1)), (Drop, 0));
    assert_eq!(
        judge(&p, &tcp("2001:db8:1::1", "2001:db8:2::ff", 1)),
        (Allow, 3)
    );
    assert_eq!(
        judge(&p, &tcp("2001:db8:1::1", "2001:db8:3::ff", 1)),
        (Drop, 0)
    );
    assert_eq!(judge(&p, &tcp("203.0.113.7", "192.0.2.127", 1)), (Allow, 4));
    assert_eq!(judge(&p, &tcp("203.0.113.7", "192.0.2.128", 1)), (Drop, 0));
    // 0.0.0.0/0 is IPv4 only; `any` is both.
    let p = policy("policy drop\nallow from 0.0.0.0/0\nreject from any\n");
    assert_eq!(
        judge(&p, &tcp("2001:db8::1", "2001:db8::2", 1)),
        (Reject, 3)
    );
}

#[test]
fn sets_lists_and_nesting() {
    let p = policy(
        "policy drop\nset $web = { 203.0.113.10, 2001:db8:2::10 }\nset $all = { $web, { 192.0.2.1, 192.0.2.2 } }\nallow tcp from any to $web port { 80, 443 }\nreject to { $all, 198.51.100.0/24 }\n",
    );
    assert_eq!(
        judge(&p, &tcp("192.0.2.9", "203.0.113.10", 443)),
        (Allow, 4)
    );
    assert_eq!(
        judge(&p, &tcp("2001:db8::9", "2001:db8:2::10", 80)),
        (Allow, 4)
    );
    assert_eq!(
        judge(&p, &tcp("192.0.2.9", "203.0.113.10", 22)),
        (Reject, 5)
    );
    assert_eq!(judge(&p, &tcp("203.0.113.1", "192.0.2.2", 22)), (Reject, 5));
    assert_eq!(
        judge(&p, &tcp("203.0.113.1", "198.51.100.200", 22)),
        (Reject, 5)
    );
    assert_eq!(judge(&p, &tcp("203.0.113.1", "192.0.2.3", 22)), (Drop, 0));
}

#[test]
fn ports_single_ranges_lists_and_source_ports() {
    let p = policy(
        "policy drop\nallow tcp to any port 22\nallow udp to any port 1000-2000\nallow tcp to any port { 80, 8000-8099, 443 }\nallow udp from any port 53 to any port 1024-65535\n",
    );
    assert_eq!(judge(&p, &tcp("192.0.2.1", "192.0.2.2", 22)), (Allow, 2));
    let mut udp = with_proto(tcp("192.0.2.1", "192.0.2.2", 1500), 17);
    udp.sport = 5000;
    udp.dport = 1500;
    assert_eq!(judge(&p, &udp), (Allow, 3));
    udp.dport = 2001;
    assert_eq!(judge(&p, &udp), (Drop, 0));
    udp.sport = 53;
    assert_eq!(judge(&p, &udp), (Allow, 5));
    for (port, want) in [
        (80, (Allow, 4)),
        (8050, (Allow, 4)),
        (443, (Allow, 4)),
        (8100, (Drop, 0)),
    ] {
        assert_eq!(
            judge(&p, &tcp("192.0.2.1", "192.0.2.2", port)),
            want,
            "port {port}"
        );
    }
    // A UDP packet to a TCP port rule does not match.
    assert_eq!(
        judge(&p, &with_proto(tcp("192.0.2.1", "192.0.2.2", 22), 17)),
        (Drop, 0)
    );
}

#[test]
fn icmp_types_by_name_and_number() {
    let p = policy(
        "policy drop\nallow icmp type { echo-request, 3 }\nallow icmpv6 type { echo-request, packet-too-big }\n",
    );
    let mut q = with_proto(tcp("192.0.2.1", "192.0.2.2", 0), 1);
    for (t, want) in [
        (Some(8), (Allow, 2)),
        (Some(3), (Allow, 2)),
        (Some(0), (Drop, 0)),
        (None, (Drop, 0)),
    ] {
        q.icmp_type = t;
        assert_eq!(judge(&p, &q), want, "type {t:?}");
    }
    let mut q6 = with_proto(tcp("2001:db8::1", "2001:db8::2", 0), 58);
    for (t, want) in [
        (Some(128), (Allow, 3)),
        (Some(2), (Allow, 3)),
        (Some(8), (Drop, 0)),
    ] {
        q6.icmp_type = t;
        assert_eq!(judge(&p, &q6), want, "type {t:?}");
    }
}

#[test]
fn interfaces_and_wildcards() {
    let p = policy("policy drop\nallow in g0 out g1 tcp\nallow in ppp+ tcp\nreject out eth+ udp\n");
    let mut q = tcp("192.0.2.1", "192.0.2.2", 80);
    assert_eq!(
        judge(&p, &q),
        (Drop, 0),
        "no interface known: iface rules do not match"
    );
    q.in_iface = Some("g0");
    q.out_iface = Some("g1");
    assert_eq!(judge(&p, &q), (Allow, 2));
    q.out_iface = Some("g2");
    assert_eq!(judge(&p, &q), (Drop, 0));
    q.in_iface = Some("ppp7");
    assert_eq!(judge(&p, &q), (Allow, 3));
    q.in_iface = Some("pp7");
    assert_eq!(judge(&p, &q), (Drop, 0));
    let mut u = with_proto(q, 17);
    u.out_iface = Some("eth0");
    assert_eq!(judge(&p, &u), (Reject, 4));
}

#[test]
fn options_log_label_and_rule_info() {
    let p = policy("policy drop\nset $admin = { 198.51.100.0/24 }\nallow tcp from $admin to any port 22 log\ndrop from 192.0.2.0/24 log label \"bad net\"\n");
    let q = tcp("198.51.100.7", "203.0.113.2", 22);
    let o = p.evaluate(&q, T0);
    let info = o.rule.cloned().unwrap_or_else(|| panic!("no rule"));
    assert_eq!(
        (info.id, info.line, info.log, info.action),
        (0, 3, true, Allow)
    );
    assert_eq!(info.label, None);
    assert_eq!(info.text, "allow tcp from $admin to any port 22 log");
    let o = p.evaluate(&tcp("192.0.2.7", "203.0.113.2", 22), T0);
    assert_eq!(o.rule.and_then(|r| r.label.as_deref()), Some("bad net"));
    assert_eq!(p.rule_count(), 2);
    assert_eq!(p.rules().map(|r| r.id).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(p.rule(1).map(|r| r.line), Some(4));
    assert_eq!(p.rule(2), None);
}

#[test]
fn limit_falls_through_and_refills() {
    let p = policy("policy drop\nallow tcp to any port 80 limit 3/s\nreject tcp to any port 80\n");
    let q = tcp("192.0.2.1", "192.0.2.2", 80);
    let at = |ms: u64| p.evaluate(&q, Timestamp::from_millis(ms)).action;
    assert_eq!(
        [at(1000), at(1000), at(1000), at(1000)],
        [Allow, Allow, Allow, Reject]
    );
    // One token every 333 ms.
    assert_eq!(at(1200), Reject);
    assert_eq!(at(1340), Allow);
    assert_eq!(at(1340), Reject);
    // Idle time refills up to the burst only.
    assert_eq!(
        [at(9000), at(9000), at(9000), at(9000)],
        [Allow, Allow, Allow, Reject]
    );
}

#[test]
fn limit_with_burst_and_minutes() {
    let p = policy("policy drop\nallow limit 2/m burst 1\n");
    let q = tcp("192.0.2.1", "192.0.2.2", 80);
    let at = |s: u64| p.evaluate(&q, Timestamp::from_secs(s)).action;
    assert_eq!(
        [at(10), at(10), at(39), at(40), at(41)],
        [Allow, Drop, Drop, Allow, Drop]
    );
}

#[test]
fn rules_whose_addresses_cannot_coexist_never_match() {
    let loaded = load_str(
        "t.rules",
        "policy drop\nallow from 192.0.2.0/24 to 2001:db8::/32\n",
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(loaded.warnings.len(), 1);
    let p = loaded.policy;
    assert_eq!(judge(&p, &tcp("192.0.2.1", "203.0.113.1", 1)), (Drop, 0));
    assert_eq!(judge(&p, &tcp("2001:db8::1", "2001:db8::2", 1)), (Drop, 0));
}

#[test]
fn probes_setting() {
    use statewall::rules::ProbeMode;
    assert_eq!(policy("probes drop\n").probes(), Some(ProbeMode::Drop));
    assert_eq!(policy("probes rst\n").probes(), Some(ProbeMode::Rst));
    assert_eq!(policy("policy drop\n").probes(), None);
}

#[test]
fn policy_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Policy>();
    check::<std::sync::Arc<Policy>>();
}

#[test]
fn crlf_and_tabs_are_fine() {
    let p = policy("policy drop\r\n\tallow tcp\tto any port 22 # ssh\r\n");
    assert_eq!(judge(&p, &tcp("192.0.2.1", "192.0.2.2", 22)), (Allow, 2));
}
