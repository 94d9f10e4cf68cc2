//! ICMP and ICMPv6: an echo request opens a flow keyed by its identifier (tracked like a
//! datagram flow, the reply being its other direction); an error is *related* to a tracked
//! flow when the packet it quotes belongs to one and the error travels back towards that
//! packet's sender; any other message opens nothing (the rules judge it alone).

use super::{datagram, flags, Addr, Milestone, Side, Track, Tracked};
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

/// An ICMP error: related when the quoted packet belongs to a tracked flow and the error goes
/// back to its sender. An unreachable is reported as a milestone of the quoted flow.
fn related<A: Addr>(side: &Side<'_, A>, proto: u8, icmp: &IcmpHeader, e: &Embedded) -> Tracked {
    let unrelated = Tracked::drop(DropReason::IcmpUnrelated, None);
    let (Some(esrc), Some(edst)) = (A::from_ip(e.src), A::from_ip(e.dst)) else {
        return unrelated;
    };
    if esrc != side.dst {
        return unrelated;
    }
    let ports = match e.proto {
        proto::ICMP | proto::ICMPV6 => (e.sport, e.sport),
        _ => (e.sport, e.dport),
    };
    let (key, _) = super::Key::new(e.proto, esrc, ports.0, edst, ports.1);
    match side.peek(&key) {
        Some(conn) if !conn.has(flags::REVOKED) => {
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
