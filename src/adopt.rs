//! Flows adopted from the kernel's conntrack table: what the table says about one flow that
//! carries statewall's ADMITTED mark ([`crate::marks`]), in statewall's own terms.
//!
//! The kernel table holds every flow statewall admitted (the mark is saved there from the
//! verdicts) with its TCP state and window scales, and conntrackd replicates it to a standby.
//! After a restart, and on a standby as replicated entries arrive, statewall adopts exactly
//! those flows: their tuple, state, window scales and SACK permission come from the kernel,
//! their windows are learned from the next segments (the kernel does the same with an entry
//! conntrackd injected). Nothing else is adopted: a mid-stream segment of a flow the kernel does
//! not hold with the mark belongs to no connection. An adopted flow's first packet is checked
//! against the rules in force, in the flow's own orientation and with that packet's interfaces
//! (which the kernel table does not record): a flow they refuse is closed, never adopted.
//!
//! These are the types of that exchange (defined beside the table that adopts them, in
//! [`crate::conntrack`]); [`crate::io::kernel_flows`] reads the kernel table into them and the
//! engine adopts from them ([`crate::engine::Engine::adopt_kernel`]).

pub use crate::conntrack::{Adoption, AdoptionReport, KernelFlow, KernelTcp};
