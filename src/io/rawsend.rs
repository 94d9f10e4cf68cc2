//! Raw-socket sender for the packets [`crate::respond`] builds (RSTs, ICMP errors).
//!
//! One IPv4 and one IPv6 `IPPROTO_RAW` socket: the kernel takes our IP header as is (for IPv4
//! `IPPROTO_RAW` implies `IP_HDRINCL`; on Linux the same holds for IPv6) and routes the packet by
//! its destination. `SO_MARK` lets the daemon's own netfilter rules skip these packets so they
//! are not queued back to statewall.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sends complete IP packets through raw sockets. Thread-safe: `send` takes `&self`.
#[derive(Debug)]
pub struct RawSender {
    v4: Socket,
    /// `None` when the host has no IPv6 (the socket family is not supported).
    v6: Option<Socket>,
}

impl RawSender {
    /// Opens the raw sockets (needs `CAP_NET_RAW`) and sets `SO_MARK` to `mark` when given
    /// (needs `CAP_NET_ADMIN`). A host without IPv6 gets a sender that fails IPv6 sends.
    pub fn new(mark: Option<u32>) -> io::Result<RawSender> {
        let v4 = open(Domain::IPV4, mark)?;
        let v6 = match open(Domain::IPV6, mark) {
            Ok(sock) => Some(sock),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => None,
            Err(e) => return Err(e),
        };
        Ok(RawSender { v4, v6 })
    }

    /// Sends `packet` (a complete IPv4 or IPv6 packet) to the destination in its header.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let (sock, dst) = match destination(packet)? {
            IpAddr::V4(dst) => (&self.v4, SocketAddr::from((dst, 0))),
            IpAddr::V6(dst) => {
                let sock = self.v6.as_ref().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::Unsupported, "no IPv6 raw socket")
                })?;
                (sock, SocketAddr::from((dst, 0)))
            }
        };
        let sent = sock.send_to(packet, &SockAddr::from(dst))?;
        if sent != packet.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short raw send"));
        }
        Ok(())
    }
}

fn open(domain: Domain, mark: Option<u32>) -> io::Result<Socket> {
    let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))?;
    if let Some(mark) = mark {
        sock.set_mark(mark)?;
    }
    Ok(sock)
}

/// The destination address in the IP header of `packet`.
fn destination(packet: &[u8]) -> io::Result<IpAddr> {
    let bad = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let d = packet
                .get(16..20)
                .ok_or_else(|| bad("truncated IPv4 header"))?;
            Ok(IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3])))
        }
        Some(6) => {
            let d: [u8; 16] = packet
                .get(24..40)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| bad("truncated IPv6 header"))?;
            Ok(IpAddr::V6(Ipv6Addr::from(d)))
        }
        _ => Err(bad("not an IP packet")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Seq, TcpFlags};
    use crate::respond::{rst_packet, ReplyOptions};
    use crate::verdict::Rst;
    use std::io::Read;
    use std::time::{Duration, Instant};

    #[test]
    fn destination_is_read_from_the_header() {
        let mut v4 = vec![0x45; 20];
        v4[16..20].copy_from_slice(&[203, 0, 113, 2]);
        assert_eq!(
            destination(&v4).unwrap(),
            "203.0.113.2".parse::<IpAddr>().unwrap()
        );
        let mut v6 = vec![0x60; 40];
        v6[24..40].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(
            destination(&v6).unwrap(),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        for bad in [&[][..], &[0x45; 19][..], &[0x60; 39][..], &[0x20; 60][..]] {
            assert_eq!(
                destination(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
    }

    /// Raw sockets need root; skip elsewhere, but never silently in CI.
    fn have_root() -> bool {
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        if !root && std::env::var_os("CI").is_some() {
            panic!("raw socket test needs root and CI is set");
        }
        root
    }

    /// Sends a RST answering a SYN from `lo:sport` to `lo:9` and waits for it on loopback.
    fn rst_reaches_loopback(lo: &str) {
        let v4 = lo.contains('.');
        let domain = if v4 { Domain::IPV4 } else { Domain::IPV6 };
        // A raw TCP socket sees a copy of every TCP segment the host receives (IPv4 with the
        // IP header, IPv6 without).
        let mut sniffer = Socket::new(domain, Type::RAW, Some(Protocol::TCP)).unwrap();
        sniffer
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let sender = RawSender::new(Some(0x5157)).unwrap();
        let sport = 40000 + (std::process::id() % 20000) as u16;
        // The answer to a SYN with sequence number 77 sent from `sport` to port 9.
        let answer = Rst {
            src: lo.parse().unwrap(),
            dst: lo.parse().unwrap(),
            sport: 9,
            dport: sport,
            seq: Seq(0),
            ack: Some(Seq(78)),
        };
        let rst = rst_packet(&answer, &ReplyOptions { ttl: 64, ip_id: 7 }).unwrap();
        sender.send(&rst).unwrap();

        let skip = if v4 { 20 } else { 0 };
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let Ok(n) = sniffer.read(&mut buf) else {
                continue;
            };
            let seg = &buf[skip.min(n)..n];
            if seg.len() >= 20 && u16::from_be_bytes([seg[2], seg[3]]) == sport {
                assert_eq!(u16::from_be_bytes([seg[0], seg[1]]), 9);
                assert_eq!(seg[13] & TcpFlags::RST, TcpFlags::RST);
                assert_eq!(u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]), 78);
                return;
            }
        }
        panic!("the RST never arrived on {lo}");
    }

    #[test]
    fn sends_rsts_to_loopback_v4_and_v6() {
        if !have_root() {
            eprintln!("skipped: not root");
            return;
        }
        rst_reaches_loopback("127.0.0.1");
        rst_reaches_loopback("::1");
    }
}
