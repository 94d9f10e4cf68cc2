//! What may block: proof that a source is where its packets say it is.
//!
//! Every probe the detector counts can be sent with a forged source address: a NULL, FIN or
//! Xmas segment, a SYN or datagram to a closed or dropped port, even the RST that "completes" a
//! half-open SYN scan (the victim's own stack sends it on receiving the target's unexpected
//! SYN/ACK). Blocking on those lets anyone aim the block list at any address. So alerts report
//! them, but only proof blocks: TCP handshakes the source completed, which takes the target's
//! initial sequence number from its SYN/ACK, sent to the real address (pf's overload tables
//! count the same thing: `max-src-conn`, `max-src-conn-rate`). A source that completes
//! handshakes to as many ports of one host as a port scan alert of the block level needs is a
//! connect scanner; it is blocked with a port scan alert of technique `-sS` (nmap's `-sT`
//! completes the same handshakes). Many hosts on one port is not proof of anything: a busy
//! client (a browser on 443) does it all day. Known look-alike: a client opening many passive
//! FTP data connections to one server (each to another port); list it in `allow_sources` or
//! its ports in `allow_ports`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::time::Timestamp;

/// Completed handshakes of one source within the window.
#[derive(Clone, Debug, Default)]
pub(super) struct Proof {
    /// `(target, port)` → when a handshake to it last completed.
    seen: HashMap<(IpAddr, u16), Timestamp>,
    /// Highest level blocked for while the window holds proof.
    pub(super) level: u8,
}

/// What one more completed handshake proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Proven {
    /// Distinct ports of the target completed in the window.
    pub(super) ports: u32,
}

impl Proof {
    /// Whether no handshake is remembered.
    pub(super) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets handshakes older than `window`.
    pub(super) fn slide(&mut self, now: Timestamp, window: Duration) {
        self.seen.retain(|_, at| now.since(*at) < window);
        if self.seen.is_empty() {
            self.level = 0;
        }
    }

    /// Records a handshake to `dst:port` completed at `now`, keeping at most `cap`; returns the
    /// counts when it is a new `(target, port)`.
    pub(super) fn record(
        &mut self,
        dst: IpAddr,
        port: u16,
        now: Timestamp,
        window: Duration,
        cap: usize,
    ) -> Option<Proven> {
        self.slide(now, window);
        if let Some(at) = self.seen.get_mut(&(dst, port)) {
            *at = now;
            return None;
        }
        if self.seen.len() >= cap {
            return None;
        }
        self.seen.insert((dst, port), now);
        let ports = self.seen.keys().filter(|(d, _)| *d == dst).count();
        Some(Proven {
            ports: u32::try_from(ports).unwrap_or(u32::MAX),
        })
    }

    /// The lowest and highest port completed on `dst`.
    pub(super) fn port_range(&self, dst: IpAddr) -> (u16, u16) {
        let ports = self.seen.keys().filter(|(d, _)| *d == dst).map(|(_, p)| *p);
        let lo = ports.clone().min().unwrap_or(0);
        (lo, ports.max().unwrap_or(0))
    }
}
