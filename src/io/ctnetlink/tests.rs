//! Golden messages captured from Linux 6.18 with `scripts/capture-netlink` (a namespace of its
//! own, documentation addresses on its loopback), and requests checked byte by byte against the
//! ctnetlink UAPI (`linux/netfilter/nfnetlink_conntrack.h`). The e2e test `e2e_kernel` sends the
//! same requests to the kernel.

use std::net::IpAddr;

use proptest::prelude::*;

use super::codec::{self, Reply, ReplyBody};
use super::*;

/// Dump line: TCP 192.0.2.1:41000 -> 192.0.2.1:7001, ESTABLISHED, connmark 0x20000, wscale 10/10.
const DUMP_TCP_V4: &str = concat!(
    "d400000000010200010000002360000002000000340001801400018008000100c000020108000200c00002011c000280",
    "050001000600000006000200a0280000060003001b590000340002801400018008000100c000020108000200c0000201",
    "1c0002800500010006000000060002001b59000006000300a0280000080003000000000e080008000002000008000c00",
    "2863007108000b0000000001080007000006977f300004802c0001800500010003000000050002000a00000005000300",
    "0a00000006000400230000000600050023000000",
);

/// Dump line: TCP [2001:db8::1]:41001 -> [2001:db8::1]:7002, connmark 0x10000.
const DUMP_TCP_V6: &str = concat!(
    "040100000001020001000000236000000a0000004c0001802c0001801400030020010db8000000000000000000000001",
    "1400040020010db80000000000000000000000011c000280050001000600000006000200a0290000060003001b5a0000",
    "4c0002802c0001801400030020010db80000000000000000000000011400040020010db8000000000000000000000001",
    "1c0002800500010006000000060002001b5a000006000300a0290000080003000000000e080008000001000008000c00",
    "cbdb839008000b0000000001080007000006977f300004802c0001800500010003000000050002000a00000005000300",
    "0a00000006000400230000000600050023000000",
);

/// NLMSG_DONE ending that dump (sequence 1).
const DUMP_DONE: &str = "1400000003000200010000002360000000000000";

/// Event: new UDP entry 192.0.2.1:41002 -> 192.0.2.1:7003.
const EVENT_NEW_UDP: &str = concat!(
    "9400000000010006000000000000000002000000340001801400018008000100c000020108000200c00002011c000280",
    "050001001100000006000200a02a0000060003001b5b0000340002801400018008000100c000020108000200c0000201",
    "1c0002800500010011000000060002001b5b000006000300a02a000008000c00d9219424080003000000000808000700",
    "0000001e",
);

/// Event: that entry destroyed by `conntrack -D`.
const EVENT_DESTROY_UDP: &str = concat!(
    "94000000020100000000000073e2d9fd02000000340001801400018008000100c000020108000200c00002011c000280",
    "050001001100000006000200a02a0000060003001b5b0000340002801400018008000100c000020108000200c0000201",
    "1c0002800500010011000000060002001b5b000006000300a02a000008000c00d9219424080003000000020808000700",
    "0000001d",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn one(bytes: &[u8]) -> Reply {
    let mut replies = codec::decode(bytes).unwrap();
    assert_eq!(replies.len(), 1);
    replies.remove(0)
}

fn entry_of(r: Reply) -> Entry {
    match r.body {
        ReplyBody::Entry(ev) => ev.entry().clone(),
        other => panic!("not an entry: {other:?}"),
    }
}

#[test]
fn ipv4_tcp_dump_line_is_typed() {
    let r = one(&unhex(DUMP_TCP_V4));
    assert_eq!(r.seq, 1);
    let e = entry_of(r);
    assert_eq!(
        e.original,
        Tuple {
            src: ip("192.0.2.1"),
            dst: ip("192.0.2.1"),
            l4: L4::Tcp {
                src_port: 41000,
                dst_port: 7001
            }
        }
    );
    assert_eq!(
        e.reply.l4,
        L4::Tcp {
            src_port: 7001,
            dst_port: 41000
        }
    );
    assert_eq!(e.mark, Some(0x20000));
    assert_eq!(e.id, Some(0x2863_0071));
    assert!(e
        .status
        .has(Status::SEEN_REPLY | Status::ASSURED | Status::CONFIRMED));
    assert_eq!(e.timeout, Some(432_000 - 1));
    let tcp = e.tcp.unwrap();
    assert_eq!(tcp.state, TcpState::Established);
    assert_eq!(tcp.state.to_string(), "ESTABLISHED");
    assert_eq!(
        (tcp.wscale_original, tcp.wscale_reply),
        (Some(10), Some(10))
    );
    let flags = tcp.flags_original.unwrap();
    assert_ne!(flags & TCP_FLAG_WINDOW_SCALE, 0);
    assert_ne!(flags & TCP_FLAG_SACK_PERM, 0);
    assert_eq!(e.zone, None);
}

#[test]
fn ipv6_tcp_dump_line_is_typed() {
    let e = entry_of(one(&unhex(DUMP_TCP_V6)));
    assert!(e.original.is_ipv6());
    assert_eq!(e.original.src, ip("2001:db8::1"));
    assert_eq!(
        e.original.l4,
        L4::Tcp {
            src_port: 41001,
            dst_port: 7002
        }
    );
    assert_eq!(e.mark, Some(0x10000));
    assert_eq!(e.tcp.unwrap().wscale_reply, Some(10));
}

#[test]
fn done_and_events_are_told_apart() {
    assert_eq!(one(&unhex(DUMP_DONE)).body, ReplyBody::Done);
    let udp = Tuple {
        src: ip("192.0.2.1"),
        dst: ip("192.0.2.1"),
        l4: L4::Udp {
            src_port: 41002,
            dst_port: 7003,
        },
    };
    match one(&unhex(EVENT_NEW_UDP)).body {
        ReplyBody::Entry(Event::New(e)) => {
            assert_eq!(e.original, udp);
            assert_eq!(e.tcp, None);
            assert_eq!(e.mark, None); // events carry the mark only when it is set
            assert!(!e.status.has(Status::SEEN_REPLY));
        }
        other => panic!("{other:?}"),
    }
    match one(&unhex(EVENT_DESTROY_UDP)).body {
        ReplyBody::Entry(Event::Destroy(e)) => {
            assert_eq!(e.original, udp);
            assert!(e.status.has(Status::DYING));
        }
        other => panic!("{other:?}"),
    }
    // A datagram holding several messages: each is decoded.
    let mut two = unhex(DUMP_TCP_V4);
    two.extend(unhex(DUMP_DONE));
    assert_eq!(codec::decode(&two).unwrap().len(), 2);
}

#[test]
fn errors_and_acks_are_decoded() {
    // NLMSG_ERROR, sequence 7, error -ENOENT, then the echoed request header.
    let mut err = unhex(concat!(
        "24000000", "0200", "0001", "07000000",
        "00000000", // len 36, NLMSG_ERROR, NLM_F_CAPPED
        "feffffff", // -2
        "14000000", "0201", "0500", "07000000", "00000000", // the request's header
    ));
    let r = one(&err);
    assert_eq!((r.seq, r.body), (7, ReplyBody::Error(libc::ENOENT)));
    err[16..20].copy_from_slice(&0i32.to_ne_bytes());
    assert_eq!(one(&err).body, ReplyBody::Ack);
}

fn tcp_v4() -> Tuple {
    Tuple {
        src: ip("198.51.100.2"),
        dst: ip("203.0.113.2"),
        l4: L4::Tcp {
            src_port: 40000,
            dst_port: 80,
        },
    }
}

#[test]
fn dump_requests_are_encoded() {
    assert_eq!(
        hex(&codec::dump_request(3, None)),
        concat!(
            "14000000", "0101", "0103", "03000000", "00000000", // CT_GET, REQUEST|DUMP, seq 3
            "00000000", // AF_UNSPEC: both families
        )
    );
    let filter = MarkFilter {
        value: 0x1_0000,
        mask: 0x3_0000,
    };
    assert_eq!(
        hex(&codec::dump_request(4, Some(filter))),
        concat!(
            "24000000", "0101", "0103", "04000000", "00000000", "00000000", "08000800",
            "00010000", // CTA_MARK
            "08001500", "00030000", // CTA_MARK_MASK
        )
    );
}

#[test]
fn mark_change_and_delete_are_encoded() {
    let tuple = concat!(
        "34000180", // CTA_TUPLE_ORIG, nested
        "14000180", "08000100", "c6336402", "08000200",
        "cb007102", // CTA_TUPLE_IP: v4 src, dst
        "1c000280", "05000100", "06000000", // CTA_TUPLE_PROTO: CTA_PROTO_NUM 6
        "06000200", "9c400000", "06000300", "00500000", // ports 40000, 80
    );
    assert_eq!(
        hex(&codec::set_mark_request(
            9,
            &tcp_v4(),
            0xffff_ffff,
            0x2_0000
        )),
        [
            concat!(
                "58000000", "0001", "0500", "09000000", "00000000", // CT_NEW, REQUEST|ACK
                "02000000", // AF_INET
            ),
            tuple,
            concat!("08000800", "00020000", "08001500", "00020000"), // mark & mask, mask
        ]
        .concat()
    );
    assert_eq!(
        hex(&codec::delete_request(10, &tcp_v4(), Some(0x2863_0071))),
        [
            concat!("50000000", "0201", "0500", "0a000000", "00000000", "02000000"),
            tuple,
            concat!("08000c00", "28630071"), // CTA_ID
        ]
        .concat()
    );
}

#[test]
fn every_tuple_kind_survives_encoding_and_decoding() {
    let tuples = [
        tcp_v4(),
        Tuple {
            src: ip("2001:db8:1::2"),
            dst: ip("2001:db8:2::2"),
            l4: L4::Udp {
                src_port: 5353,
                dst_port: 53,
            },
        },
        Tuple {
            src: ip("198.51.100.2"),
            dst: ip("203.0.113.2"),
            l4: L4::Icmp {
                id: 0x1234,
                icmp_type: 8,
                code: 0,
            },
        },
        Tuple {
            src: ip("2001:db8:1::2"),
            dst: ip("2001:db8:2::2"),
            l4: L4::Icmpv6 {
                id: 7,
                icmp_type: 128,
                code: 0,
            },
        },
        Tuple {
            src: ip("198.51.100.2"),
            dst: ip("203.0.113.2"),
            l4: L4::Other { protocol: 47 },
        },
    ];
    for t in tuples {
        // A delete request is an IPCTNL_MSG_CT_DELETE with the tuple: read it back as the
        // kernel's destroy event would be read. It needs a reply tuple too: reuse the original.
        let mut req = codec::delete_request(1, &t, None);
        let orig_start = 20;
        let orig = req[orig_start..].to_vec();
        let mut reply_attr = orig.clone();
        reply_attr[2] = 2; // CTA_TUPLE_REPLY
        req.extend(reply_attr);
        let len = req.len() as u32;
        req[..4].copy_from_slice(&len.to_ne_bytes());
        match one(&req).body {
            ReplyBody::Entry(Event::Destroy(e)) => {
                assert_eq!(e.original, t);
                assert_eq!(e.reply, t);
            }
            other => panic!("{t}: {other:?}"),
        }
    }
}

#[test]
fn entries_without_tuples_are_errors_not_panics() {
    // CT_NEW with only a mark.
    let msg = unhex(concat!(
        "1c000000", "0001", "0000", "00000000", "00000000", "02000000", "08000800", "00000001",
    ));
    assert!(matches!(codec::decode(&msg), Err(CtError::Malformed(_))));
    // A length field beyond the datagram.
    let mut bad = unhex(DUMP_DONE);
    bad[0] = 0xff;
    assert!(matches!(codec::decode(&bad), Err(CtError::Malformed(_))));
}

#[test]
fn truncated_golden_messages_never_panic() {
    for golden in [
        DUMP_TCP_V4,
        DUMP_TCP_V6,
        EVENT_NEW_UDP,
        EVENT_DESTROY_UDP,
        DUMP_DONE,
    ] {
        let bytes = unhex(golden);
        for len in 0..bytes.len() {
            let _ = codec::decode(&bytes[..len]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn corrupted_golden_messages_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = unhex([DUMP_TCP_V4, DUMP_TCP_V6, EVENT_NEW_UDP, EVENT_DESTROY_UDP][which]);
        for (at, val) in edits {
            let i = at.index(bytes.len());
            bytes[i] = val;
        }
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&bytes);
    }
}
