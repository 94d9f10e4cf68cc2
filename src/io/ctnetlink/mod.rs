//! The kernel's conntrack table through ctnetlink: dump it (IPv4 and IPv6, optionally only the
//! entries whose connmark matches a mark/mask, filtered by the kernel), watch its events, change
//! the connmark of one entry, delete one entry.
//!
//! The fast path uses it to know which offloaded flows are alive and to take a flow off the
//! fast path (clear its mark bit); HA uses it to adopt the flows the kernel table holds with
//! statewall's mark. It is never on the per-packet path: a dump or an event socket has a socket
//! of its own, and the kernel never waits for an event listener (a listener that falls behind
//! loses events, reported as [`CtError::EventsLost`]: dump again).
//!
//! Messages are encoded and decoded by [`codec`] (pure functions over bytes, tested with golden
//! messages captured from this kernel and fuzzed), on the `netlink-packet-netfilter` crate of
//! the rust-netlink project; sockets come from `netlink-sys`, options from `socket2`, so this
//! module needs no `unsafe`.
//!
//! Root or `CAP_NET_ADMIN` is needed for events and changes (dumps too, in a user namespace).
//! The connmark set with an NFQUEUE verdict (`nfq::Message::set_ct_mark`) additionally needs the
//! kernel's conntrack glue (`CONFIG_NETFILTER_NETLINK_GLUE_CT`); this module does not.

pub mod codec;
mod entry;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use thiserror::Error;

pub use codec::{Reply, ReplyBody};
pub use entry::{
    Entry, Event, MarkFilter, Status, TcpInfo, TcpState, Tuple, L4, TCP_FLAG_BE_LIBERAL,
    TCP_FLAG_CLOSE_INIT, TCP_FLAG_SACK_PERM, TCP_FLAG_WINDOW_SCALE,
};

/// Errors of the ctnetlink module.
#[derive(Debug, Error)]
pub enum CtError {
    /// The netlink socket could not be opened or set up.
    #[error("cannot open a ctnetlink socket: {0}")]
    Socket(io::Error),
    /// Sending or receiving failed.
    #[error("ctnetlink {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// The kernel has no ctnetlink (`CONFIG_NF_CT_NETLINK`, module `nf_conntrack_netlink`).
    #[error("the kernel has no ctnetlink (nf_conntrack_netlink not loaded)")]
    Unavailable,
    /// The entry to change or delete is not in the table.
    #[error("no such conntrack entry")]
    NotFound,
    /// The kernel refused the request.
    #[error("the kernel refused the ctnetlink {op}: {source}")]
    Refused {
        /// The request.
        op: &'static str,
        /// The kernel's errno.
        source: io::Error,
    },
    /// The table changed size during a dump (`NLM_F_DUMP_INTR`): entries may be missing or
    /// repeated; dump again.
    #[error("the conntrack table was resized during the dump; dump again")]
    DumpInterrupted,
    /// The event socket overflowed (`ENOBUFS`): events were lost; dump the table again.
    #[error("conntrack events were lost (receive buffer overflow); dump the table again")]
    EventsLost,
    /// A message from the kernel could not be read.
    #[error("malformed ctnetlink message: {0}")]
    Malformed(String),
}

/// How long a request waits for each answer of the kernel unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Receive buffer for one datagram: the kernel fills dump datagrams up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;

fn refused(op: &'static str, errno: i32) -> CtError {
    match errno {
        libc::ENOENT => CtError::NotFound,
        libc::EOPNOTSUPP => CtError::Unavailable,
        _ => CtError::Refused {
            op,
            source: io::Error::from_raw_os_error(errno),
        },
    }
}

fn recv_datagram(socket: &Socket, buf: &mut [u8], op: &'static str) -> Result<usize, CtError> {
    let n = socket
        .recv(&mut &mut buf[..], libc::MSG_TRUNC)
        .map_err(|source| CtError::Io { op, source })?;
    if n > buf.len() {
        return Err(CtError::Malformed(format!(
            "datagram of {n} bytes truncated"
        )));
    }
    Ok(n)
}

/// A socket for requests: dumps, mark changes, deletions.
pub struct Ctnetlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Ctnetlink {
    /// Opens a ctnetlink request socket (in the caller's network namespace).
    pub fn open() -> Result<Ctnetlink, CtError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(CtError::Socket)?;
        socket.bind_auto().map_err(CtError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(CtError::Socket)?;
        let ct = Ctnetlink {
            socket,
            seq: 0,
            buf: vec![0; RECV_BUF],
        };
        ct.set_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(ct)
    }

    /// Sets how long a request waits for each answer of the kernel (default
    /// [`DEFAULT_TIMEOUT`]; `None`: forever). An expired wait is a [`CtError::Io`] of kind
    /// `WouldBlock`.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), CtError> {
        socket2::SockRef::from(&self.socket)
            .set_read_timeout(timeout)
            .map_err(CtError::Socket)
    }

    fn send(&mut self, op: &'static str, bytes: &[u8]) -> Result<(), CtError> {
        self.socket
            .send(bytes, 0)
            .map(|_| ())
            .map_err(|source| CtError::Io { op, source })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends a request with `NLM_F_ACK` and waits for its acknowledgement.
    fn request(&mut self, op: &'static str, bytes: &[u8], seq: u32) -> Result<(), CtError> {
        self.send(op, bytes)?;
        loop {
            let n = recv_datagram(&self.socket, &mut self.buf, op)?;
            for reply in codec::decode(&self.buf[..n])? {
                if reply.seq != seq {
                    continue;
                }
                match reply.body {
                    ReplyBody::Ack => return Ok(()),
                    ReplyBody::Error(errno) => return Err(refused(op, errno)),
                    _ => {}
                }
            }
        }
    }

    /// Dumps the table (both families), calling `each` for every entry; only the entries whose
    /// connmark matches `filter` if one is given. Returns how many entries were seen.
    pub fn dump_each(
        &mut self,
        filter: Option<MarkFilter>,
        mut each: impl FnMut(Entry),
    ) -> Result<usize, CtError> {
        let seq = self.next_seq();
        self.send("dump", &codec::dump_request(seq, filter))?;
        let mut count = 0;
        let mut interrupted = false;
        loop {
            let n = recv_datagram(&self.socket, &mut self.buf, "dump")?;
            for reply in codec::decode(&self.buf[..n])? {
                if reply.seq != seq {
                    continue;
                }
                interrupted |= reply.flags & codec::NLM_F_DUMP_INTR != 0;
                match reply.body {
                    ReplyBody::Entry(ev) => {
                        count += 1;
                        match ev {
                            Event::New(e) | Event::Update(e) | Event::Destroy(e) => each(e),
                        }
                    }
                    ReplyBody::Done if interrupted => return Err(CtError::DumpInterrupted),
                    ReplyBody::Done => return Ok(count),
                    ReplyBody::Error(errno) => return Err(refused("dump", errno)),
                    ReplyBody::Ack | ReplyBody::Other => {}
                }
            }
        }
    }

    /// Dumps the table into a vector (see [`Ctnetlink::dump_each`]).
    pub fn dump(&mut self, filter: Option<MarkFilter>) -> Result<Vec<Entry>, CtError> {
        let mut out = Vec::new();
        self.dump_each(filter, |e| out.push(e))?;
        Ok(out)
    }

    /// Sets the bits `mask` of the connmark of the entry whose original tuple is `original` to
    /// those of `mark` (the other bits are kept). [`CtError::NotFound`] if there is none.
    pub fn set_mark(&mut self, original: &Tuple, mark: u32, mask: u32) -> Result<(), CtError> {
        let seq = self.next_seq();
        let req = codec::set_mark_request(seq, original, mark, mask);
        self.request("mark change", &req, seq)
    }

    /// Deletes the entry whose original tuple is `original` (only if its id is `id`, when given).
    /// [`CtError::NotFound`] if there is none.
    pub fn delete(&mut self, original: &Tuple, id: Option<u32>) -> Result<(), CtError> {
        let seq = self.next_seq();
        let req = codec::delete_request(seq, original, id);
        self.request("delete", &req, seq)
    }
}

impl AsFd for Ctnetlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Which events to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventGroups {
    /// New entries.
    pub new: bool,
    /// Changes of state, status or mark (many: one per TCP state change).
    pub update: bool,
    /// Entries leaving the table.
    pub destroy: bool,
}

/// A socket subscribed to conntrack events.
pub struct CtEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl CtEvents {
    /// Subscribes to the event groups `groups` (in the caller's network namespace).
    pub fn open(groups: EventGroups) -> Result<CtEvents, CtError> {
        // NF_NETLINK_CONNTRACK_NEW, _UPDATE, _DESTROY: the bits of groups 1, 2 and 3.
        let mask =
            u32::from(groups.new) | u32::from(groups.update) << 1 | u32::from(groups.destroy) << 2;
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(CtError::Socket)?;
        socket
            .bind(&SocketAddr::new(0, mask))
            .map_err(CtError::Socket)?;
        Ok(CtEvents {
            socket,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sets how long [`CtEvents::recv`] waits (`None`: forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Result<(), CtError> {
        socket2::SockRef::from(&self.socket)
            .set_read_timeout(timeout)
            .map_err(CtError::Socket)
    }

    /// Asks for a receive buffer of `bytes` (`SO_RCVBUF`, capped by `net.core.rmem_max`);
    /// returns the size the kernel reports.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> Result<usize, CtError> {
        let sock = socket2::SockRef::from(&self.socket);
        sock.set_recv_buffer_size(bytes).map_err(CtError::Socket)?;
        sock.recv_buffer_size().map_err(CtError::Socket)
    }

    /// Receives the events of one datagram into `out`; returns how many. `Ok(0)` when the
    /// timeout expired without an event.
    pub fn recv(&mut self, out: &mut Vec<Event>) -> Result<usize, CtError> {
        let n = match self.socket.recv(&mut &mut self.buf[..], libc::MSG_TRUNC) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Ok(0)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(CtError::EventsLost),
            Err(source) => {
                return Err(CtError::Io {
                    op: "event receive",
                    source,
                })
            }
        };
        if n > self.buf.len() {
            return Err(CtError::Malformed(format!(
                "event datagram of {n} bytes truncated"
            )));
        }
        let before = out.len();
        for reply in codec::decode(&self.buf[..n])? {
            if let ReplyBody::Entry(ev) = reply.body {
                out.push(ev);
            }
        }
        Ok(out.len() - before)
    }
}

impl AsFd for CtEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests;
