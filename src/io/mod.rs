//! I/O at the edge: everything that touches a socket lives here and stays thin.

pub mod rawsend;
pub mod syslog;
