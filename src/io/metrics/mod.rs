//! Metrics for Prometheus (`[metrics] listen`, off by default): a small HTTP listener on a
//! thread of its own serves `GET /metrics` in the text exposition format ([`render`]), built
//! at each scrape from a [`Snapshot`] the daemon takes of its counters. Nothing on the packet
//! path knows about it.
//!
//! The listener answers one request per connection (`Connection: close`), reads at most
//! [`MAX_REQUEST`] bytes of it, and gives each client [`CLIENT_TIMEOUT`] to send it and take
//! the answer, so a stuck scraper cannot hold it for long.

pub mod render;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::Stats;
use crate::io::events::HubStats;
use crate::io::queue::{KernelQueueStats, QueueStats};

/// Largest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Time a client gets to send its request and to take the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the accept loop looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// Hits of one rule (or of the default policy), for `statewall_rule_hits_total`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleHits {
    /// `FILE:LINE`, or `default`.
    pub rule: String,
    /// `allow`, `drop` or `reject`.
    pub action: String,
    /// The rule's label, empty when it has none.
    pub label: String,
    /// Decisions since the rule set was loaded.
    pub hits: u64,
}

/// What one scrape shows.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The engine's counters.
    pub stats: Stats,
    /// Drops per reason, every reason (zero ones too, so that rates start at 0).
    pub drops: Vec<(&'static str, u64)>,
    /// Connections per state.
    pub states: Vec<(String, u64)>,
    /// Connections per family (IPv4, IPv6).
    pub family_entries: (u64, u64),
    /// `[conntrack] max_entries`.
    pub limit: u64,
    /// Hits per rule of the rule set in force, then the default policy's.
    pub rules: Vec<RuleHits>,
    /// Scan alerts raised.
    pub scan_alerts: u64,
    /// Active blocks.
    pub blocks_active: u64,
    /// statewall's per-queue counters.
    pub queues: Vec<QueueStats>,
    /// The kernel's per-queue counters.
    pub kernel: Vec<KernelQueueStats>,
    /// Reloads that succeeded, and that failed.
    pub reloads: (u64, u64),
    /// The event stream's counters.
    pub events: HubStats,
}

/// Takes a [`Snapshot`] (the daemon's side).
pub trait MetricsSource: Send + Sync {
    /// The counters as they are now.
    fn snapshot(&self) -> Snapshot;
}

/// A running metrics listener; dropping it stops the thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from `source` on a thread.
    pub fn spawn(addr: SocketAddr, source: Arc<dyn MetricsSource>) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new().name("metrics".into()).spawn({
            let stop = Arc::clone(&stop);
            move || accept_loop(&listener, source.as_ref(), &stop)
        })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `listen` said port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, source: &dyn MetricsSource, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = serve(stream, source) {
                    tracing::debug!(error = %e, "metrics client");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// `GET /metrics` (or `HEAD`: the same without the body).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
    /// Not HTTP.
    Malformed,
}

fn parse_request_line(head: &[u8]) -> Asked {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Asked::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Malformed;
    }
    let path = target.split('?').next().unwrap_or_default();
    match method {
        "GET" | "HEAD" if path == "/metrics" => Asked::Metrics {
            head: method == "HEAD",
        },
        "GET" | "HEAD" => Asked::NotFound,
        _ => Asked::BadMethod,
    }
}

fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn serve(mut stream: TcpStream, source: &dyn MetricsSource) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let (status, content_type, body, head_only) = match parse_request_line(&head) {
        Asked::Metrics { head } => match render::render(&source.snapshot()) {
            Ok(text) => ("200 OK", render::CONTENT_TYPE, text, head),
            Err(e) => {
                tracing::warn!(error = %e, "metrics could not be rendered");
                let body = "metrics could not be rendered\n".to_string();
                ("500 Internal Server Error", "text/plain", body, false)
            }
        },
        Asked::NotFound => (
            "404 Not Found",
            "text/plain",
            "statewall serves /metrics\n".to_string(),
            false,
        ),
        Asked::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_string(),
            false,
        ),
        Asked::Malformed => (
            "400 Bad Request",
            "text/plain",
            "bad request\n".to_string(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Asked::Metrics { head: false }
        );
        assert_eq!(
            parse_request_line(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Asked::Metrics { head: true }
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/1.1\r\n\r\n"),
            Asked::NotFound
        );
        assert_eq!(
            parse_request_line(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Asked::BadMethod
        );
        assert_eq!(parse_request_line(b"\x16\x03\x01"), Asked::Malformed);
        assert_eq!(parse_request_line(b""), Asked::Malformed);
    }

    struct Fixed;
    impl MetricsSource for Fixed {
        fn snapshot(&self) -> Snapshot {
            let mut s = Snapshot::default();
            s.stats.entries = 3;
            s.stats.packets = 10;
            s.limit = 1000;
            s.drops = vec![("no_connection", 7), ("blocked", 0)];
            s
        }
    }

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(request.as_bytes()).expect("send");
        let mut text = String::new();
        c.read_to_string(&mut text).expect("read");
        text
    }

    #[test]
    fn serves_metrics_and_nothing_else() {
        let server = MetricsServer::spawn("127.0.0.1:0".parse().expect("addr"), Arc::new(Fixed))
            .expect("bind");
        let text = get(server.addr(), "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(text.contains("\nstatewall_conntrack_entries 3\n"), "{text}");
        assert!(
            text.contains("\nstatewall_conntrack_entries_limit 1000\n"),
            "{text}"
        );
        assert!(
            text.contains("\nstatewall_drops_total{reason=\"no_connection\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE statewall_drops_total counter"),
            "{text}"
        );
        let (_, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("length");
        assert_eq!(length, body.len());
        let missing = get(server.addr(), "GET /other HTTP/1.1\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let head = get(server.addr(), "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head}");
    }
}
