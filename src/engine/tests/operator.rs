//! What observability adds to the packet's way: connection and drop events only while an
//! output listens, per-direction counters, the rule each connection was admitted by and the
//! rules' hits, and the operator's kill, block and unblock.

use super::*;
use std::time::Duration;

use crate::event::{CloseReason, Interest};

fn policy(e: &Engine, text: &str) {
    let loaded = crate::rules::load_str("gw.rules", text).expect("rules");
    e.set_policy(Arc::new(loaded.policy));
}

fn new_events(d: &Decision) -> Vec<&crate::event::ConnOpened> {
    d.events
        .iter()
        .filter_map(|ev| match ev {
            Event::New(o) => Some(o),
            _ => None,
        })
        .collect()
}

#[test]
fn connection_and_drop_events_exist_only_while_someone_listens() {
    for p in LABS {
        let e = engine();
        let syn = p.tcp(C, SYN, 100, 0).build();
        let probe = p.ports(40001, 22).tcp(C, ACK, 5, 5).build();
        assert!(run(&e, &syn, 0).events.is_empty(), "nobody listens");
        dropped(&e, &probe, 0, DropReason::NoConnection);
        assert!(run(&e, &probe, 0).events.is_empty());

        e.set_interest(Interest::ALL);
        let p2 = p.ports(40002, 80);
        let d = accept(&e, &p2.tcp(C, SYN, 100, 0).build(), 1);
        let news = new_events(&d);
        assert_eq!(news.len(), 1, "{:?}", d.events);
        assert_eq!(news[0].flow.sport, 40002);
        assert_eq!(news[0].state, ConnState::Tcp(TcpState::SynSent));
        assert!(!news[0].adopted);
        let d = run(&e, &probe, 1);
        match d.events.as_slice() {
            [Event::Drop(drop)] => {
                assert_eq!(drop.reason, DropReason::NoConnection);
                assert_eq!(drop.packet.flow().dport, 22);
                assert!(!drop.line, "no drop line configured: for the stream only");
            }
            other => panic!("{other:?}"),
        }
        // An undecodable packet's drop is only counted.
        assert!(run(&e, &[0x45, 0, 0], 1).events.is_empty());
        e.set_interest(Interest::default());
        assert!(run(&e, &probe, 2).events.is_empty(), "nobody listens again");
    }
}

#[test]
fn counters_per_direction_and_the_destroy_event_of_an_expired_flow() {
    for p in LABS {
        let e = engine();
        e.set_interest(Interest {
            conns: true,
            drops: false,
        });
        let out = udp(p, C, 100);
        let back = udp(p, S, 1000);
        accept(&e, &out, 0);
        accept(&e, &out, 0);
        accept(&e, &back, 0);
        let conns = e.connections(Timestamp::from_secs(1), |_| true);
        assert_eq!(conns.len(), 1);
        let n = conns[0].counts;
        assert_eq!((n.orig_packets, n.reply_packets), (2, 1));
        assert_eq!(n.orig_bytes, 2 * out.len() as u64);
        assert_eq!(n.reply_bytes, back.len() as u64);
        // Long after its timeout, the timer's sweep reports its end with the counters.
        let report = e.on_timer(Timestamp::from_secs(10_000));
        let gone: Vec<_> = report
            .events
            .iter()
            .filter_map(|ev| match ev {
                Event::Destroy(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(gone.len(), 1, "{:?}", report.events);
        assert_eq!(gone[0].why, CloseReason::Expired);
        assert_eq!(gone[0].record.counts, n);
    }
}

#[test]
fn connections_name_their_rule_and_rules_count_their_hits() {
    let e = engine();
    e.set_interest(Interest::ALL);
    policy(
        &e,
        "policy drop\nallow udp to any port 53 label \"dns\"\nallow tcp to any port 80\n",
    );
    let p = Pair::V4;
    let d = accept(&e, &udp(p, C, 40), 0);
    let rule = new_events(&d)[0].rule.clone().expect("a rule");
    assert_eq!((rule.line, rule.label.as_deref()), (2, Some("dns")));
    accept(&e, &p.ports(40000, 80).tcp(C, SYN, 1, 0).build(), 0);
    dropped(
        &e,
        &p.ports(40000, 22).tcp(C, SYN, 1, 0).build(),
        0,
        DropReason::PolicyDrop,
    );
    let conns = e.connections(Timestamp::from_secs(1), |_| true);
    let lines: Vec<u32> = conns
        .iter()
        .filter_map(|c| e.rule_info(c.rule).map(|r| r.line))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.contains(&2) && lines.contains(&3), "{lines:?}");
    let (policy_now, per_rule) = e.rule_counts(Timestamp::from_secs(1), true);
    assert_eq!((policy_now.hits(0), policy_now.hits(1)), (1, 1));
    assert_eq!(policy_now.default_hits(), 1, "the SYN to port 22");
    assert_eq!(per_rule, vec![1, 1]);
    // A reload starts new counters; connections of the old rule set still name their rule.
    policy(&e, "policy allow\n");
    assert_eq!(
        e.rule_counts(Timestamp::from_secs(1), true).1,
        Vec::<u64>::new()
    );
    let conns = e.connections(Timestamp::from_secs(1), |_| true);
    assert!(conns.iter().all(|c| e.rule_info(c.rule).is_some()));
}

#[test]
fn kill_revokes_answers_both_ends_and_reports_it() {
    for p in LABS {
        let e = established(p);
        e.set_interest(Interest::ALL);
        let kill = e.kill(Timestamp::from_secs(1), |r| r.flow.dport == p.sport);
        assert_eq!(kill.killed, 1);
        assert_eq!(kill.actions.len(), 2, "a RST toward each end");
        match kill.events.as_slice() {
            [Event::Destroy(c)] => assert_eq!(c.why, CloseReason::Killed),
            other => panic!("{other:?}"),
        }
        // The next segment of the connection is dropped, either way.
        dropped(&e, &p.tcp(C, ACK, 101, 901).build(), 1, DropReason::Revoked);
        dropped(&e, &p.tcp(S, ACK, 901, 101).build(), 1, DropReason::Revoked);
        // Killed once: a second kill finds nothing, and the sweep does not report it again.
        assert_eq!(e.kill(Timestamp::from_secs(1), |_| true).killed, 0);
        let later = e.on_timer(Timestamp::from_secs(100));
        assert!(
            !later
                .events
                .iter()
                .any(|ev| matches!(ev, Event::Destroy(_))),
            "{:?}",
            later.events
        );
    }
}

#[test]
fn block_drops_new_and_existing_flows_until_unblocked_or_over() {
    for p in LABS {
        let e = established(p);
        let net = ipnet::IpNet::from(p.client);
        let events = e
            .block(net, Duration::from_secs(60), Timestamp::from_secs(1))
            .expect("blocked");
        assert!(matches!(events.as_slice(), [Event::Block(_)]));
        // The existing connection, both ways, and a new one.
        dropped(&e, &p.tcp(C, ACK, 101, 901).build(), 2, DropReason::Blocked);
        dropped(&e, &p.tcp(S, ACK, 901, 101).build(), 2, DropReason::Blocked);
        dropped(
            &e,
            &p.ports(40009, 80).tcp(C, SYN, 1, 0).build(),
            2,
            DropReason::Blocked,
        );
        assert_eq!(e.blocks(Timestamp::from_secs(2)).len(), 1);
        assert_eq!(e.unblock(p.client, Timestamp::from_secs(3)).len(), 1);
        accept(&e, &p.tcp(C, ACK, 101, 901).build(), 3);
        // A block runs out by itself after its duration.
        e.block(net, Duration::from_secs(5), Timestamp::from_secs(10))
            .expect("blocked");
        dropped(
            &e,
            &p.tcp(C, ACK, 101, 901).build(),
            11,
            DropReason::Blocked,
        );
        e.on_timer(Timestamp::from_secs(16));
        accept(&e, &p.tcp(C, ACK, 101, 901).build(), 16);
        assert_eq!(
            e.block(net, Duration::ZERO, Timestamp::from_secs(20)),
            Err(BlockError::ZeroTtl)
        );
    }
}
