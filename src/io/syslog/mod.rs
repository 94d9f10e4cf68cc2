//! Syslog output: RFC 3164 or RFC 5424 lines to `/dev/log`, UDP or TCP (RFC 6587 octet
//! counting), from a background thread so that the packet path never waits.
//!
//! - the `[syslog]` section is [`crate::config::SyslogConfig`];
//! - [`lines`]: the typed [`Event`](crate::event::Event)s rendered as line bodies, with their
//!   severities: packets in the kernel's `-j LOG` format ([`iptables`]), summaries as
//!   `KEY=value` pairs;
//! - [`format`](mod@format): a body framed as one RFC 3164 or RFC 5424 line (pure);
//! - [`sender`]: the thread that delivers lines, and the [`SyslogHandle`] that feeds it.
//!
//! [`SyslogHandle::send`] only puts the event on a bounded channel (dropping and counting it
//! when the channel is full). The worker thread formats the line, keeps a bounded backlog
//! while the target is unreachable (also at startup, which is not an error), and retries with
//! an exponential backoff (100 ms doubling up to 5 s), reconnecting TCP as needed.
//!
//! Delivery is best effort, as syslog is: a UDP datagram lost on the way, or a TCP frame
//! written just before the collector restarted, is gone. RFC 3164 timestamps are the system's local
//! time (TZ, /etc/localtime), RFC 5424 ones UTC.

pub mod format;
pub mod iptables;
pub mod lines;
pub mod sender;

pub use format::{format_line, octet_frame, Header};
pub use sender::{Syslog, SyslogError, SyslogHandle, SyslogStats};
