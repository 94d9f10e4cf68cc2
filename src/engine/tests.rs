//! Engine scenarios: whole packets through `Engine::process`, IPv4 and IPv6.

use super::*;
use crate::conntrack::TcpState;
use crate::packet::{Seq, TcpFlags};
use crate::ratelimit::ProbesConfig;
use crate::verdict::ProbeMode;
use etherparse::{IpNumber, PacketBuilder};

const C4: [u8; 4] = [198, 51, 100, 2];
const S4: [u8; 4] = [203, 0, 113, 2];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

/// Which end sends, over which family.
#[derive(Clone, Copy)]
enum End {
    Client,
    Server,
}

#[derive(Clone, Copy)]
struct Lab {
    v6: bool,
}

impl Lab {
    fn ip(&self, from: End) -> PacketBuilderStep {
        match (self.v6, from) {
            (false, End::Client) => PacketBuilder::ipv4(C4, S4, 64),
            (false, End::Server) => PacketBuilder::ipv4(S4, C4, 64),
            (true, End::Client) => PacketBuilder::ipv6(C6, S6, 64),
            (true, End::Server) => PacketBuilder::ipv6(S6, C6, 64),
        }
    }

    fn tcp(&self, from: End, flags: u8, seq: u32, ack: u32, len: usize) -> Vec<u8> {
        let (sp, dp) = match from {
            End::Client => (40000, 80),
            End::Server => (80, 40000),
        };
        let mut b = self.ip(from).tcp(sp, dp, seq, 64000);
        if flags & SYN != 0 {
            b = b.syn();
        }
        if flags & ACK != 0 {
            b = b.ack(ack);
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & RST != 0 {
            b = b.rst();
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        let mut out = Vec::new();
        b.write(&mut out, &vec![0u8; len]).expect("write");
        out
    }

    fn udp(&self, from: End, len: usize) -> Vec<u8> {
        let (sp, dp) = match from {
            End::Client => (5353, 53),
            End::Server => (53, 5353),
        };
        let mut out = Vec::new();
        self.ip(from)
            .udp(sp, dp)
            .write(&mut out, &vec![0u8; len])
            .expect("write");
        out
    }

    fn echo(&self, from: End, request: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let b = self.ip(from);
        let r = match (self.v6, request) {
            (false, true) => b.icmpv4_echo_request(7, 1).write(&mut out, b"ping"),
            (false, false) => b.icmpv4_echo_reply(7, 1).write(&mut out, b"ping"),
            (true, true) => b.icmpv6_echo_request(7, 1).write(&mut out, b"ping"),
            (true, false) => b.icmpv6_echo_reply(7, 1).write(&mut out, b"ping"),
        };
        r.expect("write");
        out
    }

    /// The server's port unreachable quoting `original` (a client packet).
    fn unreachable(&self, original: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let b = self.ip(End::Server);
        let r = if self.v6 {
            b.icmpv6(etherparse::Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::Port,
            ))
            .write(&mut out, original)
        } else {
            b.icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut out, original)
        };
        r.expect("write");
        out
    }
}

type PacketBuilderStep = etherparse::PacketBuilderStep<etherparse::IpHeaders>;

const LABS: [Lab; 2] = [Lab { v6: false }, Lab { v6: true }];

fn engine() -> Engine {
    Engine::new(EngineConfig::default())
}

fn run(e: &Engine, bytes: &[u8], secs: u64) -> Decision {
    e.process(bytes, &PacketMeta::default(), Timestamp::from_secs(secs))
}

fn accept(e: &Engine, bytes: &[u8], secs: u64) -> Decision {
    let d = run(e, bytes, secs);
    assert!(d.accepted(), "dropped: {:?}", d.reason());
    d
}

/// Whether the packet opened a new connection.
fn opened(d: &Decision) -> bool {
    d.verdict == Verdict::Accept(Pass::Opened)
}

fn dropped(e: &Engine, bytes: &[u8], secs: u64, reason: DropReason) {
    let d = run(e, bytes, secs);
    assert_eq!(d.reason(), Some(reason));
}

/// Full handshake; returns the engine.
fn established(lab: Lab) -> Engine {
    let e = engine();
    let d = accept(&e, &lab.tcp(End::Client, SYN, 100, 0, 0), 0);
    assert!(opened(&d));
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynSent)));
    let d = accept(&e, &lab.tcp(End::Server, SYN | ACK, 900, 101, 0), 0);
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
    let d = accept(&e, &lab.tcp(End::Client, ACK, 101, 901, 0), 0);
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
    e
}

#[test]
fn handshake_data_and_close_in_both_families() {
    for lab in LABS {
        let e = established(lab);
        accept(&e, &lab.tcp(End::Client, ACK | PSH, 101, 901, 100), 1);
        accept(&e, &lab.tcp(End::Server, ACK | PSH, 901, 201, 1000), 1);
        accept(&e, &lab.tcp(End::Client, FIN | ACK, 201, 1901, 0), 2);
        accept(&e, &lab.tcp(End::Server, FIN | ACK, 1901, 202, 0), 2);
        let d = accept(&e, &lab.tcp(End::Client, ACK, 202, 1902, 0), 2);
        assert_eq!(d.state, Some(ConnState::Tcp(TcpState::TimeWait)));
        dropped(
            &e,
            &lab.tcp(End::Client, ACK | PSH, 202, 1902, 10),
            3,
            DropReason::DataAfterClose,
        );
        // A new SYN on the same tuple reopens it.
        let d = accept(&e, &lab.tcp(End::Client, SYN, 50_000, 0, 0), 4);
        assert!(opened(&d));
        assert_eq!(e.entries(), 1);
        let s = e.stats();
        assert_eq!(s.new_connections, 2);
        assert_eq!(s.dropped, 1);
    }
}

#[test]
fn segments_of_no_connection_are_dropped() {
    for lab in LABS {
        let e = engine();
        dropped(
            &e,
            &lab.tcp(End::Client, ACK, 1, 1, 0),
            0,
            DropReason::NoConnection,
        );
        dropped(
            &e,
            &lab.tcp(End::Client, FIN | ACK, 1, 1, 0),
            0,
            DropReason::NoConnection,
        );
        dropped(
            &e,
            &lab.tcp(End::Server, SYN | ACK, 1, 1, 0),
            0,
            DropReason::NoConnection,
        );
        dropped(
            &e,
            &lab.tcp(End::Client, RST, 1, 0, 0),
            0,
            DropReason::NoConnection,
        );
        dropped(
            &e,
            &lab.tcp(End::Client, SYN | FIN, 1, 0, 0),
            0,
            DropReason::TcpSynFin,
        );
        dropped(
            &e,
            &lab.tcp(End::Client, 0, 1, 0, 0),
            0,
            DropReason::TcpNull,
        );
        dropped(
            &e,
            &lab.tcp(End::Client, FIN, 1, 0, 0),
            0,
            DropReason::TcpFinNoAck,
        );
        assert_eq!(e.entries(), 0);
        assert_eq!(e.drop_count(DropReason::NoConnection), 4);
    }
}

#[test]
fn connection_expires_and_then_is_unknown() {
    let lab = LABS[0];
    let e = established(lab);
    // SYN_RECV -> ESTABLISHED: 5 days. Expire it by sweeping later.
    assert_eq!(e.on_timer(Timestamp::from_secs(1000)).expired, 0);
    assert_eq!(e.on_timer(Timestamp::from_secs(432_001)).expired, 1);
    assert_eq!(e.entries(), 0);
    dropped(
        &e,
        &lab.tcp(End::Client, ACK, 101, 901, 0),
        432_002,
        DropReason::NoConnection,
    );
}

#[test]
fn expired_entry_is_invisible_before_the_sweep() {
    let lab = LABS[1];
    let e = engine();
    accept(&e, &lab.tcp(End::Client, SYN, 100, 0, 0), 0);
    // SYN_SENT times out after 120 s: the late SYN/ACK matches nothing.
    dropped(
        &e,
        &lab.tcp(End::Server, SYN | ACK, 900, 101, 0),
        121,
        DropReason::NoConnection,
    );
    assert_eq!(e.entries(), 0);
}

#[test]
fn udp_flow_unreplied_then_replied() {
    for lab in LABS {
        let e = engine();
        let d = accept(&e, &lab.udp(End::Client, 30), 0);
        assert_eq!(d.state, Some(ConnState::Unreplied));
        let d = accept(&e, &lab.udp(End::Server, 60), 1);
        assert_eq!(d.state, Some(ConnState::Replied));
        // Replied flows live 120 s, unreplied 30 s.
        assert_eq!(e.on_timer(Timestamp::from_secs(100)).expired, 0);
        assert_eq!(e.on_timer(Timestamp::from_secs(122)).expired, 1);
    }
}

#[test]
fn unreplied_udp_expires_quickly() {
    let e = engine();
    accept(&e, &LABS[0].udp(End::Client, 30), 0);
    assert_eq!(e.on_timer(Timestamp::from_secs(31)).expired, 1);
}

#[test]
fn icmp_echo_and_unexpected_reply() {
    for lab in LABS {
        let e = engine();
        dropped(
            &e,
            &lab.echo(End::Server, false),
            0,
            DropReason::IcmpUnexpectedReply,
        );
        accept(&e, &lab.echo(End::Client, true), 0);
        let d = accept(&e, &lab.echo(End::Server, false), 0);
        assert_eq!(d.state, Some(ConnState::Replied));
    }
}

#[test]
fn icmp_errors_must_relate_to_a_tracked_flow() {
    for lab in LABS {
        let e = engine();
        let probe = lab.udp(End::Client, 10);
        dropped(&e, &lab.unreachable(&probe), 0, DropReason::IcmpUnrelated);
        accept(&e, &probe, 0);
        accept(&e, &lab.unreachable(&probe), 0);
        assert_eq!(e.stats().related, 1);
        // For a TCP connection too.
        let syn = lab.tcp(End::Client, SYN, 100, 0, 0);
        accept(&e, &syn, 0);
        accept(&e, &lab.unreachable(&syn), 0);
    }
}

#[test]
fn malformed_packets_are_counted_drops() {
    let e = engine();
    dropped(&e, &[], 0, DropReason::MalformedIp);
    dropped(&e, &[0x45, 0, 0], 0, DropReason::MalformedIp);
    let mut syn = LABS[0].tcp(End::Client, SYN, 1, 0, 0);
    syn.truncate(30);
    dropped(&e, &syn, 0, DropReason::MalformedTcp);
    assert_eq!(e.stats().packets, 3);
}

#[test]
fn other_protocols_are_tracked_per_address_pair() {
    let e = engine();
    let gre = |from: End| {
        let (s, d) = match from {
            End::Client => (C4, S4),
            End::Server => (S4, C4),
        };
        let mut out = Vec::new();
        PacketBuilder::ipv4(s, d, 64)
            .write(&mut out, IpNumber::GRE, &[0u8; 24])
            .expect("write");
        out
    };
    let d = accept(&e, &gre(End::Client), 0);
    assert!(opened(&d));
    let d = accept(&e, &gre(End::Server), 0);
    assert_eq!(d.state, Some(ConnState::Replied));
    assert_eq!(e.entries(), 1);
}

#[test]
fn full_table_evicts_unestablished_then_refuses() {
    let config = EngineConfig {
        limits: Limits {
            max_entries: 2,
            per_source: 100,
            early_drop_scan: 16,
        },
        ..Default::default()
    };
    let e = Engine::new(config);
    let lab = LABS[0];
    // One established connection (never evicted) and one half-open one.
    accept(&e, &lab.tcp(End::Client, SYN, 100, 0, 0), 0);
    accept(&e, &lab.tcp(End::Server, SYN | ACK, 900, 101, 0), 0);
    accept(&e, &lab.tcp(End::Client, ACK, 101, 901, 0), 0);
    accept(&e, &lab.udp(End::Client, 1), 0);
    // A third flow evicts the unreplied UDP flow.
    let echo = lab.echo(End::Client, true);
    accept(&e, &echo, 1);
    assert_eq!(e.stats().early_drops, 1);
    assert_eq!(e.entries(), 2);
    // Make the echo flow assured too: nothing left to evict.
    accept(&e, &lab.echo(End::Server, false), 1);
    dropped(&e, &lab.udp(End::Client, 1), 2, DropReason::TableFull);
}

#[test]
fn per_source_limit_ignores_time_wait() {
    let config = EngineConfig {
        limits: Limits {
            max_entries: 1000,
            per_source: 1,
            early_drop_scan: 16,
        },
        ..Default::default()
    };
    let e = Engine::new(config);
    let lab = LABS[0];
    accept(&e, &lab.tcp(End::Client, SYN, 100, 0, 0), 0);
    dropped(&e, &lab.udp(End::Client, 1), 0, DropReason::SourceLimit);
    // Close the TCP connection: TIME_WAIT does not count, so the UDP flow fits.
    accept(&e, &lab.tcp(End::Server, SYN | ACK, 900, 101, 0), 0);
    accept(&e, &lab.tcp(End::Client, ACK, 101, 901, 0), 0);
    accept(&e, &lab.tcp(End::Client, FIN | ACK, 101, 901, 0), 0);
    accept(&e, &lab.tcp(End::Server, FIN | ACK, 901, 102, 0), 0);
    accept(&e, &lab.tcp(End::Client, ACK, 102, 902, 0), 0);
    accept(&e, &lab.udp(End::Client, 1), 0);
}

#[test]
fn pickup_adopts_mid_stream_flows_only_while_on() {
    let lab = LABS[0];
    let e = engine();
    let mid = lab.tcp(End::Client, ACK | PSH, 5000, 9000, 100);
    dropped(&e, &mid, 0, DropReason::NoConnection);
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    let d = accept(&e, &mid, 1);
    assert!(opened(&d));
    accept(&e, &lab.tcp(End::Server, ACK | PSH, 9000, 5100, 500), 1);
    accept(&e, &lab.tcp(End::Client, ACK, 5100, 9500, 0), 2);
    // After the grace period, unknown flows are no longer adopted; known ones continue.
    let other = lab.tcp(End::Server, ACK, 1, 1, 0);
    let mut other = other;
    other[20] = 0x1f; // another source port
    dropped(&e, &other, 61, DropReason::NoConnection);
    accept(&e, &lab.tcp(End::Client, ACK | PSH, 5100, 9500, 10), 62);
}

#[test]
fn picked_up_flow_is_capped_until_the_reply() {
    let lab = LABS[0];
    let e = engine();
    e.set_pickup_until(Some(Timestamp::from_secs(60)));
    accept(&e, &lab.tcp(End::Client, ACK, 5000, 9000, 0), 0);
    // Pickup timeout (60 s) applies, not the 5 days of ESTABLISHED.
    assert_eq!(e.on_timer(Timestamp::from_secs(61)).expired, 1);
}

#[test]
fn fragments_pass_untracked() {
    let e = engine();
    let mut pkt = LABS[0].udp(End::Client, 100);
    pkt[6] = 0;
    pkt[7] = 4; // offset 32 bytes
    let d = accept(&e, &pkt, 0);
    assert_eq!(d.state, None);
    assert_eq!(e.stats().fragments, 1);
}

#[test]
fn connections_listing_is_oriented_by_originator() {
    let lab = LABS[0];
    let e = established(lab);
    let conns = e.connections(Timestamp::from_secs(1), |_| true);
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!((c.src, c.sport, c.dport), (IpAddr::from(C4), 40000, 80));
    assert_eq!(c.state, "ESTABLISHED");
    assert!(c.assured);
    let states = e.state_counts(Timestamp::from_secs(1));
    assert_eq!(states, vec![("ESTABLISHED".to_string(), 1)]);
}

#[test]
fn drop_reason_names_round_trip() {
    for r in DropReason::ALL {
        assert_eq!(r.name().parse::<DropReason>(), Ok(*r));
    }
}

#[test]
fn engine_is_shared_by_threads() {
    let e = std::sync::Arc::new(engine());
    let lab = LABS[0];
    let handles: Vec<_> = (0..4u16)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    let mut syn = lab.tcp(End::Client, SYN, 1, 0, 0);
                    let port = 1000 + t * 1000 + i;
                    syn[20..22].copy_from_slice(&port.to_be_bytes());
                    assert!(e
                        .process(&syn, &PacketMeta::default(), Timestamp::ZERO)
                        .accepted());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    assert_eq!(e.entries(), 800);
}

fn sends_rst(d: &Decision) -> bool {
    matches!(d.action, Some(Action::SendRst(_)))
}

#[test]
fn probes_of_no_connection_are_answered_with_rst() {
    for lab in LABS {
        let e = engine();
        let d = run(&e, &lab.tcp(End::Client, ACK, 1, 77, 0), 0);
        assert_eq!(d.reason(), Some(DropReason::NoConnection));
        let Some(Action::SendRst(p)) = &d.action else {
            panic!("no RST asked for: {:?}", d.action)
        };
        // From the probed port back to the prober, with the probe's ACK as its sequence number.
        assert_eq!((p.seq, p.ack, p.sport, p.dport), (Seq(77), None, 80, 40000));
        // Stealth shapes too, but never a RST.
        assert!(sends_rst(&run(&e, &lab.tcp(End::Client, 0, 1, 0, 0), 0)));
        assert!(sends_rst(&run(
            &e,
            &lab.tcp(End::Client, SYN | FIN, 1, 0, 0),
            0
        )));
        assert!(!sends_rst(&run(&e, &lab.tcp(End::Client, RST, 1, 0, 0), 0)));
        assert_eq!(e.stats().answered, 3);
    }
}

#[test]
fn invalid_flags_inside_a_connection_are_not_answered() {
    let lab = LABS[0];
    let e = established(lab);
    let d = run(&e, &lab.tcp(End::Client, SYN | FIN, 101, 0, 0), 1);
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
        .filter(|_| sends_rst(&run(&e, &LABS[0].tcp(End::Client, ACK, 1, 1, 0), 0)))
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
    let d = run(&e, &LABS[0].tcp(End::Client, FIN | ACK, 1, 1, 0), 0);
    assert_eq!(d.reason(), Some(DropReason::NoConnection));
    assert!(d.action.is_none() && d.events.is_empty());
}

#[test]
fn the_rule_files_probes_line_wins() {
    let e = engine();
    let loaded = crate::rules::load_str("t.rules", "policy allow\nprobes drop\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    assert!(!sends_rst(&run(
        &e,
        &LABS[0].tcp(End::Client, ACK, 1, 1, 0),
        0
    )));
}

#[test]
fn rejected_connections_are_answered() {
    for lab in LABS {
        let e = engine();
        let rules = "policy reject\nallow icmp\nallow icmpv6\n";
        let loaded = crate::rules::load_str("t.rules", rules).expect("rules");
        e.set_policy(Arc::new(loaded.policy));
        let d = run(&e, &lab.tcp(End::Client, SYN, 100, 0, 0), 0);
        assert_eq!(d.reason(), Some(DropReason::PolicyReject));
        assert!(sends_rst(&d));
        let d = run(&e, &lab.udp(End::Client, 10), 0);
        assert_eq!(d.reason(), Some(DropReason::PolicyReject));
        assert!(matches!(d.action, Some(Action::SendUnreachable(_))));
        assert_eq!(e.entries(), 0);
    }
}

#[test]
fn recheck_revokes_connections_the_new_rules_refuse() {
    let lab = LABS[0];
    let e = established(lab);
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
            Action::SendRst(p) => {
                crate::respond::rst_packet(p, &crate::respond::ReplyOptions { ttl: 64, ip_id: 1 })
            }
            Action::SendUnreachable(_) => None,
        })
        .collect();
    assert_eq!(rsts.len(), 2);
    let to_client = Packet::decode(&rsts[0], &PacketMeta::default()).expect("rst");
    assert_eq!(to_client.dst, IpAddr::from(C4));
    assert_eq!(to_client.tcp().map(|t| t.seq), Some(Seq(901)));
    let to_server = Packet::decode(&rsts[1], &PacketMeta::default()).expect("rst");
    assert_eq!(to_server.dst, IpAddr::from(S4));
    assert_eq!(to_server.tcp().map(|t| t.seq), Some(Seq(101)));
    dropped(
        &e,
        &lab.tcp(End::Client, ACK | PSH, 101, 901, 10),
        2,
        DropReason::Revoked,
    );
}

/// The scan alerts among `events`, as their syslog lines.
fn scan_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Scan(a) => Some(a.body()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fin_scan_raises_one_alert_and_blocks_when_asked() {
    let scan: crate::scan::ScanConfig =
        serde_json::from_str(r#"{"block": true, "block_level": 1}"#).expect("scan config");
    let e = Engine::new(EngineConfig {
        scan: Some(scan),
        ..Default::default()
    });
    let mut events = Vec::new();
    for port in 1..=40u16 {
        let mut fin = LABS[0].tcp(End::Client, FIN, 1, 0, 0);
        fin[22..24].copy_from_slice(&port.to_be_bytes());
        let d = run(&e, &fin, 1);
        // Dropped as a FIN probe until the block lands, then as blocked.
        assert!(matches!(
            d.reason(),
            Some(DropReason::TcpFinNoAck | DropReason::Blocked)
        ));
        events.extend(d.events);
    }
    events.extend(e.on_timer(Timestamp::from_secs(2)).events);
    let scans = scan_lines(&events);
    assert!(!scans.is_empty(), "{events:?}");
    assert!(scans[0].starts_with("SCAN "), "{}", scans[0]);
    assert!(scans[0].contains("nmap=-sF"), "{}", scans[0]);
    assert!(scans[0].contains("SRC=198.51.100.2"), "{}", scans[0]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Block(crate::block::BlockEvent::Block { .. }))),
        "{events:?}"
    );
    // The scanner is blocked now, even for a SYN the policy would allow.
    dropped(
        &e,
        &LABS[0].tcp(End::Client, SYN, 1, 0, 0),
        3,
        DropReason::Blocked,
    );
    assert_eq!(e.blocks(Timestamp::from_secs(3)).len(), 1);
}

#[test]
fn normal_connections_raise_no_alert() {
    let scan: crate::scan::ScanConfig = serde_json::from_str("{}").expect("scan config");
    let e = Engine::new(EngineConfig {
        scan: Some(scan),
        ..Default::default()
    });
    let lab = LABS[0];
    let mut lines = Vec::new();
    for i in 0..200u16 {
        let port = (30000 + i).to_be_bytes();
        let mut pkts = [
            (lab.tcp(End::Client, SYN, 100, 0, 0), true),
            (lab.tcp(End::Server, SYN | ACK, 900, 101, 0), false),
            (lab.tcp(End::Client, ACK, 101, 901, 0), true),
            (lab.tcp(End::Client, FIN | ACK, 101, 901, 0), true),
            (lab.tcp(End::Server, FIN | ACK, 901, 102, 0), false),
            (lab.tcp(End::Client, ACK, 102, 902, 0), true),
        ];
        for (p, from_client) in pkts.iter_mut() {
            let at = if *from_client { 20 } else { 22 };
            p[at..at + 2].copy_from_slice(&port);
            let d = accept(&e, p, u64::from(i) / 10);
            lines.extend(d.events);
        }
    }
    lines.extend(e.on_timer(Timestamp::from_secs(60)).events);
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn rule_log_lines_are_rate_limited() {
    let e = engine();
    let loaded = crate::rules::load_str("t.rules", "policy drop\ndrop udp log\n").expect("rules");
    e.set_policy(Arc::new(loaded.policy));
    let mut logged = 0;
    for port in 0..2000u16 {
        let mut p = LABS[0].udp(End::Client, 1);
        p[20..22].copy_from_slice(&port.to_be_bytes());
        let d = run(&e, &p, 0);
        logged += d
            .events
            .iter()
            .filter(|e| matches!(e, Event::RuleMatch(_)))
            .count();
    }
    assert_eq!(logged, 500);
    assert_eq!(e.stats().logs_suppressed, 1500);
}
