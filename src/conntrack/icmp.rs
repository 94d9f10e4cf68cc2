//! ICMP and ICMPv6: an echo request opens a flow keyed by its identifier (tracked like a
//! datagram flow, the reply being its other direction); an error is *related* to a tracked
//! flow when the packet it quotes could have been sent in that flow and the error travels back
//! towards that packet's sender; any other message opens nothing (the rules judge it alone).
//!
//! "Could have been sent" is checked as pf does (`pf_icmp_state_lookup` and the sequence check
//! of `pf_test_state_icmp`), since anyone who can guess a tuple can forge an error about it:
//! - a quoted TCP segment must start inside its sender's window: at most the highest sequence
//!   number the receiver allowed, at least the sender's end minus the largest window the
//!   receiver advertised (a segment still in flight, or being retransmitted);
//! - a quoted datagram or echo must come from a side of the flow that has sent something (the
//!   reply side only once the flow was replied), and a quoted echo must be a request from the
//!   originator or a reply from the responder;
//! - an error about an ICMP error is never related (RFC 1122 3.2.2: no error is sent about
//!   one), nor one quoting a non-first fragment (what follows its IP header is no transport
//!   header: the ports would be guessed).

use super::{datagram, flags, Addr, Conn, Dir, Milestone, ProtoState, Side, Track, Tracked};
use crate::packet::{Embedded, IcmpHeader, IcmpKind};
use crate::proto;
use crate::verdict::{DropReason, Flow, Pass};

/// Tracks one ICMP (`proto` 1) or ICMPv6 (58) message.
pub(super) fn track<A: Addr>(side: &Side<'_, A>, proto: u8, icmp: &IcmpHeader) -> Track {
    let t = side.ct.timeouts.icmp;
    match icmp.kind {
        IcmpKind::EchoRequest { id } => datagram::track(side, proto, (id, id), true, (t, t)),
        IcmpKind::EchoReply { id } => datagram::track(side, proto, (id, id), false, (t, t)),
        IcmpKind::Error(e) => Track::Judged(related(side, proto, icmp, &e)),
        IcmpKind::Other => Track::Stateless,
    }
}

/// An ICMP error: related when the quoted packet could belong to a tracked flow and the error
/// goes back to its sender. An unreachable is reported as a milestone of the quoted flow.
fn related<A: Addr>(side: &Side<'_, A>, proto: u8, icmp: &IcmpHeader, e: &Embedded) -> Tracked {
    let unrelated = Tracked::drop(DropReason::IcmpUnrelated, None);
    let (Some(esrc), Some(edst)) = (A::from_ip(e.src), A::from_ip(e.dst)) else {
        return unrelated;
    };
    if esrc != side.dst || e.later_fragment {
        return unrelated;
    }
    let ports = match e.proto {
        proto::ICMP | proto::ICMPV6 => (e.sport, e.sport),
        _ => (e.sport, e.dport),
    };
    let (key, from_lo) = super::Key::new(e.proto, esrc, ports.0, edst, ports.1);
    match side.peek(&key) {
        Some(conn) if !conn.has(flags::REVOKED) && could_send(&conn, conn.dir(from_lo), e) => {
            let unreachable = matches!(
                (proto, icmp.icmp_type),
                (proto::ICMP, 3) | (proto::ICMPV6, 1)
            );
            let quoted = Flow {
                proto: e.proto,
                src: e.src,
                dst: e.dst,
                sport: e.sport,
                dport: e.dport,
            };
            Tracked {
                milestone: unreachable.then_some(Milestone::Unreachable(quoted)),
                ..Tracked::pass(Pass::Related, Some(conn.state()))
            }
        }
        _ => unrelated,
    }
}

/// Whether the quoted packet `e`, sent in direction `dir` of `conn`, is one the flow could
/// have carried.
fn could_send(conn: &Conn, dir: Dir, e: &Embedded) -> bool {
    let side_has_sent = dir == Dir::Original || conn.has(flags::SEEN_REPLY);
    match (&conn.proto, e.proto) {
        (ProtoState::Tcp(t), proto::TCP) => e.tcp_seq.is_some_and(|seq| t.may_have_sent(dir, seq)),
        (_, proto::ICMP | proto::ICMPV6) => {
            // Only echoes open flows; the request goes the way the flow was opened.
            let echo = matches!(e.icmp_type, Some(0 | 8 | 128 | 129));
            echo && e.echo_request == (dir == Dir::Original) && side_has_sent
        }
        (ProtoState::Datagram(_), _) => side_has_sent,
        // A TCP entry under a non-TCP key cannot happen; never relate it.
        (ProtoState::Tcp(_), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::conntrack::{Conntrack, Limits, Timeouts, Track};
    use crate::packet::{Packet, PacketMeta};
    use crate::testing::{icmp, Pair, Side, ACK, PSH, SYN};
    use crate::time::Timestamp;
    use crate::verdict::{DropReason, Pass, Verdict};

    fn track(ct: &Conntrack, bytes: &[u8]) -> Track {
        let pkt = Packet::decode(bytes, &PacketMeta::default()).expect("decodes");
        ct.track(&pkt, Timestamp::from_secs(1))
    }

    fn pass(ct: &Conntrack, bytes: &[u8]) {
        match track(ct, bytes) {
            Track::New(o) => {
                ct.open(o).expect("room");
            }
            Track::Judged(t) => assert!(t.verdict.is_accept(), "{t:?}"),
            other => panic!("{other:?}"),
        }
    }

    /// The verdict on an ICMP error sent to `to` quoting `quoted`, in both error kinds.
    fn error_verdicts(ct: &Conntrack, p: &Pair, to: IpAddr, quoted: &[u8]) -> Vec<Verdict> {
        let from = if to == p.client { p.server } else { p.client };
        let unreachable = icmp(from, to).port_unreachable(quoted).build();
        let late = icmp(from, to).time_exceeded(quoted).build();
        // Fragmentation needed / packet too big (IPv4 3/4, IPv6 2/0).
        let kind = if p.is_v6() { (2, 0) } else { (3, 4) };
        let too_big = icmp(from, to).kind(kind.0, kind.1).body(quoted).build();
        [unreachable, late, too_big]
            .iter()
            .map(|e| match track(ct, e) {
                Track::Judged(t) => t.verdict,
                other => panic!("an error is judged: {other:?}"),
            })
            .collect()
    }

    const RELATED: Verdict = Verdict::Accept(Pass::Related);
    const UNRELATED: Verdict = Verdict::Drop(DropReason::IcmpUnrelated);

    fn all(v: Verdict) -> Vec<Verdict> {
        vec![v; 3]
    }

    #[test]
    fn a_quoted_tcp_segment_must_be_inside_its_senders_window() {
        for p in Pair::BOTH {
            let ct = Conntrack::new(Timeouts::default(), Limits::default());
            let (c, s) = (Side::Client, Side::Server);
            let syn = p.tcp(c, SYN, 1000, 0).window(64_000).build();
            pass(&ct, &syn);
            // While only the SYN went out: the SYN may be quoted, nothing from the server.
            assert_eq!(error_verdicts(&ct, &p, p.client, &syn), all(RELATED));
            let early = p.tcp(s, ACK, 5001, 1001).payload(10).build();
            assert_eq!(error_verdicts(&ct, &p, p.server, &early), all(UNRELATED));
            pass(&ct, &p.tcp(s, SYN | ACK, 5000, 1001).window(32_000).build());
            pass(&ct, &p.tcp(c, ACK, 1001, 5001).window(64_000).build());
            let data = p.tcp(c, ACK | PSH, 1001, 5001).payload(100).build();
            pass(&ct, &data);
            assert_eq!(error_verdicts(&ct, &p, p.client, &data), all(RELATED));
            // A guessed tuple with a sequence number far from the window.
            for seq in [
                1001 + 10_000_000,
                1001u32.wrapping_sub(10_000_000),
                0x8000_0000,
            ] {
                let forged = p.tcp(c, ACK | PSH, seq, 5001).payload(100).build();
                assert_eq!(
                    error_verdicts(&ct, &p, p.client, &forged),
                    all(UNRELATED),
                    "{p:?} seq {seq}"
                );
            }
            // Just past the window the server allowed: not sent yet, not quotable.
            let beyond = p.tcp(c, ACK, 1001 + 100 + 32_001, 5001).build();
            assert_eq!(error_verdicts(&ct, &p, p.client, &beyond), all(UNRELATED));
            // The server's side, once it sent: same check with its own numbers.
            let reply = p.tcp(s, ACK | PSH, 5001, 1101).payload(50).build();
            pass(&ct, &reply);
            assert_eq!(error_verdicts(&ct, &p, p.server, &reply), all(RELATED));
            let forged = p.tcp(s, ACK | PSH, 5001 + 3_000_000, 1101).build();
            assert_eq!(error_verdicts(&ct, &p, p.server, &forged), all(UNRELATED));
        }
    }

    #[test]
    fn quoted_datagrams_and_echoes_must_fit_the_flow() {
        for p in Pair::BOTH {
            let ct = Conntrack::new(Timeouts::default(), Limits::default());
            let (c, s) = (Side::Client, Side::Server);
            let u = p.ports(5353, 53);
            let query = u.udp(c).payload(20).build();
            pass(&ct, &query);
            assert_eq!(error_verdicts(&ct, &u, u.client, &query), all(RELATED));
            // The server has sent nothing: an error about "its" datagram is forged.
            let answer = u.udp(s).payload(20).build();
            assert_eq!(error_verdicts(&ct, &u, u.server, &answer), all(UNRELATED));
            pass(&ct, &answer);
            assert_eq!(error_verdicts(&ct, &u, u.server, &answer), all(RELATED));

            // Echo: a request from the originator, a reply from the responder.
            let e = p.ports(777, 0);
            let request = e.echo(c, true).build();
            pass(&ct, &request);
            assert_eq!(error_verdicts(&ct, &e, e.client, &request), all(RELATED));
            let backwards = e.echo(c, false).build();
            assert_eq!(
                error_verdicts(&ct, &e, e.client, &backwards),
                all(UNRELATED)
            );
            let reply = e.echo(s, false).build();
            assert_eq!(error_verdicts(&ct, &e, e.server, &reply), all(UNRELATED));
            pass(&ct, &reply);
            assert_eq!(error_verdicts(&ct, &e, e.server, &reply), all(RELATED));

            // An error about an error, even one whose bytes look like the echo's identifier.
            let inner = icmp(p.server, p.client).port_unreachable(&query).build();
            assert_eq!(error_verdicts(&ct, &u, u.client, &inner), all(UNRELATED));
            // An echo flow with identifier 0 has the key an error's (portless) quote gets.
            let zero = p.ports(0, 0);
            let request0 = zero.echo(c, true).build();
            pass(&ct, &request0);
            let mut disguised = request0.clone();
            let at = if p.is_v6() { 40 } else { 20 };
            disguised[at] = if p.is_v6() { 1 } else { 3 };
            assert_eq!(
                error_verdicts(&ct, &zero, zero.client, &disguised),
                all(UNRELATED)
            );

            // A quoted non-first fragment: its "ports" are payload bytes.
            for offset in [1, 2, 185] {
                let later = u.udp(c).payload(20).fragment(offset, true).build();
                assert_eq!(
                    error_verdicts(&ct, &u, u.client, &later),
                    all(UNRELATED),
                    "{p:?} offset {offset}"
                );
            }
        }
    }
}
