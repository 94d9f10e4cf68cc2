//! The host's addresses as they leave it (rtnetlink `RTM_DELADDR`): a gateway of a pair stands
//! by the moment keepalived removes one of its virtual addresses (`[ha] addresses`), instead of
//! when keepalived's BACKUP notification has run `statewall standby`, which comes after the
//! peer took the address (docs/ha.md).
//!
//! One message type is read: it is parsed here, over `netlink-packet-core`'s header buffer
//! (already a dependency, for ctnetlink), rather than adding `netlink-packet-route` for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::NetlinkBuffer;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `RTM_DELADDR` (linux/rtnetlink.h).
const RTM_DELADDR: u16 = 21;
/// Multicast groups of IPv4 and IPv6 address changes.
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, interface index.
const IFADDRMSG_LEN: usize = 8;
/// Attributes of an address: the address itself (the peer's on point-to-point links) and the
/// local one.
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// What can go wrong watching the addresses.
#[derive(Debug, thiserror::Error)]
pub enum AddrWatchError {
    /// The rtnetlink socket could not be opened or set up.
    #[error("cannot open an rtnetlink socket for address changes: {0}")]
    Socket(io::Error),
    /// Receiving failed.
    #[error("rtnetlink receive: {0}")]
    Recv(io::Error),
    /// The socket overflowed (`ENOBUFS`): address changes were lost.
    #[error("address changes lost (the rtnetlink socket overflowed)")]
    Lost,
}

/// A subscription to the host's address removals.
pub struct AddrWatch {
    socket: Socket,
    buf: Vec<u8>,
}

impl AddrWatch {
    /// Subscribes to IPv4 and IPv6 address changes; [`AddrWatch::recv`] waits up to `timeout`.
    pub fn open(timeout: Duration) -> Result<AddrWatch, AddrWatchError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(AddrWatchError::Socket)?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            .map_err(AddrWatchError::Socket)?;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(timeout))
            .map_err(AddrWatchError::Socket)?;
        Ok(AddrWatch {
            socket,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Receives one datagram and appends the addresses it removes to `out` (nothing when the
    /// timeout expired).
    pub fn recv(&mut self, out: &mut Vec<IpAddr>) -> Result<(), AddrWatchError> {
        let n = match self.socket.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Err(AddrWatchError::Lost),
            Err(e) => return Err(AddrWatchError::Recv(e)),
        };
        removed(&self.buf[..n.min(self.buf.len())], out);
        Ok(())
    }
}

/// Appends to `out` the addresses that the `RTM_DELADDR` messages of `datagram` remove; other
/// messages and anything malformed are skipped.
pub fn removed(datagram: &[u8], out: &mut Vec<IpAddr>) {
    let mut rest = datagram;
    while let Ok(msg) = NetlinkBuffer::new_checked(rest) {
        let len = msg.length() as usize;
        if msg.message_type() == RTM_DELADDR {
            deleted_address(msg.payload(), out);
        }
        let step = len.next_multiple_of(4);
        if step == 0 || step >= rest.len() {
            break;
        }
        rest = &rest[step..];
    }
}

/// The addresses of one `RTM_DELADDR` payload (`ifaddrmsg` and its attributes).
fn deleted_address(payload: &[u8], out: &mut Vec<IpAddr>) {
    let Some((head, mut attrs)) = payload.split_at_checked(IFADDRMSG_LEN) else {
        return;
    };
    let family = head[0];
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return;
        }
        let value = &attrs[4..len];
        if kind == IFA_ADDRESS || kind == IFA_LOCAL {
            let addr = match family {
                AF_INET => <[u8; 4]>::try_from(value)
                    .ok()
                    .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
                AF_INET6 => <[u8; 16]>::try_from(value)
                    .ok()
                    .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
                _ => None,
            };
            if let Some(a) = addr.filter(|a| !out.contains(a)) {
                out.push(a);
            }
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One rtnetlink message: header, `ifaddrmsg` of `family`, and `attrs` (type, value).
    fn message(kind: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0];
        body.extend_from_slice(&3u32.to_ne_bytes());
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn removed_addresses_of_both_families() {
        let v4 = [198, 51, 100, 1];
        let v6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let mut datagram = message(
            RTM_DELADDR,
            AF_INET,
            &[(IFA_ADDRESS, &v4), (IFA_LOCAL, &v4)],
        );
        // A new address (RTM_NEWADDR, 20) in the same datagram is not a removal.
        datagram.extend(message(20, AF_INET, &[(IFA_LOCAL, &[203, 0, 113, 1])]));
        datagram.extend(message(
            RTM_DELADDR,
            AF_INET6,
            &[(IFA_ADDRESS, &v6.octets())],
        ));
        let mut out = Vec::new();
        removed(&datagram, &mut out);
        assert_eq!(out, vec![IpAddr::from(v4), IpAddr::V6(v6)]);
    }

    #[test]
    fn malformed_messages_are_skipped_without_panic() {
        let good = message(RTM_DELADDR, AF_INET, &[(IFA_LOCAL, &[192, 0, 2, 1])]);
        let mut out = Vec::new();
        for cut in 0..good.len() {
            removed(&good[..cut], &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        // An attribute longer than the message, a wrong-sized address, an unknown family.
        let mut bad = message(RTM_DELADDR, AF_INET, &[(IFA_LOCAL, &[192, 0, 2, 1])]);
        let at = 16 + IFADDRMSG_LEN;
        bad[at..at + 2].copy_from_slice(&200u16.to_ne_bytes());
        removed(&bad, &mut out);
        removed(
            &message(RTM_DELADDR, AF_INET, &[(IFA_LOCAL, &[1, 2, 3])]),
            &mut out,
        );
        removed(
            &message(RTM_DELADDR, 7, &[(IFA_LOCAL, &[1, 2, 3, 4])]),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        removed(&good, &mut out);
        assert_eq!(out, vec![IpAddr::from([192, 0, 2, 1])]);
    }
}
