//! Out-of-state TCP segments ("probes": a bare ACK, a FIN, a stealth shape for no known
//! connection): dropped, answered with a RST like a closed port would be (within the rate
//! limits, and as `[probes]` or the rule file's `probes` line says), and reported to the scan
//! detector together with the answer.

use std::net::IpAddr;

use super::{Decision, Engine};
use crate::packet::{Packet, TcpHeader, Transport};
use crate::respond::rst_answering;
use crate::scan::{AnswerKind, ProbeKind, ScanInput};
use crate::time::Timestamp;
use crate::verdict::{Action, DropReason, Flow, ProbeMode};

impl Engine {
    /// A TCP segment of no connection, dropped for `reason`.
    pub(super) fn stray(&self, pkt: &Packet<'_>, reason: DropReason, now: Timestamp) -> Decision {
        let mut d = Decision::drop(reason);
        let Transport::Tcp(tcp) = &pkt.transport else {
            return d;
        };
        d.action = self.answer_probe(pkt, tcp, now).map(Action::SendRst);
        let Some(kind) = ProbeKind::from_tcp_flags(tcp.flags) else {
            return d;
        };
        let flow = Flow {
            proto: pkt.proto,
            src: pkt.src,
            dst: pkt.dst,
            sport: tcp.sport,
            dport: tcp.dport,
        };
        self.observe(now, ScanInput::Probe { flow, kind }, &mut d.events);
        if d.action.is_some() {
            let answer = ScanInput::Answer {
                probe: flow,
                kind: AnswerKind::TcpRst,
            };
            self.observe(now, answer, &mut d.events);
        }
        d
    }

    /// The RST answering a probe, when probes are answered, the RFCs allow it (never to a RST)
    /// and the rate limits leave room.
    fn answer_probe(
        &self,
        pkt: &Packet<'_>,
        tcp: &TcpHeader,
        now: Timestamp,
    ) -> Option<crate::verdict::Rst> {
        if !self.probes_answered() {
            return None;
        }
        rst_answering(pkt.src, pkt.dst, tcp).filter(|_| self.take_answer(pkt.src, now))
    }

    /// Whether out-of-state probes get a RST: the rule file's `probes` line, else `[probes]`.
    fn probes_answered(&self) -> bool {
        match self.rules.load().policy.probes() {
            Some(mode) => mode == ProbeMode::Rst,
            None => self.config.probes.respond == ProbeMode::Rst,
        }
    }

    /// Takes a token for one answer to `src` (probe or reject), counting either way.
    pub(super) fn take_answer(&self, src: IpAddr, now: Timestamp) -> bool {
        let taken = self.answers.try_take(src, now).is_ok();
        self.counters.answer(taken);
        taken
    }
}
