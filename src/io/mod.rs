//! I/O at the edge: everything that touches the kernel or a socket lives here and stays thin
//! (NFQUEUE workers, iptables rules, the kernel conntrack table over ctnetlink and the kernel
//! side of the fast path, raw sockets, syslog, the event stream and the metrics listener,
//! execution of engine actions, the host's address removals for a pair of gateways).

pub mod actions;
pub mod addr_watch;
pub mod ctnetlink;
pub mod defrag;
pub mod events;
pub mod kernel_flows;
pub mod metrics;
pub mod netfilter;
pub mod offload;
pub mod queue;
pub mod rawsend;
pub mod syslog;
