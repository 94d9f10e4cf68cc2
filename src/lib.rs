//! statewall: a stateful firewall and connection-tracking gateway for Linux.
//!
//! # Architecture
//!
//! ```text
//!  kernel: iptables FORWARD -j NFQUEUE ──► io::queue worker ──► Engine::process(bytes, meta, now)
//!                                                                   │
//!        verdict (accept/drop) ◄────────────────────────────────────┤ Decision
//!        io::rst raw sockets   ◄── actions (SendRst, Log, Alert) ───┘
//! ```
//!
//! The [`engine`] is sans-IO: packet bytes and a timestamp go in, a [`engine::Decision`] comes
//! out. It owns the connection-tracking table ([`conntrack`]), the compiled rules ([`rules`]),
//! the scan detector ([`scan`]) and the counters. It never touches a socket, a file or the clock;
//! everything that does lives in [`io`] and the daemon wiring, and stays thin.
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
pub mod io;
pub mod marks;
pub mod packet;
pub mod proto;
pub mod ratelimit;
pub mod replay;
pub mod respond;
pub mod rules;
pub mod scan;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod verdict;

pub use engine::{Decision, Engine};
pub use packet::{Packet, PacketMeta};
pub use time::Timestamp;
pub use verdict::{DropReason, Verdict};
