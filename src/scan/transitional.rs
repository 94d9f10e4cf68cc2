//! Transitional: the detector's entry points from before [`ScanInput`], kept as thin wrappers
//! over [`ScanDetector::on_input`] and [`ScanDetector::on_timer`] so that the engine compiles
//! while it moves to the typed input. Delete this file (and its `mod` line) once nothing calls
//! these.

use std::net::IpAddr;

use super::{AnswerKind, ProbeKind, ScanAlert, ScanDetector, ScanInput};
use crate::time::Timestamp;
use crate::verdict::Flow;

/// One observation handed to [`ScanDetector::observe`]: a packet from `src` that may be a probe.
///
/// Transitional: [`ScanInput::Probe`] carries the same facts; this goes once the engine speaks
/// [`ScanInput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanEvent {
    /// The (possible) scanner.
    pub src: IpAddr,
    /// The probed host.
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Source port.
    pub sport: u16,
    /// Probed port.
    pub dport: u16,
    /// Shape of the packet.
    pub kind: ProbeKind,
}

impl ScanEvent {
    /// The packet's flow, prober first.
    pub fn flow(&self) -> Flow {
        Flow {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
        }
    }
}

impl ScanDetector {
    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Probe`]; goes
    /// once the engine speaks [`ScanInput`].
    pub fn observe(&self, ev: &ScanEvent, now: Timestamp) -> Vec<ScanAlert> {
        let (flow, kind) = (ev.flow(), ev.kind);
        self.on_input(now, ScanInput::Probe { flow, kind })
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Answer`] (a
    /// negative answer from `target:port` to `scanner`); goes once the engine speaks
    /// [`ScanInput`].
    pub fn observe_answer(
        &self,
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        kind: AnswerKind,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let probe = Flow {
            proto,
            src: scanner,
            dst: target,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Answer { probe, kind })
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Reply`] (a reply
    /// from `target:port` to `scanner`); goes once the engine speaks [`ScanInput`].
    pub fn observe_reply(
        &self,
        scanner: IpAddr,
        target: IpAddr,
        proto: u8,
        port: u16,
        now: Timestamp,
    ) {
        let flow = Flow {
            proto,
            src: scanner,
            dst: target,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Reply { flow });
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Established`]
    /// (`client` completed a connection to `server:port`); goes once the engine speaks
    /// [`ScanInput`].
    pub fn observe_established(
        &self,
        client: IpAddr,
        server: IpAddr,
        proto: u8,
        port: u16,
        now: Timestamp,
    ) {
        let flow = Flow {
            proto,
            src: client,
            dst: server,
            sport: 0,
            dport: port,
        };
        self.on_input(now, ScanInput::Established { flow });
    }

    /// Transitional wrapper over [`ScanDetector::on_input`] with [`ScanInput::Closed`] (the
    /// connection `src:sport → dst:dport`, src = the side that opened it); goes once the
    /// engine speaks [`ScanInput`].
    pub fn note_closed(
        &self,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        now: Timestamp,
    ) -> Vec<ScanAlert> {
        let flow = Flow {
            proto,
            src,
            dst,
            sport,
            dport,
        };
        self.on_input(now, ScanInput::Closed { flow })
    }

    /// Transitional name of [`ScanDetector::on_timer`]; goes once the engine calls that.
    pub fn tick(&self, now: Timestamp) -> Vec<ScanAlert> {
        self.on_timer(now)
    }
}
