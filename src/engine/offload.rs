//! The engine's side of the kernel fast path ([`crate::conntrack::Offload`]): which flows the
//! kernel may keep carrying, and when it must hand flows back at once.
//!
//! A flow is offloaded by its own packets (the decision's `fastpath`), and leaves the fast
//! path by its own packets too (its teardown). Other ways out — a block of one of its
//! endpoints, a rule recheck revoking it, its entry gone — are found by the daemon's periodic
//! pass over the kernel's fast-path flows ([`Engine::keep_offloaded`]), which runs at once when
//! [`Engine::take_offload_release`] says so.

use std::sync::atomic::Ordering;

use super::Engine;
use crate::adopt::KernelFlow;
use crate::time::Timestamp;

impl Engine {
    /// The kernel carries `flow` on the fast path: whether it may go on doing so (statewall
    /// holds the flow there, it is not revoked, neither endpoint is blocked). A flow it may keep
    /// has its entry refreshed: it does not expire while the kernel forwards it.
    pub fn keep_offloaded(&self, flow: &KernelFlow, now: Timestamp) -> bool {
        let b = &self.blocks;
        if b.is_blocked(flow.orig.0, now) || b.is_blocked(flow.resp.0, now) {
            // Either end's packets are dropped: the flow must come back to statewall.
            return false;
        }
        self.conntrack
            .keep_offloaded(flow.proto, flow.orig, flow.resp, now)
    }

    /// Whether flows left the fast path since the last call other than by their own packets
    /// (a block, a recheck): the kernel must be told now, not at the next periodic pass.
    pub fn take_offload_release(&self) -> bool {
        self.offload_release.swap(false, Ordering::SeqCst)
    }
}
