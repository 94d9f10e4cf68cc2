//! Everything that touches the kernel: NFQUEUE workers, iptables rules, action execution.

pub mod actions;
pub mod netfilter;
pub mod queue;
