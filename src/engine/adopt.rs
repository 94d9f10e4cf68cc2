//! Flows adopted from the kernel table ([`crate::adopt`]) and the gateway's role in a pair:
//! standby, taking over, active.
//!
//! * A flow of the kernel table with the ADMITTED bit is adopted (an entry that follows the
//!   kernel's news until a packet uses it); its first packet is checked against the rules in
//!   force, in the flow's orientation and with that packet's interfaces, and a flow they
//!   refuse is closed (`adopt_refused`).
//! * A **standby** (no address, so no traffic expected) and a gateway in its **takeover
//!   window** (after `statewall takeover`) drop a mid-stream segment of an
//!   unknown flow (an ACK, a FIN, a RST or a SYN/ACK without an entry) silently: its flow's
//!   replication may simply be late, and a RST would cut it. It is counted
//!   (`takeover_unknown`) and not reported to the scan detector. Clear probe shapes (NULL,
//!   XMAS, SYN+FIN, FIN without ACK, ...) are still dropped for their reasons and answered as
//!   configured, and a SYN is still a new connection for the rules.

use std::sync::atomic::Ordering;

use super::{Decision, Engine};
use crate::adopt::{Adoption, KernelFlow};
use crate::packet::{Packet, PacketMeta};
use crate::proto;
use crate::rules::{Query, RuleAction};
use crate::time::Timestamp;
use crate::verdict::{DropReason, Flow};

/// `takeover_until` of a standby: the window never closes.
const STANDBY: u64 = u64::MAX;

/// The gateway's role in a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Not handling traffic: unknown mid-stream segments are dropped silently.
    Standby,
    /// Took over (or restarted) less than the takeover window ago.
    TakingOver {
        /// Seconds left in the window.
        secs_left: u64,
    },
    /// Handling traffic; unknown mid-stream segments are out-of-state probes again.
    Active,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Standby => f.write_str("standby"),
            Role::TakingOver { secs_left } => write!(f, "taking over ({secs_left} s left)"),
            Role::Active => f.write_str("active"),
        }
    }
}

impl Engine {
    /// Adopts one flow of the kernel table (see [`crate::adopt`]).
    pub fn adopt_kernel(&self, flow: &KernelFlow, now: Timestamp) -> Adoption {
        let a = self.conntrack.adopt(flow, now);
        if a == Adoption::Adopted {
            self.counters.adopted();
        }
        a
    }

    /// The kernel's entry of `flow` is gone: so is statewall's, if it was adopted and no packet
    /// has used it since. Returns whether it was removed.
    pub fn forget_kernel(&self, flow: &KernelFlow) -> bool {
        self.conntrack.forget(flow)
    }

    /// This gateway stops handling traffic (it lost the addresses): it becomes the standby.
    /// Every tracked flow follows the kernel table again (the peer's updates arrive there), its
    /// next packet is judged by the rules again, and what was known of its TCP windows are
    /// lower bounds from now on (the segments in flight while the address moves still pass).
    /// Returns how many flows.
    pub fn stand_by(&self, now: Timestamp) -> u64 {
        self.takeover_until.store(STANDBY, Ordering::Relaxed);
        self.conntrack.follow_kernel(now)
    }

    /// This gateway handles traffic from `now` on; until `until` (the takeover window) unknown
    /// mid-stream segments are still dropped silently. The flows it tracked while the peer
    /// carried them (stragglers it saw as the standby) went on without it: their TCP windows
    /// are lower bounds again.
    pub fn take_over(&self, now: Timestamp, until: Timestamp) {
        self.takeover_until
            .store(until.as_nanos(), Ordering::Relaxed);
        self.conntrack.take_back(now);
    }

    /// The role at `now`.
    pub fn role(&self, now: Timestamp) -> Role {
        match self.takeover_until.load(Ordering::Relaxed) {
            STANDBY => Role::Standby,
            until if now.as_nanos() < until => Role::TakingOver {
                secs_left: (until - now.as_nanos()).div_ceil(1_000_000_000),
            },
            _ => Role::Active,
        }
    }

    /// Whether unknown mid-stream segments are dropped silently at `now`.
    pub(super) fn takeover_active(&self, now: Timestamp) -> bool {
        now.as_nanos() < self.takeover_until.load(Ordering::Relaxed)
    }

    /// Whether the rules in force allow an adopted flow, judged on its first packet `pkt`: the
    /// flow's originator and responder, and the packet's interfaces seen from the originator
    /// (swapped when the packet travels the other way).
    pub(super) fn adoption_allowed(
        &self,
        pkt: &Packet<'_>,
        meta: &PacketMeta<'_>,
        flow: &Flow,
    ) -> bool {
        let forward = pkt.src == flow.src;
        let (in_iface, out_iface) = if forward {
            (meta.in_iface, meta.out_iface)
        } else {
            (meta.out_iface, meta.in_iface)
        };
        let icmp = matches!(flow.proto, proto::ICMP | proto::ICMPV6);
        let q = Query {
            src: flow.src,
            dst: flow.dst,
            proto: flow.proto,
            sport: if icmp { 0 } else { flow.sport },
            dport: if icmp { 0 } else { flow.dport },
            // An adopted ICMP flow is an echo: judged as its request.
            icmp_type: icmp.then_some(if flow.proto == proto::ICMP { 8 } else { 128 }),
            icmp_code: icmp.then_some(0),
            in_iface,
            out_iface,
        };
        // A flow that passed before this process: within any `limit` then, spends no token.
        self.policy().evaluate_tracked(&q).action == RuleAction::Allow
    }

    /// The first packet of an adopted flow the rules refuse: the flow is closed.
    pub(super) fn refuse_adopted(&self, flow: &Flow, now: Timestamp) -> Decision {
        self.conntrack.revoke_flow(flow, now);
        Decision::drop(DropReason::AdoptRefused)
    }
}

#[cfg(test)]
mod tests;
