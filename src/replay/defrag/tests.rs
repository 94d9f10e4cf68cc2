use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::testing::{self, fragments, Pair, Side, ACK, SYN};

const T0: Duration = Duration::from_secs(100);

fn syn(pair: Pair) -> Vec<u8> {
    pair.tcp(Side::Client, SYN, 1, 0)
        .window(8192)
        .mss(1460)
        .sack_permitted()
        .wscale(14)
        .id(0x1234)
        .build()
}

/// Fragment data size that splits a SYN's TCP header in both families while leaving the
/// IPv6 first fragment its whole 20-byte header (RFC 8200 4.5).
fn tiny(pair: Pair) -> usize {
    if pair.is_v6() {
        24
    } else {
        8
    }
}

fn push_all(r: &mut Reassembler, frags: &[Vec<u8>]) -> Vec<Outcome> {
    frags.iter().map(|f| r.push(f, f.len(), T0)).collect()
}

#[test]
fn whole_packets_pass_and_an_atomic_fragment_is_a_datagram_of_one() {
    let mut r = Reassembler::default();
    let p = syn(Pair::V4);
    assert_eq!(r.push(&p, p.len(), T0), Outcome::Whole);
    // nf_ct_frag6_gather queues an atomic fragment like any other: complete at once, without
    // its fragment header.
    let (src, dst, ..) = Pair::V6.from(Side::Client);
    let atomic = testing::ip(src, dst, 17, &[0; 16])
        .fragment(0, false)
        .build();
    let plain = testing::ip(src, dst, 17, &[0; 16]).build();
    assert_eq!(
        r.push(&atomic, atomic.len(), T0),
        Outcome::Complete(plain, 1)
    );
    assert_eq!(r.pending(), 0);
}

#[test]
fn an_ipv6_first_fragment_without_the_whole_transport_header_goes_on_unreassembled() {
    // RFC 8200 4.5 (Linux's ipv6frag_thdr_truncated): 8 bytes of a 20-byte TCP header.
    let frags = fragments(&syn(Pair::V6), 8, 7);
    let mut r = Reassembler::default();
    assert_eq!(r.push(&frags[0], frags[0].len(), T0), Outcome::Whole);
    // The later fragments wait for a first fragment that never comes.
    let out = push_all(&mut r, &frags[1..]);
    assert!(out.iter().all(|o| *o == Outcome::Held), "{out:?}");
    // 24 bytes hold the whole TCP header.
    let frags = fragments(&syn(Pair::V6), 24, 8);
    let out = push_all(&mut r, &frags);
    assert!(matches!(out.last(), Some(Outcome::Complete(..))), "{out:?}");
}

#[test]
fn tiny_fragments_in_any_order_give_back_the_datagram() {
    // suricata-verify bug-6887: a SYN in tiny fragments, its TCP header split over several.
    for pair in [Pair::V4, Pair::V6] {
        let whole = syn(pair);
        let mut frags = fragments(&whole, tiny(pair), 0x1234);
        assert!(frags.len() >= 2, "{}", frags.len());
        frags.rotate_left(2);
        let mut r = Reassembler::default();
        let out = push_all(&mut r, &frags);
        let (last, held) = out.split_last().expect("fragments");
        assert!(held.iter().all(|o| *o == Outcome::Held), "{held:?}");
        match last {
            Outcome::Complete(bytes, n) => {
                assert_eq!(*n, frags.len());
                // IPv4 gets its header back (checksum recomputed), IPv6 loses the fragment
                // header the splitter put after the fixed header.
                assert_eq!(*bytes, whole);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.pending(), 0);
        assert_eq!(r.held, [0, 0]);
    }
}

#[test]
fn extension_headers_before_the_fragment_header_are_kept_and_renamed() {
    let (src, dst, ..) = Pair::V6.from(Side::Client);
    let whole = testing::udp(src, dst).payload(40).hop_by_hop().build();
    // The UDP header and payload (after the fixed header and the 8-byte hop-by-hop header).
    let l4 = &whole[48..];
    let first = testing::ip(src, dst, 17, &l4[..16])
        .hop_by_hop()
        .id(9)
        .fragment(0, true);
    let rest = testing::ip(src, dst, 17, &l4[16..])
        .hop_by_hop()
        .id(9)
        .fragment(2, false);
    let mut r = Reassembler::default();
    let (a, b) = (first.build(), rest.build());
    assert_eq!(r.push(&b, b.len(), T0), Outcome::Held);
    assert_eq!(r.push(&a, a.len(), T0), Outcome::Complete(whole, 2));
}

#[test]
fn an_overlap_discards_the_datagram_a_duplicate_only_itself() {
    for pair in [Pair::V4, Pair::V6] {
        let whole = pair.tcp(Side::Client, ACK, 1, 1).payload(64).build();
        let frags = fragments(&whole, tiny(pair), 7);
        let mut r = Reassembler::default();
        assert_eq!(r.push(&frags[0], frags[0].len(), T0), Outcome::Held);
        // The same fragment again: dropped, the datagram kept.
        let dup = r.push(&frags[0], frags[0].len(), T0);
        assert_eq!(dup, Outcome::Discarded(Discard::Duplicate));
        assert_eq!(r.pending(), 1);
        // A first fragment 8 bytes longer overlaps the held one without lying inside it.
        let wide = fragments(&whole, tiny(pair) + 8, 7);
        let out = r.push(&wide[0], wide[0].len(), T0);
        assert_eq!(out, Outcome::Discarded(Discard::Overlap), "{pair:?}");
        assert_eq!((r.pending(), r.held), (0, [0, 0]));
        // The identifier starts afresh: a clean set completes.
        let out = push_all(&mut r, &frags);
        assert!(matches!(out.last(), Some(Outcome::Complete(..))), "{out:?}");
    }
}

#[test]
fn a_fragment_inside_a_run_of_adjacent_fragments_is_a_duplicate() {
    let whole = syn(Pair::V4);
    let small = fragments(&whole, 8, 7);
    let wide = fragments(&whole, 16, 7);
    let mut r = Reassembler::default();
    for f in &small[..2] {
        assert_eq!(r.push(f, f.len(), T0), Outcome::Held);
    }
    // 0..16 lies inside the run 0..8 + 8..16.
    let out = r.push(&wide[0], wide[0].len(), T0);
    assert_eq!(out, Outcome::Discarded(Discard::Duplicate));
    let out = push_all(&mut r, &small[2..]);
    assert!(matches!(out.last(), Some(Outcome::Complete(..))), "{out:?}");
    // Across a hole (0..8 and 16..24 held) the same fragment is an overlap.
    let mut r = Reassembler::default();
    for f in [&small[0], &small[2]] {
        assert_eq!(r.push(f, f.len(), T0), Outcome::Held);
    }
    let wider = fragments(&whole, 24, 7);
    let out = r.push(&wider[0], wider[0].len(), T0);
    assert_eq!(out, Outcome::Discarded(Discard::Overlap));
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_contradicting_end_discards_the_ipv4_datagram_but_only_the_ipv6_fragment() {
    for pair in [Pair::V4, Pair::V6] {
        let whole = syn(pair);
        let frags = fragments(&whole, 8, 7);
        let last = frags.last().expect("last");
        let mut r = Reassembler::default();
        assert_eq!(r.push(last, last.len(), T0), Outcome::Held);
        // A fragment of the same datagram beyond its announced end.
        let longer = [whole.clone(), vec![0; 16]].concat();
        let longer = if pair.is_v6() {
            longer.fix_v6()
        } else {
            longer.fix_v4()
        };
        let longer = fragments(&longer, 8, 7);
        let beyond = &longer[longer.len() - 2];
        let out = r.push(beyond, beyond.len(), T0);
        assert_eq!(out, Outcome::Discarded(Discard::BadEnd));
        assert_eq!(r.pending(), usize::from(pair.is_v6()), "{pair:?}");
    }
}

#[test]
fn odd_lengths_empty_fragments_and_oversize_datagrams() {
    let mut r = Reassembler::default();
    // IPv6: a non-last fragment of 12 bytes kills its datagram and goes on as it is.
    let (src, dst, ..) = Pair::V6.from(Side::Client);
    let held = testing::ip(src, dst, 17, &[0; 16])
        .fragment(4, true)
        .build();
    assert_eq!(r.push(&held, held.len(), T0), Outcome::Held);
    let odd = testing::ip(src, dst, 17, &[0; 12])
        .fragment(0, true)
        .build();
    assert_eq!(r.push(&odd, odd.len(), T0), Outcome::Whole);
    assert_eq!(r.pending(), 0);
    // Beyond 65 535 bytes: IPv6 drops the fragment.
    let far = testing::ip(src, dst, 17, &[0; 1000])
        .fragment(8100, false)
        .build();
    let out = r.push(&far, far.len(), T0);
    assert_eq!(out, Outcome::Discarded(Discard::Oversize));
    assert_eq!(r.pending(), 0);
    // IPv4 rounds an odd length down; an empty fragment discards the datagram.
    let (src, dst, ..) = Pair::V4.from(Side::Client);
    let odd = testing::ip(src, dst, 17, &[0; 12])
        .fragment(0, true)
        .build();
    assert_eq!(r.push(&odd, odd.len(), T0), Outcome::Held);
    let empty = testing::ip(src, dst, 17, &[0; 4]).fragment(1, true).build();
    let out = r.push(&empty, empty.len(), T0);
    assert_eq!(out, Outcome::Discarded(Discard::BadEnd));
    assert_eq!(r.pending(), 0);
    // IPv4 beyond 65 535 bytes: discarded when complete (ip_frag_reasm).
    let mut out = Outcome::Whole;
    for i in 0..45u16 {
        let f = testing::ip(src, dst, 17, &[0; 1480])
            .id(9)
            .fragment(i * 185, i < 44)
            .build();
        out = r.push(&f, f.len(), T0);
    }
    assert_eq!(out, Outcome::Discarded(Discard::Oversize));
    assert_eq!(r.pending(), 0);
}

/// A packet made longer by extra payload bytes, its length field fixed up.
trait FixLength {
    fn fix_v4(self) -> Vec<u8>;
    fn fix_v6(self) -> Vec<u8>;
}

impl FixLength for Vec<u8> {
    fn fix_v4(mut self) -> Vec<u8> {
        let len = u16::try_from(self.len()).expect("fits");
        self[2..4].copy_from_slice(&len.to_be_bytes());
        self
    }
    fn fix_v6(mut self) -> Vec<u8> {
        let len = u16::try_from(self.len() - 40).expect("fits");
        self[4..6].copy_from_slice(&len.to_be_bytes());
        self
    }
}

#[test]
fn fragments_wait_30_seconds_in_ipv4_60_in_ipv6() {
    for (pair, wait) in [(Pair::V4, 30), (Pair::V6, 60)] {
        let frags = fragments(&syn(pair), tiny(pair), 7);
        let (first, rest) = frags.split_first().expect("fragments");
        let mut r = Reassembler::default();
        assert_eq!(r.push(first, first.len(), T0), Outcome::Held);
        let later = T0 + Duration::from_secs(wait);
        let out: Vec<_> = rest.iter().map(|f| r.push(f, f.len(), later)).collect();
        assert!(out.iter().all(|o| *o == Outcome::Held), "{pair:?} {out:?}");
        // Just in time, the same datagram completes.
        let mut r = Reassembler::default();
        r.push(first, first.len(), T0);
        let in_time = later - Duration::from_millis(1);
        let out: Vec<_> = rest.iter().map(|f| r.push(f, f.len(), in_time)).collect();
        assert!(matches!(out.last(), Some(Outcome::Complete(..))), "{out:?}");
    }
}

#[test]
fn past_the_memory_limit_no_fragment_is_taken_until_room_is_made() {
    let mut r = Reassembler::with_limit(64);
    let (src, dst, ..) = Pair::V4.from(Side::Client);
    let frag = |id: u16, offset: u16, more: bool| {
        testing::ip(src, dst, 17, &[0; 32])
            .id(id)
            .fragment(offset, more)
            .build()
    };
    let (a, b, c) = (frag(1, 0, true), frag(2, 0, true), frag(3, 0, true));
    assert_eq!(r.push(&a, a.len(), T0), Outcome::Held);
    assert_eq!(r.push(&b, b.len(), T0), Outcome::Held);
    assert_eq!(r.push(&c, c.len(), T0), Outcome::Held); // 64 held: not over yet
    let d = frag(4, 0, true);
    assert_eq!(
        r.push(&d, d.len(), T0),
        Outcome::Discarded(Discard::MemoryLimit)
    );
    // IPv6 has its own budget.
    let (src6, dst6, ..) = Pair::V6.from(Side::Client);
    let v6 = testing::ip(src6, dst6, 17, &[0; 32])
        .id(5)
        .fragment(0, true)
        .build();
    assert_eq!(r.push(&v6, v6.len(), T0), Outcome::Held);
    // Expiry makes room.
    let later = T0 + Duration::from_secs(31);
    assert_eq!(r.push(&d, d.len(), later), Outcome::Held);
}

#[test]
fn fragments_cut_short_by_the_snap_length_are_judged_as_they_are() {
    let frags = fragments(&syn(Pair::V4), 8, 7);
    let f = &frags[1];
    let mut r = Reassembler::default();
    assert_eq!(r.push(&f[..f.len() - 2], f.len() - 2, T0), Outcome::Whole);
}

fn any_packet() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), 0usize..3000, any::<u16>()).prop_map(|(v6, len, id)| {
        let pair = if v6 { Pair::V6 } else { Pair::V4 };
        pair.tcp(Side::Server, ACK, 7, 9)
            .payload(len)
            .id(id)
            .build()
    })
}

proptest! {
    #[test]
    fn any_split_in_any_order_with_duplicates_reassembles_once(
        whole in any_packet(),
        size in 24usize..1500,
        seed in any::<u64>(),
        dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut frags = fragments(&whole, size, 77);
        prop_assume!(frags.len() > 1);
        for d in &dups {
            let f = frags[d.index(frags.len())].clone();
            frags.push(f);
        }
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..frags.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            frags.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut r = Reassembler::default();
        let mut complete = Vec::new();
        for f in &frags {
            match r.push(f, f.len(), T0) {
                Outcome::Complete(bytes, _) => complete.push(bytes),
                Outcome::Held | Outcome::Discarded(Discard::Duplicate) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
        // Duplicates arriving after completion start the datagram again (and may complete
        // it again, as in Linux).
        prop_assert!(!complete.is_empty());
        for c in &complete {
            prop_assert_eq!(c, &whole);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), claimed in 0usize..300) {
        let mut r = Reassembler::with_limit(1000);
        let mut b = bytes;
        if let Some(first) = b.first_mut() {
            *first = (*first & 0x0f) | if claimed % 2 == 0 { 0x40 } else { 0x60 };
        }
        for t in 0..3u64 {
            let _ = r.push(&b, claimed, T0 + Duration::from_secs(t * 20));
        }
    }
}

#[test]
fn addresses_keep_datagrams_apart() {
    let whole = syn(Pair::V4);
    let other = syn(Pair::V4.ports(1, 2));
    let (a, b) = (fragments(&whole, 8, 7), fragments(&other, 8, 7));
    let mut r = Reassembler::default();
    // Same addresses, same identifier, same protocol: one datagram (as in Linux).
    assert_eq!(r.push(&a[0], a[0].len(), T0), Outcome::Held);
    let src: IpAddr = "192.0.2.9".parse().expect("addr");
    let mut moved = b[0].clone();
    if let IpAddr::V4(s) = src {
        moved[12..16].copy_from_slice(&s.octets());
    }
    assert_eq!(r.push(&moved, moved.len(), T0), Outcome::Held);
    assert_eq!(r.pending(), 2);
}
