//! Admission: the rules judge every packet that would open a flow, a rejected one is answered
//! (RST or ICMP port unreachable), an admitted one opens its flow; flows adopted mid-stream
//! after a restart; and the recheck of tracked flows when the rules change.

use std::sync::Arc;

use super::operator::{rsts_for, MAX_CLOSE_EVENTS};
use super::{Decision, Engine};
use crate::conntrack::{Milestone, Opened, Opening, RuleTag};
use crate::event::{CloseReason, ConnOpened, Event, LoggedPacket, RuleMatch};
use crate::packet::{Packet, PacketMeta, Transport};
use crate::proto;
use crate::respond::{rst_answering, unreachable_answering};
use crate::rules::{Policy, Query, RuleAction};
use crate::scan::{AnswerKind, ProbeKind, ScanInput};
use crate::time::Timestamp;
use crate::verdict::{Action, DropReason, Flow, Pass, Verdict};

/// Result of [`Engine::recheck`].
#[derive(Debug, Default)]
pub struct Recheck {
    /// Connections closed.
    pub revoked: u64,
    /// RSTs toward both ends of closed connections whose rule says `reject`.
    pub actions: Vec<Action>,
    /// Their destroy events (when someone listens for connection events).
    pub events: Vec<Event>,
}

/// What the rules see of a packet besides its addresses: the ports (0 for ICMP and protocols
/// without ports) and, for ICMP, the type and code.
fn query_fields(pkt: &Packet<'_>) -> ((u16, u16), Option<(u8, u8)>) {
    match &pkt.transport {
        Transport::Tcp(t) => ((t.sport, t.dport), None),
        Transport::Udp { sport, dport } => ((*sport, *dport), None),
        Transport::Icmp(h) => ((0, 0), Some((h.icmp_type, h.code))),
        Transport::Fragment | Transport::Other => ((0, 0), None),
    }
}

impl Engine {
    /// A packet that would open a flow: the rules decide, the scan detector hears of it, and an
    /// admitted flow opens (if the table has room).
    pub(super) fn admit(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        mut opening: Opening,
        now: Timestamp,
    ) -> Decision {
        let (ports, icmp) = query_fields(pkt);
        let (mut d, tag) = self.check_policy(pkt, meta, ports, icmp, now);
        let kind = match (pkt.proto, d.accepted()) {
            (proto::TCP, true) => Some(ProbeKind::Syn),
            (proto::TCP, false) => Some(ProbeKind::SynDropped),
            (proto::UDP, true) => Some(ProbeKind::UdpNew),
            (proto::UDP, false) => Some(ProbeKind::UdpDropped),
            _ => None,
        };
        let flow = Flow {
            proto: pkt.proto,
            src: pkt.src,
            dst: pkt.dst,
            sport: ports.0,
            dport: ports.1,
        };
        if let Some(kind) = kind {
            self.observe(now, ScanInput::Probe { flow, kind }, &mut d.events);
        }
        if !d.accepted() {
            let answered = d.action.as_ref().map(|a| match a {
                Action::SendRst(_) => AnswerKind::TcpRst,
                Action::SendUnreachable(_) => AnswerKind::IcmpUnreachable,
            });
            if let Some(kind) = answered {
                self.observe(now, ScanInput::Answer { probe: flow, kind }, &mut d.events);
            }
            return d;
        }
        opening.admitted_by(tag);
        let flow = opening.flow();
        match self.conntrack.open(opening) {
            Ok(opened) => {
                d.verdict = Verdict::Accept(Pass::Opened);
                d.state = Some(opened.state);
                self.report_opened(flow, &opened, tag, false, &mut d.events);
            }
            Err(reason) => d.verdict = Verdict::Drop(reason),
        }
        d
    }

    /// A handshake that early drop evicted from a full table completed (its originator's ACK
    /// answered the SYN/ACK): the connection comes back into the table, established, under the
    /// rule that admitted its SYN. Its eviction was reported; it is reported opened again.
    pub(super) fn resume(&self, opening: Opening, now: Timestamp) -> Decision {
        let flow = opening.flow();
        let tag = opening.rule();
        match self.conntrack.resume(opening) {
            Ok(opened) => {
                let mut d = Decision::accept(Pass::Tracked, Some(opened.state));
                self.report_opened(flow, &opened, tag, false, &mut d.events);
                self.observe_milestone(Milestone::Established(flow), now, &mut d.events);
                d
            }
            Err(reason) => Decision::drop(reason),
        }
    }

    /// The connection events of an opened flow: those that made room for it, then its own.
    fn report_opened(
        &self,
        flow: Flow,
        opened: &Opened,
        tag: RuleTag,
        adopted: bool,
        out: &mut Vec<Event>,
    ) {
        if !self.interest().conns {
            return;
        }
        if let Some(r) = &opened.evicted {
            out.push(self.closed(r, CloseReason::Evicted));
        }
        if let Some(r) = &opened.replaced {
            out.push(self.closed(r, CloseReason::Replaced));
        }
        out.push(Event::New(ConnOpened {
            flow,
            state: opened.state,
            rule: self.rule_info(tag),
            adopted,
        }));
    }

    /// An ICMP message that opens nothing (router advertisements, timestamps...): the rules
    /// judge each one.
    pub(super) fn stateless(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        now: Timestamp,
    ) -> Decision {
        let (ports, icmp) = query_fields(pkt);
        self.check_policy(pkt, meta, ports, icmp, now).0
    }

    /// A mid-stream TCP segment while pickup is on: its connection may have been established
    /// before a restart. Blind pickup never admits what the rules refuse: the flow is adopted
    /// only when the rules allow it as the segment travels (its sender opened it) or the other
    /// way round (its receiver did), and then in that orientation. Otherwise the segment is a
    /// probe, dropped as `policy_drop` (with its drop line).
    pub(super) fn adopt(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        opening: Opening,
        now: Timestamp,
    ) -> Decision {
        let ((sport, dport), _) = query_fields(pkt);
        let forward = Query {
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.proto,
            sport,
            dport,
            icmp_type: None,
            icmp_code: None,
            in_iface: meta.in_iface,
            out_iface: meta.out_iface,
        };
        let reverse = Query {
            src: pkt.dst,
            dst: pkt.src,
            sport: dport,
            dport: sport,
            in_iface: meta.out_iface,
            out_iface: meta.in_iface,
            ..forward
        };
        let rules = self.rules.load();
        let policy = &rules.policy;
        let allows = |q: &Query<'_>| policy.evaluate(q, now).action == RuleAction::Allow;
        let opening = if allows(&forward) {
            opening
        } else if allows(&reverse) {
            opening.reversed()
        } else {
            let mut d = self.stray(pkt, DropReason::PolicyDrop, now);
            self.log_drop(pkt, meta, &mut d, now);
            return d;
        };
        let flow = opening.flow();
        match self.conntrack.open(opening) {
            Ok(opened) => {
                let mut d = Decision::accept(Pass::Opened, Some(opened.state));
                self.report_opened(flow, &opened, RuleTag::default(), true, &mut d.events);
                d
            }
            Err(reason) => Decision::drop(reason),
        }
    }

    /// Runs the rules on a packet: allowed (passes, opening nothing by itself), dropped, or
    /// rejected and answered within the rate limits; a `log` rule adds its event. The
    /// deciding rule's hit is counted; its tag is returned for the flow it opens.
    fn check_policy(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        (sport, dport): (u16, u16),
        icmp: Option<(u8, u8)>,
        now: Timestamp,
    ) -> (Decision, RuleTag) {
        let rules = self.rules.load();
        let policy = &rules.policy;
        let q = Query {
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.proto,
            sport,
            dport,
            icmp_type: icmp.map(|(t, _)| t),
            icmp_code: icmp.map(|(_, c)| c),
            in_iface: meta.in_iface,
            out_iface: meta.out_iface,
        };
        let outcome = policy.evaluate(&q, now);
        policy.count_hit(&outcome);
        let tag = RuleTag::new(outcome.rule.map(|r| r.id), rules.generation);
        let mut d = match outcome.action {
            RuleAction::Allow => Decision::accept(Pass::Stateless, None),
            RuleAction::Drop => Decision::drop(DropReason::PolicyDrop),
            RuleAction::Reject => {
                let mut d = Decision::drop(DropReason::PolicyReject);
                d.action = self.reject_answer(pkt, now);
                d
            }
        };
        match outcome.rule.filter(|r| r.log) {
            // A `log` rule's line reports the packet, dropped or not: never a second line.
            Some(rule) => {
                if self.rule_logs.try_take(now) {
                    d.events.push(Event::RuleMatch(RuleMatch {
                        rule: Arc::new(rule.clone()),
                        action: outcome.action,
                        packet: LoggedPacket::of(pkt, meta),
                    }));
                } else {
                    self.counters.logs_suppressed();
                    self.drop_log.suppress();
                }
            }
            None => self.log_drop(pkt, meta, &mut d, now),
        }
        (d, tag)
    }

    /// The answer to a rejected packet, if the RFCs allow one and the rate limits leave room:
    /// a RST for TCP, an ICMP port unreachable otherwise.
    fn reject_answer(&self, pkt: &Packet<'_>, now: Timestamp) -> Option<Action> {
        let answer = match &pkt.transport {
            Transport::Tcp(t) => rst_answering(pkt.src, pkt.dst, t).map(Action::SendRst),
            _ => unreachable_answering(pkt).map(Action::SendUnreachable),
        };
        answer.filter(|_| self.take_answer(pkt.src, now))
    }

    /// Closes tracked connections that `policy` would not allow today (reload with
    /// `[reload] mode = "recheck"`): every further packet of theirs is dropped (`revoked`) until
    /// the entry expires, at the latest after the CLOSE timeout. Connections whose rule says
    /// `reject` get a RST toward each end, within the answer rate limits (global, and per
    /// receiving source) like every answer statewall sends.
    ///
    /// Each flow is judged as the packet that opened it was ([`Policy::evaluate_tracked`]: no
    /// `limit` token spent): ports, and for an ICMP echo flow the echo request's type and
    /// code. Interfaces are not stored with a flow: a rule naming one does not match here.
    pub fn recheck(&self, policy: &Policy, now: Timestamp) -> Recheck {
        let mut actions = Vec::new();
        let mut events = Vec::new();
        let report = self.interest().conns;
        let revoked = self.conntrack.revoke(now, |record, next| {
            let flow = &record.flow;
            // ICMP flows are echoes (nothing else opens one), opened by the request.
            let echo = match flow.proto {
                proto::ICMP => Some(8),
                proto::ICMPV6 => Some(128),
                _ => None,
            };
            let q = Query {
                src: flow.src,
                dst: flow.dst,
                proto: flow.proto,
                sport: if echo.is_some() { 0 } else { flow.sport },
                dport: if echo.is_some() { 0 } else { flow.dport },
                icmp_type: echo,
                icmp_code: echo.map(|_| 0),
                in_iface: None,
                out_iface: None,
            };
            let action = policy.evaluate_tracked(&q).action;
            if action == RuleAction::Allow {
                return false;
            }
            if let (RuleAction::Reject, Some(next)) = (action, next) {
                // A RST toward each end, each with the sequence number that end expects next,
                // each within the answer rate limits of the end it goes to.
                let [to_orig, to_reply] = rsts_for(record, next);
                if self.take_answer(flow.src, now) {
                    actions.push(to_orig);
                }
                if self.take_answer(flow.dst, now) {
                    actions.push(to_reply);
                }
            }
            if report && events.len() < MAX_CLOSE_EVENTS {
                events.push(self.closed(record, CloseReason::Revoked));
            }
            true
        });
        if revoked > 0 {
            // Revoked flows on the fast path must come back to be dropped.
            self.offload_release
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Recheck {
            revoked,
            actions,
            events,
        }
    }
}
