//! The sender thread: a bounded channel in, a backlog, and the connection to the target
//! (Unix datagram, UDP, or TCP with octet counting), reopened with a backoff when it fails.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::format::{format_line, octet_frame, Header};
use crate::alert::Severity;
use crate::config::{Format, SyslogConfig, SyslogConfigError, Target};
use crate::time::Zone;

/// How often the worker asks for the system's time zone again (jiff reads it again at most
/// every 5 minutes): a changed /etc/localtime reaches the lines without a restart.
const ZONE_RECHECK: Duration = Duration::from_secs(60);

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] SyslogConfigError),
    /// The thread could not be started.
    #[error("cannot start the syslog thread: {0}")]
    Spawn(#[source] io::Error),
}

/// Counters of the sender, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogStats {
    /// Lines handed to the socket.
    pub sent: u64,
    /// Events dropped because the channel or the backlog was full.
    pub dropped: u64,
    /// Failed connects and sends (each is retried).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

enum Command {
    Event {
        severity: Severity,
        time: SystemTime,
        body: String,
    },
    Flush(Sender<()>),
}

/// Starts the syslog sender.
pub struct Syslog;

impl Syslog {
    /// Validates `cfg` and starts the sender thread. An unreachable target is not an error:
    /// events wait in the backlog until it comes up.
    pub fn spawn(cfg: SyslogConfig) -> Result<SyslogHandle, SyslogError> {
        let target = cfg.validate()?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue);
        let counters = Arc::new(Counters::default());
        let worker = Worker::new(cfg, target, rx, Arc::clone(&counters));
        thread::Builder::new()
            .name("syslog".to_owned())
            .spawn(move || worker.run())
            .map_err(SyslogError::Spawn)?;
        Ok(SyslogHandle { tx, counters })
    }
}

/// Sends events to the syslog thread. Cheap to clone; the thread stops once every handle is
/// dropped and its backlog is delivered (or delivery fails once more).
#[derive(Clone, Debug)]
pub struct SyslogHandle {
    tx: SyncSender<Command>,
    counters: Arc<Counters>,
}

impl SyslogHandle {
    /// Queues one event; never blocks. When the queue is full the event is dropped and counted.
    pub fn send(&self, severity: Severity, body: String) {
        let cmd = Command::Event {
            severity,
            time: SystemTime::now(),
            body,
        };
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Counters::bump(&self.counters.dropped)
            }
        }
    }

    /// Waits up to `timeout` until everything queued so far is delivered; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done_tx, done_rx) = mpsc::channel();
        let deadline = Instant::now() + timeout;
        let mut cmd = Command::Flush(done_tx);
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => break,
                Err(TrySendError::Full(c)) if Instant::now() < deadline => {
                    cmd = c;
                    thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// The counters so far.
    pub fn stats(&self) -> SyslogStats {
        SyslogStats {
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
        }
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// An open connection to the target.
enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    fn open(target: &Target) -> io::Result<Conn> {
        match target {
            Target::Unix(path) => {
                let sock = UnixDatagram::unbound()?;
                sock.connect(path)?;
                sock.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Conn::Unix(sock))
            }
            Target::Udp(addr) => {
                let dst = resolve(addr)?;
                let bind = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock = UdpSocket::bind(bind)?;
                sock.connect(dst)?;
                Ok(Conn::Udp(sock))
            }
            Target::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(&resolve(addr)?, IO_TIMEOUT)?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                stream.set_nodelay(true)?;
                Ok(Conn::Tcp(stream))
            }
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        match self {
            Conn::Unix(sock) => sock.send(line.as_bytes()).map(drop),
            Conn::Udp(sock) => sock.send(line.as_bytes()).map(drop),
            Conn::Tcp(stream) => stream.write_all(&octet_frame(line)),
        }
    }
}

fn resolve(addr: &str) -> io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")))
}

struct Worker {
    cfg: SyslogConfig,
    target: Target,
    host: String,
    rx: Receiver<Command>,
    counters: Arc<Counters>,
    backlog: VecDeque<String>,
    waiters: Vec<Sender<()>>,
    conn: Option<Conn>,
    backoff: Duration,
    next_try: Instant,
    /// Zone of RFC 3164 timestamps, and when it was looked up.
    zone: Zone,
    zone_checked: Instant,
}

impl Worker {
    fn new(
        cfg: SyslogConfig,
        target: Target,
        rx: Receiver<Command>,
        counters: Arc<Counters>,
    ) -> Self {
        // uname(2), not /proc/sys/kernel/hostname: the unit's ProcSubset=pid hides /proc/sys.
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .trim()
            .to_owned();
        let zone = Zone::system().unwrap_or_else(|e| {
            if cfg.format == Format::Rfc3164 {
                tracing::warn!(
                    error = %e,
                    "no system time zone (TZ, /etc/localtime): RFC 3164 timestamps are UTC"
                );
            }
            Zone::UTC
        });
        Worker {
            cfg,
            target,
            host,
            rx,
            counters,
            backlog: VecDeque::new(),
            waiters: Vec::new(),
            conn: None,
            backoff: BACKOFF_MIN,
            next_try: Instant::now(),
            zone,
            zone_checked: Instant::now(),
        }
    }

    fn run(mut self) {
        loop {
            let wait = if self.backlog.is_empty() {
                Duration::from_secs(3600)
            } else {
                self.next_try.saturating_duration_since(Instant::now())
            };
            let closing = match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    self.accept(cmd);
                    while let Ok(cmd) = self.rx.try_recv() {
                        self.accept(cmd);
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if Instant::now() >= self.next_try {
                self.deliver();
            }
            if self.backlog.is_empty() {
                for w in self.waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if closing {
                if !self.backlog.is_empty() {
                    self.deliver();
                }
                return;
            }
        }
    }

    fn accept(&mut self, cmd: Command) {
        match cmd {
            Command::Event {
                severity,
                time,
                body,
            } => {
                if self.backlog.len() >= self.cfg.queue {
                    self.backlog.pop_front();
                    Counters::bump(&self.counters.dropped);
                }
                if self.zone_checked.elapsed() >= ZONE_RECHECK {
                    // A zone that vanished meanwhile: keep the last one.
                    if let Ok(zone) = Zone::system() {
                        self.zone = zone;
                    }
                    self.zone_checked = Instant::now();
                }
                let line = format_line(&self.header(), severity, time, &body);
                self.backlog.push_back(line);
            }
            Command::Flush(done) => self.waiters.push(done),
        }
    }

    fn header(&self) -> Header<'_> {
        // Local sockets get no host name in RFC 3164 lines, like glibc's syslog(3).
        let local = matches!(self.target, Target::Unix(_));
        let host = (!local || self.cfg.format == Format::Rfc5424).then_some(self.host.as_str());
        Header {
            format: self.cfg.format,
            facility: self.cfg.facility,
            host: host.filter(|h| !h.is_empty()),
            tag: &self.cfg.tag,
            pid: std::process::id(),
            pen: self.cfg.pen,
            zone: &self.zone,
        }
    }

    /// Sends the backlog in order; on failure keeps the rest and schedules a retry.
    fn deliver(&mut self) {
        while let Some(line) = self.backlog.front() {
            let result = match self.conn.as_mut() {
                Some(conn) => conn.send(line),
                None => Conn::open(&self.target).and_then(|mut conn| {
                    let sent = conn.send(line);
                    self.conn = Some(conn);
                    sent
                }),
            };
            match result {
                Ok(()) => {
                    self.backlog.pop_front();
                    Counters::bump(&self.counters.sent);
                    self.backoff = BACKOFF_MIN;
                }
                Err(_) => {
                    Counters::bump(&self.counters.errors);
                    self.conn = None;
                    self.next_try = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Facility;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::path::PathBuf;

    fn temp_socket_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("statewall-syslog-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    fn recv_line(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn unix_datagram_delivery() {
        let path = temp_socket_path("dgram");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let cfg = SyslogConfig {
            target: format!("unix:{}", path.display()),
            ..Default::default()
        };
        let log = Syslog::spawn(cfg).unwrap();
        log.send(Severity::Warning, "SCAN SRC=198.51.100.2".into());
        let line = recv_line(&server);
        assert!(line.starts_with("<36>"), "{line}");
        assert!(
            line.ends_with(&format!(
                " statewall[{}]: SCAN SRC=198.51.100.2",
                std::process::id()
            )),
            "{line}"
        );
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(
            log.stats(),
            SyslogStats {
                sent: 1,
                dropped: 0,
                errors: 0
            }
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn target_down_at_start_then_up_gets_the_queued_lines() {
        let path = temp_socket_path("late");
        let cfg = SyslogConfig {
            target: format!("unix:{}", path.display()),
            ..Default::default()
        };
        let log = Syslog::spawn(cfg).unwrap();
        for i in 0..5 {
            log.send(Severity::Info, format!("EVENT n={i}"));
        }
        assert!(
            !log.flush(Duration::from_millis(300)),
            "nobody listening yet"
        );
        assert!(log.stats().errors >= 1);
        assert_eq!(log.stats().sent, 0);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        for i in 0..5 {
            assert!(recv_line(&server).ends_with(&format!("EVENT n={i}")));
        }
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(log.stats().sent, 5);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn udp_delivery_rfc5424() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let cfg = SyslogConfig {
            target: format!("udp://{}", server.local_addr().unwrap()),
            format: Format::Rfc5424,
            facility: Facility::Local0,
            ..Default::default()
        };
        let log = Syslog::spawn(cfg).unwrap();
        log.send(Severity::Notice, "BLOCK SRC=198.51.100.2 ttl=600".into());
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).unwrap();
        let line = String::from_utf8_lossy(&buf[..n]);
        assert!(line.starts_with("<133>1 "), "{line}");
        assert!(
            line.ends_with(" BLOCK [statewall@32473 SRC=\"198.51.100.2\" ttl=\"600\"] BLOCK SRC=198.51.100.2 ttl=600"),
            "{line}"
        );
    }

    /// Reads one octet-counted frame.
    fn read_frame(r: &mut BufReader<TcpStream>) -> String {
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).unwrap();
        let len: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
        let mut msg = vec![0; len];
        r.read_exact(&mut msg).unwrap();
        String::from_utf8(msg).unwrap()
    }

    #[test]
    fn tcp_octet_counting_queueing_and_reconnect() {
        // Reserve a port, then close it: the target is down at start.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cfg = SyslogConfig {
            target: format!("tcp://{addr}"),
            ..Default::default()
        };
        let log = Syslog::spawn(cfg).unwrap();
        log.send(Severity::Warning, "SCAN n=1".into());
        log.send(Severity::Warning, "SCAN n=2 with\nnewline".into());
        assert!(!log.flush(Duration::from_millis(250)));
        let listener = TcpListener::bind(addr).unwrap();
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut r = BufReader::new(conn);
        assert!(read_frame(&mut r).ends_with("SCAN n=1"));
        assert!(read_frame(&mut r).ends_with("SCAN n=2 with newline"));
        assert!(log.flush(Duration::from_secs(5)));

        // The collector restarts: the sender reconnects (a frame may be lost on the way).
        drop(r);
        let deadline = Instant::now() + Duration::from_secs(10);
        listener.set_nonblocking(true).unwrap();
        let mut n = 3;
        let conn = loop {
            log.send(Severity::Warning, format!("SCAN n={n}"));
            n += 1;
            if let Ok((conn, _)) = listener.accept() {
                break conn;
            }
            assert!(Instant::now() < deadline, "never reconnected");
            thread::sleep(Duration::from_millis(50));
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        log.send(Severity::Warning, "SCAN last=1".into());
        let mut r = BufReader::new(conn);
        loop {
            if read_frame(&mut r).ends_with("SCAN last=1") {
                break;
            }
        }
        assert!(log.stats().errors >= 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let path = temp_socket_path("full");
        let cfg = SyslogConfig {
            target: format!("unix:{}", path.display()),
            queue: 4,
            ..Default::default()
        };
        let log = Syslog::spawn(cfg).unwrap();
        let start = Instant::now();
        for i in 0..1000 {
            log.send(Severity::Info, format!("E n={i}"));
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        let stats = log.stats();
        assert!(stats.dropped >= 1000 - 8, "{stats:?}");
        assert_eq!(stats.sent, 0);
    }
}
