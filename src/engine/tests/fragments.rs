//! Fragments the engine sees unreassembled (no kernel defragmentation before the queue): a
//! later fragment passes only after its datagram's first fragment did, a TCP segment sent as
//! fragments is as long as its last fragment says, and orphans or floods cost no memory.

use super::*;
use crate::conntrack::MAX_DATAGRAMS;
use crate::testing::ip;

/// A later fragment of datagram `id` from `from`: `len` bytes of data at `offset` (8-byte
/// units), the last one unless `more`.
fn later(p: Pair, from: Side, proto: u8, id: u16, offset: u16, len: usize, more: bool) -> Vec<u8> {
    let (src, dst, _, _) = p.from(from);
    ip(src, dst, proto, &vec![0x5a; len])
        .id(id)
        .fragment(offset, more)
        .build()
}

#[test]
fn later_fragments_pass_only_behind_their_first() {
    for p in LABS {
        let e = engine();
        let rules = "policy drop\nallow udp to any port 53\n";
        e.set_policy(Arc::new(
            crate::rules::load_str("t.rules", rules)
                .expect("rules")
                .policy,
        ));
        // An orphan: no first fragment ever (a flood, or a rule-evading tail).
        dropped(
            &e,
            &later(p, C, 17, 1, 4, 100, false),
            0,
            DropReason::FragmentOrphan,
        );
        // The first fragment is refused by the rules: its tail is too.
        let refused = p
            .ports(5353, 99)
            .udp(C)
            .payload(1000)
            .id(2)
            .fragment(0, true)
            .build();
        dropped(&e, &refused, 0, DropReason::PolicyDrop);
        dropped(
            &e,
            &later(p, C, 17, 2, 126, 500, false),
            0,
            DropReason::FragmentOrphan,
        );
        // Admitted: every later fragment of that datagram passes, in any order.
        let first = p
            .ports(5353, 53)
            .udp(C)
            .payload(1000)
            .id(3)
            .fragment(0, true)
            .build();
        accept(&e, &first, 0);
        for (offset, more) in [(252, false), (126, true)] {
            let d = accept(&e, &later(p, C, 17, 3, offset, 1008, more), 1);
            assert_eq!(d.verdict, Verdict::Accept(Pass::Fragment));
        }
        // Not another datagram, nor another protocol or direction with the same identifier.
        dropped(
            &e,
            &later(p, C, 17, 4, 126, 8, false),
            1,
            DropReason::FragmentOrphan,
        );
        dropped(
            &e,
            &later(p, C, 6, 3, 126, 8, false),
            1,
            DropReason::FragmentOrphan,
        );
        dropped(
            &e,
            &later(p, S, 17, 3, 126, 8, false),
            1,
            DropReason::FragmentOrphan,
        );
        // Not after the reassembly time.
        let late = 1 + u64::from(crate::conntrack::FRAGMENT_TTL);
        dropped(
            &e,
            &later(p, C, 17, 3, 126, 8, false),
            late,
            DropReason::FragmentOrphan,
        );
        assert_eq!(e.stats().fragments, 2, "{p:?}");
    }
}

#[test]
fn a_tcp_segment_sent_as_fragments_is_acknowledged_as_a_whole() {
    for p in LABS {
        let e = established(p);
        // 20 bytes of header and 1004 of data, then 2000 more bytes at offset 1024.
        let first = p
            .tcp(C, ACK | PSH, 101, 901)
            .payload(1004)
            .id(7)
            .fragment(0, true)
            .build();
        accept(&e, &first, 1);
        accept(&e, &later(p, C, 6, 7, 128, 2000, false), 1);
        // The server acknowledges all 3004 bytes.
        let d = accept(&e, &p.tcp(S, ACK, 901, 101 + 3004).build(), 1);
        assert_eq!(
            d.state,
            Some(ConnState::Tcp(TcpState::Established)),
            "{p:?}"
        );
        // Beyond what the fragments carried is still data never sent.
        dropped(
            &e,
            &p.tcp(S, ACK, 901, 101 + 3005).build(),
            1,
            DropReason::AckUnsentData,
        );
    }
}

#[test]
fn fragment_floods_cost_bounded_memory() {
    for p in LABS {
        let e = engine();
        for id in 0..20_000u32 {
            let tail = later(p, C, 17, id as u16, 8, 64, false);
            dropped(&e, &tail, 0, DropReason::FragmentOrphan);
        }
        assert_eq!(e.conntrack.fragment_datagrams(), 0);
        // Admitted first fragments from many ports: the oldest are forgotten.
        for i in 0..(MAX_DATAGRAMS as u32 + 5000) {
            let q = p.ports(1024 + (i % 60_000) as u16, 53);
            let first = q.udp(C).payload(64).id(i as u16).fragment(0, true).build();
            run(&e, &first, 1);
            assert!(e.conntrack.fragment_datagrams() <= MAX_DATAGRAMS);
        }
        assert_eq!(e.conntrack.fragment_datagrams(), MAX_DATAGRAMS, "{p:?}");
    }
}
