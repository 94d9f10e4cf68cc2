//! What an operator asks of the engine through the control socket: kill connections, block
//! and unblock addresses, and the rule sets behind the listings (which rule admitted a
//! connection, hits per rule).

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;

use super::Engine;
use crate::block::Blocklist;
use crate::conntrack::{ConnRecord, RuleTag};
use crate::event::{CloseReason, ConnClosed, Event};
use crate::packet::Seq;
use crate::proto;
use crate::rules::{Policy, RuleInfo};
use crate::time::Timestamp;
use crate::verdict::{Action, Rst};

/// First-block duration of the block list when `[scan] block` is off (operators' blocks give
/// their own duration).
const MANUAL_TTL: Duration = Duration::from_secs(3600);
/// Longest block of that list.
const MANUAL_TTL_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Entries of that list.
const MANUAL_CAP: usize = 65_536;

/// Most killed connections answered with RSTs in one kill (two RSTs each); the others are
/// only revoked (their next segment is dropped).
pub const KILL_MAX_RSTS: usize = 4096;

/// Most destroy events one kill or recheck reports (the rest are counted, not reported).
pub const MAX_CLOSE_EVENTS: usize = 65_536;

/// The block list when `[scan] block` is off: only operators block.
pub(super) fn manual_blocklist() -> Blocklist {
    Blocklist::new(MANUAL_TTL, MANUAL_TTL_MAX, MANUAL_CAP, Vec::new())
}

/// Result of [`Engine::kill`].
#[derive(Debug, Default)]
pub struct Kill {
    /// Connections killed.
    pub killed: u64,
    /// RSTs toward both ends of killed TCP connections (at most [`KILL_MAX_RSTS`]
    /// connections' worth).
    pub actions: Vec<Action>,
    /// Their destroy events (when someone listens for connection events).
    pub events: Vec<Event>,
}

/// Why a block was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BlockError {
    /// The network is on the allowlist (`[scan] allow_sources`).
    #[error("{0} is on the allowlist ([scan] allow_sources): not blocked")]
    Allowlisted(IpNet),
    /// A zero duration.
    #[error("a block needs a duration of at least one second")]
    ZeroTtl,
}

/// The two RSTs that end a TCP connection, each with the sequence number its receiver
/// expects next: to the originator as if from the responder, and the other way round.
pub(super) fn rsts_for(record: &ConnRecord, (orig_next, reply_next): (Seq, Seq)) -> [Action; 2] {
    let flow = &record.flow;
    let rst = |(src, sport): (IpAddr, u16), (dst, dport): (IpAddr, u16), seq: Seq| {
        Action::SendRst(Rst {
            src,
            dst,
            sport,
            dport,
            seq,
            ack: None,
        })
    };
    let (orig, reply) = ((flow.src, flow.sport), (flow.dst, flow.dport));
    [rst(reply, orig, reply_next), rst(orig, reply, orig_next)]
}

impl Engine {
    /// Kills every live connection `matches` selects, like `conntrack -D`: each is revoked
    /// (every further packet of it is dropped, reason `revoked`, until its entry expires
    /// after the CLOSE timeout; a new connection on the tuple after that is judged by the
    /// rules), and a TCP connection gets a RST toward each end so that both stop at once.
    pub fn kill(&self, now: Timestamp, mut matches: impl FnMut(&ConnRecord) -> bool) -> Kill {
        let mut out = Kill::default();
        let report = self.interest().conns;
        let mut answered = 0;
        out.killed = self.conntrack.revoke(now, |record, next| {
            if !matches(record) {
                return false;
            }
            if let Some(next) = next.filter(|_| record.flow.proto == proto::TCP) {
                if answered < KILL_MAX_RSTS {
                    answered += 1;
                    out.actions.extend(rsts_for(record, next));
                }
            }
            if report && out.events.len() < MAX_CLOSE_EVENTS {
                out.events.push(self.closed(record, CloseReason::Killed));
            }
            true
        });
        if out.killed > 0 {
            // Killed flows on the fast path must come back to be dropped.
            self.offload_release.store(true, Ordering::SeqCst);
        }
        out
    }

    /// The destroy event of a connection that ended for `why`.
    pub(super) fn closed(&self, record: &ConnRecord, why: CloseReason) -> Event {
        Event::Destroy(ConnClosed {
            record: *record,
            rule: self.rule_info(record.rule),
            why,
        })
    }

    /// Blocks `net` for `ttl` (an operator's block: what fail2ban or CrowdSec actions call):
    /// its packets, in both directions and of connections already tracked, are dropped
    /// (reason `blocked`) until the block ends or is lifted. (A scan's automatic block drops
    /// only what the scanner sends.) Returns the block event.
    pub fn block(
        &self,
        net: IpNet,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Event>, BlockError> {
        if ttl.is_zero() {
            return Err(BlockError::ZeroTtl);
        }
        let net = net.trunc();
        let ev = self
            .blocks
            .block_for(net, "manual", ttl, now)
            .ok_or(BlockError::Allowlisted(net))?;
        // The blocked network's flows on the fast path must come back to be dropped.
        self.offload_release.store(true, Ordering::SeqCst);
        Ok(vec![Event::Block(ev)])
    }

    /// Lifts the blocks covering `ip`; returns the events (empty: it was not blocked).
    pub fn unblock(&self, ip: IpAddr, now: Timestamp) -> Vec<Event> {
        self.blocks
            .unblock(ip, now)
            .into_iter()
            .map(Event::Block)
            .collect()
    }

    /// The rule set in force, and with `with_conns` the live connections each of its rules
    /// admitted (by rule index; empty otherwise: that walks the whole table).
    pub fn rule_counts(&self, now: Timestamp, with_conns: bool) -> (Arc<Policy>, Vec<u64>) {
        let current = self.rules.load_full();
        if !with_conns {
            return (Arc::clone(&current.policy), Vec::new());
        }
        let counts = RefCell::new(vec![0u64; current.policy.rule_count()]);
        self.conntrack.connections(now, |c| {
            let index = c
                .rule
                .index()
                .filter(|_| c.rule.ruleset == current.generation);
            if let Some(i) = index {
                if let Some(n) = counts.borrow_mut().get_mut(i) {
                    *n += 1;
                }
            }
            false
        });
        (Arc::clone(&current.policy), counts.into_inner())
    }

    /// The rule a connection's tag names, while its rule set is the one in force or among the
    /// last few.
    pub fn rule_info(&self, tag: RuleTag) -> Option<Arc<RuleInfo>> {
        let index = tag.index()?;
        let current = self.rules.load();
        if current.generation == tag.ruleset {
            return current.policy.rule(index).map(|r| Arc::new(r.clone()));
        }
        let earlier = self
            .earlier_rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        earlier
            .iter()
            .find(|set| set.generation == tag.ruleset)
            .and_then(|set| set.policy.rule(index))
            .map(|r| Arc::new(r.clone()))
    }
}
