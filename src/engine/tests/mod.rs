//! Engine scenarios: whole packets through [`Engine::process`], IPv4 and IPv6, built by the
//! shared packet factory ([`crate::testing`]). By topic: `tcp` (connections and their
//! lifetime), `datagrams` (UDP, ICMP, other protocols), `fragments` (datagrams seen
//! unreassembled), `limits` (a full table, the per-source limit), `pickup` (adopting flows
//! after a restart), `answers` (probes, rejects, rate limits, recheck), `events` (scan alerts,
//! blocks, rule log lines), `drops` (drop lines and their limits).

use super::*;
use crate::conntrack::TcpState;
use crate::testing::{icmp, Pair, Side};

mod answers;
mod datagrams;
mod drops;
mod events;
mod fragments;
mod limits;
mod offload;
mod operator;
mod pickup;
mod tcp;

const C: Side = Side::Client;
const S: Side = Side::Server;
const LABS: [Pair; 2] = Pair::BOTH;

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

/// A UDP datagram of `len` bytes between the lab's ends, ports 5353 and 53.
fn udp(p: Pair, from: Side, len: usize) -> Vec<u8> {
    p.ports(5353, 53).udp(from).payload(len).build()
}

/// An echo request (from the client) or reply (from the server), identifier 7.
fn echo(p: Pair, from: Side, request: bool) -> Vec<u8> {
    let (src, dst, _, _) = p.from(from);
    let m = icmp(src, dst);
    let m = if request {
        m.echo_request(7, 1)
    } else {
        m.echo_reply(7, 1)
    };
    m.body(b"ping").build()
}

/// The server's port unreachable quoting `original` (a client packet).
fn unreachable(p: Pair, original: &[u8]) -> Vec<u8> {
    icmp(p.server, p.client).port_unreachable(original).build()
}

/// Full handshake; returns the engine.
fn established(p: Pair) -> Engine {
    let e = engine();
    let d = accept(&e, &p.tcp(C, SYN, 100, 0).build(), 0);
    assert!(opened(&d));
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynSent)));
    let d = accept(&e, &p.tcp(S, SYN | ACK, 900, 101).build(), 0);
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::SynRecv)));
    let d = accept(&e, &p.tcp(C, ACK, 101, 901).build(), 0);
    assert_eq!(d.state, Some(ConnState::Tcp(TcpState::Established)));
    e
}

fn sends_rst(d: &Decision) -> bool {
    matches!(d.action, Some(Action::SendRst(_)))
}

use crate::testing::{ACK, FIN, PSH, RST, SYN};
