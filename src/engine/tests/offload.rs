//! The kernel fast path through the engine: when a flow is offloaded, what its first packets
//! back from the kernel do (windows learned anew, the stricter close rules intact), and which
//! offloaded flows the kernel may keep (alive, not revoked, not blocked).

use super::*;
use crate::adopt::KernelFlow;
use crate::scan::ScanConfig;

fn offloading() -> Engine {
    offloading_with(EngineConfig::default())
}

fn offloading_with(config: EngineConfig) -> Engine {
    Engine::new(EngineConfig {
        offload: Offload {
            enable: true,
            ..Offload::OFF
        },
        ..config
    })
}

/// A packet the kernel handed back from the fast path (the FASTPATH bit came with it).
fn back(e: &Engine, bytes: &[u8], secs: u64) -> Decision {
    let meta = PacketMeta {
        fastpath: true,
        ..PacketMeta::default()
    };
    e.process(bytes, &meta, Timestamp::from_secs(secs))
}

/// Handshake and data each way until the flow is offloaded (two segments each way after the
/// handshake); returns the next sequence numbers `(client, server)`.
fn offload_tcp(e: &Engine, p: Pair) -> (u32, u32) {
    assert!(!accept(e, &p.tcp(C, SYN, 100, 0).build(), 0).fastpath);
    assert!(!accept(e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0).fastpath);
    assert!(!accept(e, &p.tcp(C, ACK, 101, 901).build(), 0).fastpath);
    let d = accept(e, &p.tcp(C, ACK | PSH, 101, 901).payload(100).build(), 1);
    assert!(!d.fastpath, "one segment from the client only");
    let d = accept(e, &p.tcp(S, ACK | PSH, 901, 201).payload(100).build(), 1);
    assert!(!d.fastpath, "one segment each way");
    let d = accept(e, &p.tcp(C, ACK | PSH, 201, 1001).payload(100).build(), 1);
    assert!(!d.fastpath, "two from the client, one from the server");
    let d = accept(e, &p.tcp(S, ACK, 1001, 301).build(), 1);
    assert!(d.fastpath, "two segments each way: offloaded");
    assert!(e.connections(Timestamp::from_secs(1), |_| true)[0].offloaded);
    (301, 1001)
}

/// The flow of `p` as the kernel table reports it.
fn kernel_flow(p: Pair, proto: u8) -> KernelFlow {
    let (cport, sport) = if proto == crate::proto::UDP {
        (5353, 53)
    } else {
        (p.cport, p.sport)
    };
    KernelFlow {
        proto,
        orig: (p.client, cport),
        resp: (p.server, sport),
        tcp: None,
        seen_reply: true,
        assured: true,
        timeout: None,
    }
}

#[test]
fn the_fast_path_is_off_unless_configured() {
    for p in LABS {
        let e = established(p);
        for i in 0..4u32 {
            let d = accept(
                &e,
                &p.tcp(C, ACK | PSH, 101 + i * 10, 901).payload(10).build(),
                1,
            );
            assert!(!d.fastpath);
            let d = accept(&e, &p.tcp(S, ACK, 901, 111 + i * 10).build(), 1);
            assert!(!d.fastpath);
        }
        accept(&e, &udp(p, C, 10), 1);
        assert!(!accept(&e, &udp(p, S, 10), 1).fastpath);
    }
}

#[test]
fn a_tcp_flow_is_offloaded_after_segments_each_way_and_its_close_is_judged() {
    for p in LABS {
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        // The kernel carried a megabyte each way: statewall's windows are far behind.
        let (c, s) = (c + 1_000_000, s + 1_000_000);
        let d = back(&e, &p.tcp(C, FIN | ACK, c, s).build(), 60);
        assert!(d.accepted(), "{:?}", d.reason());
        assert!(!d.fastpath, "a teardown leaves the fast path");
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::FinWait)));
        // The rest of the close, from both sides, through statewall with learned windows.
        let d = accept(&e, &p.tcp(S, FIN | ACK, s, c + 1).build(), 60);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::LastAck)));
        let d = accept(&e, &p.tcp(C, ACK, c + 1, s + 1).build(), 60);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::TimeWait)));
        assert!(!d.fastpath);
        // The stricter case holds: data after a full close is dropped.
        dropped(
            &e,
            &p.tcp(C, ACK | PSH, c + 1, s + 1).payload(10).build(),
            61,
            DropReason::DataAfterClose,
        );
        assert!(!e.connections(Timestamp::from_secs(61), |_| true)[0].offloaded);
    }
}

#[test]
fn without_the_resume_a_teardown_after_the_fast_path_is_out_of_window() {
    // What the resume is for: the same FIN judged against the stale windows.
    let p = LABS[0];
    let e = offloading();
    let (c, s) = offload_tcp(&e, p);
    dropped(
        &e,
        &p.tcp(C, FIN | ACK, c + 1_000_000, s + 1_000_000).build(),
        60,
        DropReason::SeqAboveWindow,
    );
}

#[test]
fn a_rst_after_the_fast_path_closes_and_data_after_it_is_dropped() {
    for p in LABS {
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        let (c, s) = (c + 500_000, s + 70_000);
        let d = back(&e, &p.tcp(S, RST | ACK, s, c).build(), 30);
        assert!(d.accepted(), "{:?}", d.reason());
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Close)));
        assert!(!d.fastpath);
        dropped(
            &e,
            &p.tcp(C, ACK | PSH, c, s).payload(10).build(),
            30,
            DropReason::DataAfterRst,
        );
    }
}

#[test]
fn a_flow_back_from_the_fast_path_is_offloaded_again_once_validated() {
    let p = LABS[1];
    let e = offloading();
    let (c, s) = offload_tcp(&e, p);
    let (c, s) = (c + 10_000, s + 20_000);
    // Any segment the kernel hands back with the bit (here a bare ACK) resumes the flow:
    // its counts start again, this segment the client's first.
    let d = back(&e, &p.tcp(C, ACK, c, s).build(), 5);
    assert!(d.accepted(), "{:?}", d.reason());
    assert!(!d.fastpath);
    let d = accept(&e, &p.tcp(C, ACK | PSH, c, s).payload(10).build(), 5);
    assert!(!d.fastpath, "two from the client, none from the server");
    let d = accept(&e, &p.tcp(S, ACK, s, c + 10).build(), 5);
    assert!(!d.fastpath, "the server's window learned, one segment");
    let d = accept(&e, &p.tcp(S, ACK | PSH, s, c + 10).payload(10).build(), 5);
    assert!(d.fastpath, "two each way again");
}

#[test]
fn datagram_flows_are_offloaded_once_replied_even_one_way_after() {
    for p in LABS {
        let e = offloading();
        assert!(!accept(&e, &udp(p, C, 64), 0).fastpath);
        assert!(!accept(&e, &udp(p, C, 64), 0).fastpath);
        assert!(accept(&e, &udp(p, S, 64), 0).fastpath, "the first reply");
        assert!(accept(&e, &udp(p, C, 64), 0).fastpath, "one way after it");
        let off = Engine::new(EngineConfig {
            offload: Offload {
                enable: true,
                datagrams: false,
                ..Offload::OFF
            },
            ..EngineConfig::default()
        });
        accept(&off, &udp(p, C, 64), 0);
        assert!(!accept(&off, &udp(p, S, 64), 0).fastpath);
    }
}

#[test]
fn the_kernel_keeps_an_offloaded_flow_alive_in_the_table() {
    let p = LABS[0];
    let e = offloading();
    accept(&e, &udp(p, C, 64), 0);
    assert!(accept(&e, &udp(p, S, 64), 0).fastpath);
    let flow = kernel_flow(p, crate::proto::UDP);
    // The kernel forwards the flow for ten minutes; statewall sees none of its packets but
    // hears from the kernel table every ten seconds (UDP replied timeout: 120 s).
    for t in (10..=600).step_by(10) {
        let now = Timestamp::from_secs(t);
        e.on_timer(now);
        assert!(e.keep_offloaded(&flow, now), "at {t} s");
    }
    assert_eq!(e.entries(), 1);
    // Without the kernel's news it expires as any flow does; then the kernel must let go.
    e.on_timer(Timestamp::from_secs(800));
    assert_eq!(e.entries(), 0);
    assert!(!e.keep_offloaded(&flow, Timestamp::from_secs(800)));
}

#[test]
fn only_offloaded_flows_are_kept() {
    let p = LABS[0];
    let e = offloading();
    let tcp = kernel_flow(p, crate::proto::TCP);
    assert!(!e.keep_offloaded(&tcp, Timestamp::from_secs(0)), "no entry");
    let e = established(p);
    assert!(
        !e.keep_offloaded(&tcp, Timestamp::from_secs(0)),
        "not offloaded"
    );
}

#[test]
fn a_recheck_takes_revoked_flows_off_the_fast_path_at_once() {
    let p = LABS[0];
    let e = offloading();
    offload_tcp(&e, p);
    let flow = kernel_flow(p, crate::proto::TCP);
    assert!(e.keep_offloaded(&flow, Timestamp::from_secs(2)));
    assert!(!e.take_offload_release());
    let cut = crate::rules::load_str("t.rules", "policy drop\nallow udp\n").expect("rules");
    assert_eq!(e.recheck(&cut.policy, Timestamp::from_secs(3)).revoked, 1);
    assert!(e.take_offload_release(), "the daemon runs a pass at once");
    assert!(!e.take_offload_release());
    assert!(!e.keep_offloaded(&flow, Timestamp::from_secs(3)));
    // Handed back by the kernel, its packets are dropped.
    let d = back(&e, &p.tcp(C, ACK | PSH, 301, 1001).payload(10).build(), 3);
    assert_eq!(d.reason(), Some(DropReason::Revoked));
}

#[test]
fn a_block_takes_the_blocked_source_off_the_fast_path_at_once() {
    let scan: ScanConfig =
        serde_json::from_str(r#"{"block": true, "block_level": 1}"#).expect("scan config");
    let e = offloading_with(EngineConfig {
        scan: Some(scan),
        ..EngineConfig::default()
    });
    let p = LABS[0];
    offload_tcp(&e, p);
    let flow = kernel_flow(p, crate::proto::TCP);
    assert!(e.keep_offloaded(&flow, Timestamp::from_secs(1)));
    assert!(!e.take_offload_release());
    // The client scans: connects to 40 ports (completed handshakes, evidence a spoofer cannot
    // give: a stealth scan alone never blocks) and is blocked.
    for port in 1..=40u16 {
        let t = p.ports(41000 + port, port);
        run(&e, &t.tcp(C, SYN, 1, 0).build(), 1);
        run(&e, &t.tcp(S, SYN | ACK, 7, 2).build(), 1);
        run(&e, &t.tcp(C, ACK, 2, 8).build(), 1);
    }
    e.on_timer(Timestamp::from_secs(2));
    assert_eq!(e.blocks(Timestamp::from_secs(2)).len(), 1);
    assert!(e.take_offload_release());
    assert!(!e.keep_offloaded(&flow, Timestamp::from_secs(2)));
}

#[test]
fn an_operator_block_takes_the_network_off_the_fast_path_at_once() {
    let e = offloading();
    let p = LABS[1];
    offload_tcp(&e, p);
    let flow = kernel_flow(p, crate::proto::TCP);
    assert!(e.keep_offloaded(&flow, Timestamp::from_secs(1)));
    assert!(!e.take_offload_release());
    let net = ipnet::IpNet::from(p.server);
    e.block(
        net,
        std::time::Duration::from_secs(60),
        Timestamp::from_secs(2),
    )
    .expect("blocked");
    assert!(e.take_offload_release());
    assert!(!e.keep_offloaded(&flow, Timestamp::from_secs(2)));
    // Killing a flow takes it off too.
    let e = offloading();
    offload_tcp(&e, p);
    assert!(e.kill(Timestamp::from_secs(2), |_| true).killed > 0);
    assert!(e.take_offload_release());
    assert!(!e.keep_offloaded(&flow, Timestamp::from_secs(2)));
}

#[test]
fn acks_of_data_the_kernel_forwarded_before_the_teardown_pass() {
    for p in LABS {
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        // The kernel carried 5000 bytes of the server's; the client's FIN acknowledges 2000,
        // then its next ACK the rest, before the server speaks again.
        let d = back(&e, &p.tcp(C, FIN | ACK, c, s + 2000).build(), 9);
        assert!(d.accepted(), "{:?}", d.reason());
        // The server cannot have sent beyond the window the client advertised (64000).
        dropped(
            &e,
            &p.tcp(C, ACK, c + 1, s + 2000 + 64_001).build(),
            9,
            DropReason::AckUnsentData,
        );
        accept(&e, &p.tcp(C, ACK, c + 1, s + 5000).build(), 9);
        // Beyond what the kernel let through is still unsent data once the server has spoken.
        let d = accept(&e, &p.tcp(S, FIN | ACK, s + 5000, c + 1).build(), 9);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::LastAck)));
        dropped(
            &e,
            &p.tcp(C, ACK, c + 1, s + 90_000).build(),
            9,
            DropReason::AckUnsentData,
        );
        let d = accept(&e, &p.tcp(C, ACK, c + 1, s + 5001).build(), 9);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::TimeWait)));
    }
}

/// A packet whose connection mark said the kernel holds its flow as admitted.
fn admitted(e: &Engine, bytes: &[u8], secs: u64) -> Decision {
    let meta = PacketMeta {
        admitted: true,
        ..PacketMeta::default()
    };
    e.process(bytes, &meta, Timestamp::from_secs(secs))
}

#[test]
fn after_a_restart_the_rst_of_an_admitted_flow_passes_and_closes_it() {
    for p in LABS {
        let e = offloading();
        e.set_pickup_until(Some(Timestamp::from_secs(60)));
        // Without the kernel's word a RST of an unknown flow belongs to no connection, and is
        // never answered.
        let rst = p.tcp(C, RST | ACK, 5000, 9000).build();
        let d = run(&e, &rst, 1);
        assert_eq!(d.reason(), Some(DropReason::NoConnection));
        assert!(!sends_rst(&d));
        // The kernel holds the flow as admitted (and found the RST in its window): the RST
        // passes, and the connection is closed for statewall too.
        let d = admitted(&e, &rst, 1);
        assert!(d.accepted(), "{:?}", d.reason());
        assert!(!sends_rst(&d));
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Close)));
        dropped(
            &e,
            &p.tcp(C, ACK | PSH, 5000, 9000).payload(10).build(),
            2,
            DropReason::DataAfterRst,
        );
        // Adopted only while pickup is on, like any mid-stream segment.
        let late = p.ports(40001, 80).tcp(S, RST, 9000, 0).build();
        let d = admitted(&e, &late, 61);
        assert_eq!(d.reason(), Some(DropReason::NoConnection));
    }
}

/// The lab's case: the server's last data went over the fast path, its FIN came back with
/// FASTPATH, and the client's ACK of that data (sent before the FIN reached it) is queued
/// behind the FIN.
#[test]
fn the_ack_of_data_the_kernel_forwarded_just_before_a_fin_passes() {
    for p in LABS {
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        // Six bytes from the server on the fast path, then its FIN, handed back.
        let d = back(&e, &p.tcp(S, FIN | ACK, s + 6, c).build(), 2);
        assert!(d.accepted(), "{:?}", d.reason());
        let d = admitted(&e, &p.tcp(C, ACK, c, s + 6).build(), 2);
        assert!(d.accepted(), "the ACK of the data: {:?}", d.reason());
        let d = admitted(&e, &p.tcp(C, FIN | ACK, c, s + 7).build(), 2);
        assert!(d.accepted(), "the client's FIN: {:?}", d.reason());
    }
}

/// The same, as the lab saw it on two CPUs: the client's ACK reached the queue before the FIN
/// that had cleared FASTPATH (so the ACK came with ADMITTED only). The kernel's window check
/// let the ACK through: statewall learns the windows anew from it, as from the FIN.
#[test]
fn the_ack_of_data_the_kernel_forwarded_passes_when_it_overtakes_the_fin() {
    for p in LABS {
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        let d = admitted(&e, &p.tcp(C, ACK, c, s + 6).build(), 2);
        assert!(d.accepted(), "the ACK of the data: {:?}", d.reason());
        assert!(!d.fastpath, "back from the fast path");
        let d = back(&e, &p.tcp(S, FIN | ACK, s + 6, c).build(), 2);
        assert!(d.accepted(), "the FIN: {:?}", d.reason());
        let d = admitted(&e, &p.tcp(C, FIN | ACK, c, s + 7).build(), 2);
        assert!(d.accepted(), "the client's FIN: {:?}", d.reason());
        // Without ADMITTED (the kernel found it INVALID, or does not hold the flow) the same
        // ACK beyond what statewall saw is still dropped.
        let e = offloading();
        let (c, s) = offload_tcp(&e, p);
        dropped(
            &e,
            &p.tcp(C, ACK, c, s + 6).build(),
            2,
            DropReason::AckUnsentData,
        );
    }
}
