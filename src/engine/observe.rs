//! The observers: what the scan detector hears of the packet's way ([`ScanInput`]), and what
//! becomes of its alerts (events, and a block when the alert says so).

use std::sync::atomic::Ordering;

use super::Engine;
use crate::conntrack::Milestone;
use crate::event::Event;
use crate::proto;
use crate::scan::{AnswerKind, ScanAlert, ScanInput};
use crate::time::Timestamp;

impl Engine {
    /// Reports one input to the scan detector, if there is one; its alerts go to `out`.
    pub(super) fn observe(&self, now: Timestamp, input: ScanInput, out: &mut Vec<Event>) {
        if let Some(scan) = &self.scan {
            let alerts = scan.on_input(now, input);
            self.raise(alerts, now, out);
        }
    }

    /// A step in a tracked flow's life, as the scan detector needs it.
    pub(super) fn observe_milestone(&self, m: Milestone, now: Timestamp, out: &mut Vec<Event>) {
        let input = match m {
            // Replies matter for TCP handshakes and UDP flows only.
            Milestone::Replied(flow) if matches!(flow.proto, proto::TCP | proto::UDP) => {
                ScanInput::Reply { flow }
            }
            Milestone::Replied(_) => return,
            Milestone::Established(flow) => ScanInput::Established { flow },
            Milestone::Refused(probe) => ScanInput::Answer {
                probe,
                kind: AnswerKind::TcpRst,
            },
            Milestone::Unreachable(probe) => ScanInput::Answer {
                probe,
                kind: AnswerKind::IcmpUnreachable,
            },
        };
        self.observe(now, input, out);
    }

    /// Turns scan alerts into events, blocking the scanner when the alert says so.
    pub(super) fn raise(&self, alerts: Vec<ScanAlert>, now: Timestamp, out: &mut Vec<Event>) {
        for alert in alerts {
            let block = alert.block.filter(|_| self.auto_block).and_then(|net| {
                self.blocks
                    .block(alert.scanner, net, alert.scan_type.name(), now)
            });
            out.push(Event::Scan(alert));
            if let Some(ev) = block {
                // The blocked source's flows on the fast path must come back to be dropped.
                self.offload_release.store(true, Ordering::SeqCst);
                out.push(Event::Block(ev));
            }
        }
    }
}
