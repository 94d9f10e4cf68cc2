//! The kernel conntrack table as a source of flows to adopt ([`crate::adopt`]): a dump of the
//! entries that carry the ADMITTED bit (filtered by the kernel) and a watch of the entries as
//! they come, change and go (conntrackd's injections on a standby), over [`super::ctnetlink`].

use std::net::IpAddr;

use crate::adopt::{KernelFlow, KernelTcp};
use crate::conntrack::TcpState;
use crate::io::ctnetlink::{
    self, CtError, CtEvents, Ctnetlink, Entry, Event, EventGroups, MarkFilter, Status, L4,
    TCP_FLAG_SACK_PERM, TCP_FLAG_WINDOW_SCALE,
};
use crate::marks::ConnMarks;

/// Why an entry of the kernel table is not adoptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unadoptable {
    /// It does not carry the ADMITTED bit.
    NotAdmitted,
    /// Being removed from the table.
    Dying,
    /// A TCP handshake in progress: the endpoints' retransmissions open it again (windows and
    /// initial sequence numbers cannot be learned from the middle of a handshake).
    Handshake,
    /// A TCP state statewall does not know, or none.
    UnknownState,
    /// The two tuples are of different families (cannot happen with conntrack; never trusted).
    Malformed,
}

/// The flow of a kernel entry, as statewall's hook sees it; the entry must carry the ADMITTED
/// bit of `marks` (dumps filter on it, events do not).
pub fn flow_of(entry: &Entry, marks: ConnMarks) -> Result<KernelFlow, Unadoptable> {
    if !entry.mark.is_some_and(|m| marks.is_admitted(m)) {
        return Err(Unadoptable::NotAdmitted);
    }
    if entry.status.has(Status::DYING) {
        return Err(Unadoptable::Dying);
    }
    let (proto, orig, resp) = endpoints_of(entry)?;
    let tcp = match (proto, &entry.tcp) {
        (6, Some(info)) => {
            let state = match info.state {
                ctnetlink::TcpState::Established => TcpState::Established,
                ctnetlink::TcpState::FinWait => TcpState::FinWait,
                ctnetlink::TcpState::CloseWait => TcpState::CloseWait,
                ctnetlink::TcpState::LastAck => TcpState::LastAck,
                ctnetlink::TcpState::TimeWait => TcpState::TimeWait,
                ctnetlink::TcpState::Close => TcpState::Close,
                ctnetlink::TcpState::SynSent
                | ctnetlink::TcpState::SynSent2
                | ctnetlink::TcpState::SynRecv => return Err(Unadoptable::Handshake),
                ctnetlink::TcpState::None | ctnetlink::TcpState::Unknown(_) => {
                    return Err(Unadoptable::UnknownState)
                }
            };
            let flags = [
                info.flags_original.unwrap_or(0),
                info.flags_reply.unwrap_or(0),
            ];
            let window_scale = flags.map(|f| f & TCP_FLAG_WINDOW_SCALE != 0);
            // The kernel keeps the shifts at 0 unless both sides offered scaling; never trust
            // more than RFC 7323 allows.
            let scale = if window_scale[0] && window_scale[1] {
                [
                    info.wscale_original.unwrap_or(0).min(14),
                    info.wscale_reply.unwrap_or(0).min(14),
                ]
            } else {
                [0, 0]
            };
            Some(KernelTcp {
                state,
                scale,
                window_scale,
                sack_perm: flags.map(|f| f & TCP_FLAG_SACK_PERM != 0),
            })
        }
        (6, None) => return Err(Unadoptable::UnknownState),
        _ => None,
    };
    Ok(KernelFlow {
        proto,
        orig,
        resp,
        tcp,
        seen_reply: entry.status.has(Status::SEEN_REPLY),
        assured: entry.status.has(Status::ASSURED),
        timeout: entry.timeout,
    })
}

/// An address and a port (or echo identifier).
type Endpoint = (IpAddr, u16);

/// An entry's protocol, originator and responder as statewall's hook sees them: after DNAT
/// and before SNAT, the originator is the original source, the responder the replies' source.
fn endpoints_of(entry: &Entry) -> Result<(u8, Endpoint, Endpoint), Unadoptable> {
    let (o, r) = (&entry.original, &entry.reply);
    if o.src.is_ipv6() != r.src.is_ipv6() || o.src.is_ipv6() != o.dst.is_ipv6() {
        return Err(Unadoptable::Malformed);
    }
    let (proto, orig_port, resp_port) = match (o.l4, r.l4) {
        (L4::Tcp { src_port: os, .. }, L4::Tcp { src_port: rs, .. }) => (6, os, rs),
        (L4::Udp { src_port: os, .. }, L4::Udp { src_port: rs, .. }) => (17, os, rs),
        (L4::Icmp { id, .. }, L4::Icmp { .. }) => (1, id, id),
        (L4::Icmpv6 { id, .. }, L4::Icmpv6 { .. }) => (58, id, id),
        (L4::Other { protocol }, L4::Other { protocol: p2 }) if protocol == p2 => (protocol, 0, 0),
        _ => return Err(Unadoptable::Malformed),
    };
    Ok((proto, (o.src, orig_port), (r.src, resp_port)))
}

/// The kernel-side filter of the entries with the ADMITTED bit.
pub fn admitted_filter(marks: ConnMarks) -> MarkFilter {
    MarkFilter {
        value: marks.admitted(),
        mask: marks.admitted(),
    }
}

/// Dumps the kernel table's entries with the ADMITTED bit, calling `each` for every adoptable
/// flow; returns how many entries were not adoptable. A dump interrupted by a resize of the
/// table is repeated (adoption is idempotent), three times at most.
pub fn dump_admitted(marks: ConnMarks, mut each: impl FnMut(KernelFlow)) -> Result<u64, CtError> {
    let mut ct = Ctnetlink::open()?;
    let mut attempts = 0;
    loop {
        let mut skipped = 0;
        let r = ct.dump_each(Some(admitted_filter(marks)), |e| match flow_of(&e, marks) {
            Ok(flow) => each(flow),
            Err(_) => skipped += 1,
        });
        match r {
            Ok(_) => return Ok(skipped),
            Err(CtError::DumpInterrupted) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A change of the kernel table that matters for adoption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChange {
    /// An entry with the ADMITTED bit appeared or changed.
    Admitted(KernelFlow),
    /// An entry left the table (or lost the bit): an adopted flow no packet has used since
    /// goes with it.
    Gone(KernelFlow),
}

/// A watch of the kernel table's new, changed and destroyed entries.
pub struct KernelWatch {
    events: CtEvents,
    marks: ConnMarks,
    buf: Vec<Event>,
}

/// The receive buffer asked for the event socket: bursts of a bulk resync are large.
const EVENT_BUFFER: usize = 8 << 20;

impl KernelWatch {
    /// Subscribes to the table's events; `recv` waits at most `timeout` for one.
    pub fn open(marks: ConnMarks, timeout: std::time::Duration) -> Result<KernelWatch, CtError> {
        let events = CtEvents::open(EventGroups {
            new: true,
            update: true,
            destroy: true,
        })?;
        events.set_timeout(Some(timeout))?;
        if let Err(e) = events.set_recv_buffer_size(EVENT_BUFFER) {
            tracing::debug!(error = %e, "conntrack event buffer size unchanged");
        }
        Ok(KernelWatch {
            events,
            marks,
            buf: Vec::new(),
        })
    }

    /// Receives the changes of one datagram into `out` (nothing when the timeout expired).
    /// [`CtError::EventsLost`] means the socket overflowed: dump the table again.
    pub fn recv(&mut self, out: &mut Vec<KernelChange>) -> Result<(), CtError> {
        self.buf.clear();
        self.events.recv(&mut self.buf)?;
        for ev in self.buf.drain(..) {
            out.extend(change_of(&ev, self.marks));
        }
        Ok(())
    }
}

/// What an event means for adoption (`None`: nothing).
pub fn change_of(ev: &Event, marks: ConnMarks) -> Option<KernelChange> {
    match ev {
        Event::New(e) | Event::Update(e) => match flow_of(e, marks) {
            Ok(flow) => Some(KernelChange::Admitted(flow)),
            Err(_) => None,
        },
        // Destroy events carry the tuples and status but not always the mark: the engine only
        // removes adopted entries that no packet has used.
        Event::Destroy(e) => {
            let (proto, orig, resp) = endpoints_of(e).ok()?;
            Some(KernelChange::Gone(KernelFlow {
                proto,
                orig,
                resp,
                tcp: None,
                seen_reply: e.status.has(Status::SEEN_REPLY),
                assured: e.status.has(Status::ASSURED),
                timeout: None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::ctnetlink::{TcpInfo, Tuple};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn tcp_entry(state: ctnetlink::TcpState, mark: u32) -> Entry {
        Entry {
            original: Tuple {
                src: ip("198.51.100.2"),
                dst: ip("203.0.113.2"),
                l4: L4::Tcp {
                    src_port: 40000,
                    dst_port: 80,
                },
            },
            reply: Tuple {
                src: ip("203.0.113.2"),
                dst: ip("198.51.100.2"),
                l4: L4::Tcp {
                    src_port: 80,
                    dst_port: 40000,
                },
            },
            id: Some(7),
            mark: Some(mark),
            status: Status(Status::SEEN_REPLY | Status::ASSURED | Status::CONFIRMED),
            timeout: Some(431_999),
            tcp: Some(TcpInfo {
                state,
                wscale_original: Some(7),
                wscale_reply: Some(9),
                flags_original: Some(TCP_FLAG_WINDOW_SCALE | TCP_FLAG_SACK_PERM),
                flags_reply: Some(TCP_FLAG_WINDOW_SCALE),
            }),
            zone: None,
        }
    }

    #[test]
    fn an_established_admitted_entry_is_a_flow_with_its_window_scales() {
        let m = ConnMarks::default();
        let f = flow_of(&tcp_entry(ctnetlink::TcpState::Established, 0x1000_0001), m)
            .expect("adoptable");
        assert_eq!(f.proto, 6);
        assert_eq!(f.orig, (ip("198.51.100.2"), 40000));
        assert_eq!(f.resp, (ip("203.0.113.2"), 80));
        assert!(f.seen_reply && f.assured);
        assert_eq!(f.timeout, Some(431_999));
        let t = f.tcp.expect("tcp");
        assert_eq!(t.state, TcpState::Established);
        assert_eq!(t.scale, [7, 9]);
        assert_eq!(t.window_scale, [true, true]);
        assert_eq!(t.sack_perm, [true, false]);
    }

    #[test]
    fn window_scales_count_only_when_both_sides_offered_them() {
        let mut e = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        if let Some(t) = &mut e.tcp {
            t.flags_reply = Some(0);
            t.wscale_original = Some(200);
        }
        let t = flow_of(&e, ConnMarks::default())
            .expect("adoptable")
            .tcp
            .expect("tcp");
        assert_eq!(t.scale, [0, 0]);
        if let Some(t) = &mut e.tcp {
            t.flags_reply = Some(TCP_FLAG_WINDOW_SCALE);
        }
        let t = flow_of(&e, ConnMarks::default())
            .expect("adoptable")
            .tcp
            .expect("tcp");
        assert_eq!(t.scale, [14, 9], "capped at RFC 7323's 14");
    }

    #[test]
    fn only_admitted_settled_entries_are_adoptable() {
        let m = ConnMarks::default();
        let cases = [
            (
                ctnetlink::TcpState::Established,
                0x2000_0000,
                Unadoptable::NotAdmitted,
            ),
            (
                ctnetlink::TcpState::SynSent,
                0x1000_0000,
                Unadoptable::Handshake,
            ),
            (
                ctnetlink::TcpState::SynRecv,
                0x1000_0000,
                Unadoptable::Handshake,
            ),
            (
                ctnetlink::TcpState::None,
                0x1000_0000,
                Unadoptable::UnknownState,
            ),
            (
                ctnetlink::TcpState::Unknown(42),
                0x1000_0000,
                Unadoptable::UnknownState,
            ),
        ];
        for (state, mark, why) in cases {
            assert_eq!(flow_of(&tcp_entry(state, mark), m), Err(why), "{state}");
        }
        let mut e = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        e.mark = None;
        assert_eq!(flow_of(&e, m), Err(Unadoptable::NotAdmitted));
        e.mark = Some(0x1000_0000);
        e.status = Status(Status::DYING);
        assert_eq!(flow_of(&e, m), Err(Unadoptable::Dying));
        for s in [
            ctnetlink::TcpState::FinWait,
            ctnetlink::TcpState::CloseWait,
            ctnetlink::TcpState::LastAck,
            ctnetlink::TcpState::TimeWait,
            ctnetlink::TcpState::Close,
        ] {
            assert!(flow_of(&tcp_entry(s, 0x1000_0000), m).is_ok(), "{s}");
        }
    }

    #[test]
    fn under_nat_the_responder_is_the_reply_source() {
        // DNAT 203.0.113.1:8080 -> 203.0.113.2:80 and SNAT of the client to 203.0.113.1:61000:
        // the hook sees 198.51.100.2:40000 <-> 203.0.113.2:80.
        let mut e = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        e.original.dst = ip("203.0.113.1");
        e.original.l4 = L4::Tcp {
            src_port: 40000,
            dst_port: 8080,
        };
        e.reply.dst = ip("203.0.113.1");
        e.reply.l4 = L4::Tcp {
            src_port: 80,
            dst_port: 61000,
        };
        let f = flow_of(&e, ConnMarks::default()).expect("adoptable");
        assert_eq!(f.orig, (ip("198.51.100.2"), 40000));
        assert_eq!(f.resp, (ip("203.0.113.2"), 80));
    }

    #[test]
    fn udp_icmp_and_other_protocols() {
        let m = ConnMarks::default();
        let mut e = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        e.tcp = None;
        e.original.l4 = L4::Udp {
            src_port: 5000,
            dst_port: 53,
        };
        e.reply.l4 = L4::Udp {
            src_port: 53,
            dst_port: 5000,
        };
        let f = flow_of(&e, m).expect("udp");
        assert_eq!((f.proto, f.orig.1, f.resp.1, f.tcp), (17, 5000, 53, None));
        e.original.l4 = L4::Icmp {
            id: 99,
            icmp_type: 8,
            code: 0,
        };
        e.reply.l4 = L4::Icmp {
            id: 99,
            icmp_type: 0,
            code: 0,
        };
        let f = flow_of(&e, m).expect("icmp");
        assert_eq!((f.proto, f.orig.1, f.resp.1), (1, 99, 99));
        e.original.l4 = L4::Other { protocol: 47 };
        e.reply.l4 = L4::Other { protocol: 47 };
        assert_eq!(flow_of(&e, m).expect("gre").proto, 47);
        e.reply.l4 = L4::Udp {
            src_port: 1,
            dst_port: 2,
        };
        assert_eq!(flow_of(&e, m), Err(Unadoptable::Malformed));
        let mut tcp_without_info = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        tcp_without_info.tcp = None;
        assert_eq!(
            flow_of(&tcp_without_info, m),
            Err(Unadoptable::UnknownState)
        );
    }

    #[test]
    fn events_admit_changed_entries_and_report_destroyed_ones() {
        let m = ConnMarks::default();
        let est = tcp_entry(ctnetlink::TcpState::Established, 0x1000_0000);
        assert!(matches!(
            change_of(&Event::New(est.clone()), m),
            Some(KernelChange::Admitted(_))
        ));
        assert!(matches!(
            change_of(&Event::Update(est.clone()), m),
            Some(KernelChange::Admitted(_))
        ));
        let unmarked = tcp_entry(ctnetlink::TcpState::Established, 0);
        assert_eq!(change_of(&Event::New(unmarked), m), None);
        // Destroy events may lack the mark and the window scales.
        let mut gone = tcp_entry(ctnetlink::TcpState::TimeWait, 0);
        gone.mark = None;
        gone.status = Status(Status::DYING);
        match change_of(&Event::Destroy(gone), m) {
            Some(KernelChange::Gone(f)) => {
                assert_eq!(f.orig, (ip("198.51.100.2"), 40000));
                assert_eq!(f.timeout, None);
            }
            other => panic!("{other:?}"),
        }
        let half = tcp_entry(ctnetlink::TcpState::SynSent, 0);
        assert!(matches!(
            change_of(&Event::Destroy(half), m),
            Some(KernelChange::Gone(_))
        ));
    }
}
