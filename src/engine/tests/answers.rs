//! What statewall answers on its own: RSTs to probes of no connection, answers to rejected
//! connections, the rate limits, the `[probes]` mode and the rule file's `probes` line, and
//! the RSTs of a recheck on reload.

use std::net::IpAddr;

use super::*;
use crate::packet::Seq;
use crate::ratelimit::ProbesConfig;
use crate::respond::{rst_packet, ReplyOptions};
use crate::verdict::ProbeMode;

#[test]
fn probes_of_no_connection_are_answered_with_rst() {
    for p in LABS {
        let e = engine();
        let d = run(&e, &p.tcp(C, ACK, 1, 77).build(), 0);
        assert_eq!(d.reason(), Some(DropReason::NoConnection));
        let Some(Action::SendRst(rst)) = &d.action else {
            panic!("no RST asked for: {:?}", d.action)
        };
        // From the probed port back to the prober, with the probe's ACK as its sequence number.
        assert_eq!(
            (rst.src, rst.dst, rst.sport, rst.dport),
            (p.server, p.client, 80, 40000)
        );
        assert_eq!((rst.seq, rst.ack), (Seq(77), None));
        // Stealth shapes too, but never a RST.
        assert!(sends_rst(&run(&e, &p.tcp(C, 0, 1, 0).build(), 0)));
        assert!(sends_rst(&run(&e, &p.tcp(C, SYN | FIN, 1, 0).build(), 0)));
        assert!(!sends_rst(&run(&e, &p.tcp(C, RST, 1, 0).build(), 0)));
        assert_eq!(e.stats().answered, 3);
    }
}

#[test]
fn invalid_flags_inside_a_connection_are_not_answered() {
    let p = LABS[0];
    let e = established(p);
    let d = run(&e, &p.tcp(C, SYN | FIN, 101, 0).build(), 1);
    assert_eq!(d.reason(), Some(DropReason::TcpSynFin));
    assert!(d.action.is_none() && d.events.is_empty());
}

#[test]
fn probe_answers_are_rate_limited() {
    let config = EngineConfig {
        probes: ProbesConfig {
            burst: 5,
            per_source_burst: 3,
            ..ProbesConfig::default()
        },
        ..Default::default()
    };
    let e = Engine::new(config);
    let answered = (0..10)
        .filter(|_| sends_rst(&run(&e, &LABS[0].tcp(C, ACK, 1, 1).build(), 0)))
        .count();
    assert_eq!(answered, 3);
    let s = e.stats();
    assert_eq!((s.answered, s.answers_limited), (3, 7));
    assert_eq!(s.dropped, 10);
}

#[test]
fn probes_drop_mode_answers_nothing() {
    let config = EngineConfig {
        probes: ProbesConfig {
            respond: ProbeMode::Drop,
            ..ProbesConfig::default()
        },
        ..Default::default()
    };
    let e = Engine::new(config);
    let d = run(&e, &LABS[0].tcp(C, FIN | ACK, 1, 1).build(), 0);
    assert_eq!(d.reason(), Some(DropReason::NoConnection));
    assert!(d.action.is_none() && d.events.is_empty());
}

#[test]
fn the_rule_files_probes_line_wins() {
    let e = engine();
    let loaded = crate::rules::load_str("t.rules", "policy allow\nprobes drop\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    assert!(!sends_rst(&run(&e, &LABS[0].tcp(C, ACK, 1, 1).build(), 0)));
}

#[test]
fn rejected_connections_are_answered() {
    for p in LABS {
        let e = engine();
        let rules = "policy reject\nallow icmp\nallow icmpv6\n";
        let loaded = crate::rules::load_str("t.rules", rules).expect("rules");
        e.set_policy(Arc::new(loaded.policy));
        let d = run(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
        assert_eq!(d.reason(), Some(DropReason::PolicyReject));
        assert!(sends_rst(&d));
        let datagram = udp(p, C, 10);
        let d = run(&e, &datagram, 0);
        assert_eq!(d.reason(), Some(DropReason::PolicyReject));
        let Some(Action::SendUnreachable(u)) = &d.action else {
            panic!("no unreachable asked for: {:?}", d.action)
        };
        // From the rejected datagram's destination, quoting it whole.
        assert_eq!((u.src, u.dst), (p.server, p.client));
        assert_eq!(u.quote, datagram);
        assert_eq!(e.entries(), 0);
    }
}

#[test]
fn recheck_revokes_connections_the_new_rules_refuse() {
    let p = LABS[0];
    let e = established(p);
    let keep = crate::rules::load_str("t.rules", "policy drop\nallow tcp to any port 80\n")
        .expect("rules");
    assert_eq!(e.recheck(&keep.policy, Timestamp::from_secs(1)).revoked, 0);
    let cut = crate::rules::load_str("t.rules", "policy reject\nallow udp\n").expect("rules");
    let r = e.recheck(&cut.policy, Timestamp::from_secs(1));
    assert_eq!(r.revoked, 1);
    // A RST toward each end, with the sequence number each expects.
    let rsts: Vec<_> = r
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SendRst(rst) => rst_packet(rst, &ReplyOptions { ttl: 64, ip_id: 1 }),
            Action::SendUnreachable(_) => None,
        })
        .collect();
    assert_eq!(rsts.len(), 2);
    let to_client = Packet::decode(&rsts[0], &PacketMeta::default()).expect("rst");
    assert_eq!(to_client.dst, p.client);
    assert_eq!(to_client.tcp().map(|t| t.seq), Some(Seq(901)));
    let to_server = Packet::decode(&rsts[1], &PacketMeta::default()).expect("rst");
    assert_eq!(to_server.dst, p.server);
    assert_eq!(to_server.tcp().map(|t| t.seq), Some(Seq(101)));
    dropped(
        &e,
        &p.tcp(C, ACK | PSH, 101, 901).payload(10).build(),
        2,
        DropReason::Revoked,
    );
}

#[test]
fn recheck_judges_flows_as_they_opened_without_spending_limits() {
    for p in LABS {
        let e = engine();
        for port in 0..8 {
            accept(
                &e,
                &p.ports(41000 + port, 80).tcp(C, SYN, 100, 0).build(),
                0,
            );
        }
        accept(&e, &echo(p, C, true), 0);
        let rules = "policy drop\nallow tcp to any port 80 limit 5/m burst 5\n\
                     allow icmp type echo-request\nallow icmpv6 type echo-request\n";
        let new = crate::rules::load_str("t.rules", rules)
            .expect("rules")
            .policy;
        // Eight open connections, a limit of five new ones: none is revoked, and the echo
        // flow matches its type rule.
        assert_eq!(e.recheck(&new, Timestamp::from_secs(1)).revoked, 0, "{p:?}");
        assert_eq!(e.recheck(&new, Timestamp::from_secs(1)).revoked, 0, "{p:?}");
        // The new rules' tokens are all there for new connections.
        let new = Arc::new(new);
        e.set_policy(Arc::clone(&new));
        let admitted = (0..8)
            .filter(|port| {
                let syn = p.ports(42000 + port, 80).tcp(C, SYN, 100, 0).build();
                run(&e, &syn, 1).accepted()
            })
            .count();
        assert_eq!(admitted, 5, "{p:?}");
        // An echo flow is revoked by rules that allow only other ICMP types.
        let other =
            "policy drop\nallow tcp\nallow icmp type echo-reply\nallow icmpv6 type echo-reply\n";
        let other = crate::rules::load_str("t.rules", other)
            .expect("rules")
            .policy;
        assert_eq!(
            e.recheck(&other, Timestamp::from_secs(1)).revoked,
            1,
            "{p:?}"
        );
    }
}

#[test]
fn recheck_rsts_stay_within_the_answer_limits() {
    for p in LABS {
        let config = EngineConfig {
            probes: ProbesConfig {
                burst: 10,
                per_source_burst: 6,
                ..ProbesConfig::default()
            },
            ..Default::default()
        };
        let e = Engine::new(config);
        for port in 0..50 {
            let q = p.ports(43000 + port, 80);
            accept(&e, &q.tcp(C, SYN, 100, 0).build(), 0);
            accept(&e, &q.tcp(S, SYN | ACK, 900, 101).build(), 0);
            accept(&e, &q.tcp(C, ACK, 101, 901).build(), 0);
        }
        let cut = crate::rules::load_str("t.rules", "policy reject\n").expect("rules");
        let r = e.recheck(&cut.policy, Timestamp::from_secs(1));
        assert_eq!(r.revoked, 50);
        // Both ends are one source each: six RSTs to each, and ten in all.
        let to = |ip: IpAddr| {
            r.actions
                .iter()
                .filter(|a| matches!(a, Action::SendRst(rst) if rst.dst == ip))
                .count()
        };
        assert_eq!(r.actions.len(), 10, "{p:?}");
        assert!(to(p.client) <= 6 && to(p.server) <= 6, "{p:?}");
    }
}
