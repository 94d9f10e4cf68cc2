//! statewall: a stateful firewall and connection-tracking gateway for Linux.
//!
//! # The packet's way
//!
//! ```text
//! kernel ─ NFQUEUE ─► io::queue ─► engine::Engine::process(bytes, meta, now)
//!                                   packet::Packet::decode        decoding, one borrowed view
//!                                   block list                    scan-blocked sources
//!                                   conntrack::Conntrack::track   per-protocol tracking
//!                                   engine admission              rules::Policy for new flows
//!                                   engine observers              scan::ScanDetector
//!                                 ◄─ engine::Decision { verdict, state, action, events }
//! io::queue ◄─ verdict::Verdict (Accept(Pass) | Drop(DropReason))
//! io::actions ◄─ verdict::Action (SendRst, SendUnreachable) ─► respond (bytes) ─► io::rawsend
//!             ◄─ event::Event (rule matches, scan alerts, blocks) ─► io::syslog, the journal
//! engine::Engine::on_timer(now): expiry, time-driven scan alerts, block expiry (daemon timer)
//! ```
//!
//! The core is sans-IO: [`packet`], [`verdict`], [`conntrack`], [`engine`], [`rules`],
//! [`scan`], [`respond`], [`ratelimit`], [`block`] and [`event`] take bytes and a timestamp and
//! return values ([`source`] says what one source is for all of them); none touches a socket, a file or the clock. The edges do: [`io`] (queues,
//! iptables, raw sockets, syslog, ctnetlink), [`daemon`], [`control`], [`replay`], with their
//! settings in [`config`]. `testing` (in tests, and with the `testing` feature) builds packets for
//! every test, bench and fuzz seed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// No panics on input paths: outside tests, every unwrap/expect/panic is an error; the rare
// invariant-backed one carries an `#[allow]` with its reason.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod adopt;
pub mod alert;
pub mod block;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod fault;
pub mod files;
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod io;
pub mod marks;
pub mod packet;
pub mod proto;
pub mod ratelimit;
pub mod replay;
pub mod respond;
pub mod rules;
pub mod scan;
pub mod source;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod verdict;

pub use engine::{Decision, Engine};
pub use packet::{Packet, PacketMeta};
pub use time::Timestamp;
pub use verdict::{DropReason, Verdict};
