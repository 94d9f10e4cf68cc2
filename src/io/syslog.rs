//! Syslog output: RFC 3164 or RFC 5424 lines to `/dev/log`, UDP or TCP (RFC 6587 octet
//! counting), from a background thread so that the packet path never waits.
//!
//! [`SyslogHandle::send`] only puts the event on a bounded channel (dropping and counting it
//! when the channel is full). The worker thread formats the line, keeps a bounded backlog
//! while the target is unreachable (also at startup, which is not an error), and retries with
//! an exponential backoff (100 ms doubling up to 5 s), reconnecting TCP as needed.
//!
//! Delivery is best effort, as syslog is: a UDP datagram lost on the way, or a TCP frame
//! written just before the collector restarted, is gone. Timestamps are UTC.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::alert::{fields, Severity};

/// Line format (`[syslog] format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// BSD syslog: `<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`.
    #[default]
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [statewall@PEN key="v" ...] MSG`.
    Rfc5424,
}

/// Syslog facilities statewall may log under (`[syslog] facility`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    /// Kernel messages (where iptables LOG lines go).
    Kern = 0,
    /// User-level messages.
    User = 1,
    /// System daemons.
    Daemon = 3,
    /// Security/authorization messages: the default, since scan alerts and blocks are security
    /// events and Debian routes `auth` to /var/log/auth.log, where fail2ban and security
    /// tooling already look.
    #[default]
    Auth = 4,
    /// Private security/authorization messages.
    Authpriv = 10,
    /// Local use 0.
    Local0 = 16,
    /// Local use 1.
    Local1 = 17,
    /// Local use 2.
    Local2 = 18,
    /// Local use 3.
    Local3 = 19,
    /// Local use 4.
    Local4 = 20,
    /// Local use 5.
    Local5 = 21,
    /// Local use 6.
    Local6 = 22,
    /// Local use 7.
    Local7 = 23,
}

/// The `[syslog]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// `"unix:/dev/log"` (default), `"udp://HOST:PORT"` or `"tcp://HOST:PORT"`.
    pub target: String,
    /// `"rfc3164"` (default) or `"rfc5424"`.
    pub format: Format,
    /// Facility name (default `"auth"`).
    pub facility: Facility,
    /// Program name / APP-NAME (default `"statewall"`).
    pub tag: String,
    /// IANA private enterprise number for the RFC 5424 SD-ID `statewall@PEN` (default 32473,
    /// the number RFC 5612 reserves for documentation).
    pub pen: u32,
    /// Events held while the target is slow or down (default 1024); more are dropped, counted.
    pub queue: usize,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            target: "unix:/dev/log".to_owned(),
            format: Format::Rfc3164,
            facility: Facility::Auth,
            tag: "statewall".to_owned(),
            pen: 32473,
            queue: 1024,
        }
    }
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A local datagram socket such as `/dev/log`.
    Unix(PathBuf),
    /// `HOST:PORT` over UDP, one line per datagram.
    Udp(String),
    /// `HOST:PORT` over TCP, octet-counted frames.
    Tcp(String),
}

/// An invalid `[syslog]` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syslog.{key}: {problem}")]
pub struct SyslogConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl SyslogConfig {
    /// Checks the configuration and returns the parsed target.
    pub fn validate(&self) -> Result<Target, SyslogConfigError> {
        let err = |key, problem: &str| SyslogConfigError {
            key,
            problem: problem.to_owned(),
        };
        let tag_ok = !self.tag.is_empty()
            && self.tag.len() <= 32
            && self
                .tag
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '[' | ']' | ':'));
        if !tag_ok {
            return Err(err(
                "tag",
                "must be 1 to 32 printable ASCII characters without [ ] :",
            ));
        }
        if self.pen == 0 {
            return Err(err("pen", "must be a private enterprise number above 0"));
        }
        if self.queue == 0 {
            return Err(err("queue", "must be at least 1"));
        }
        parse_target(&self.target).map_err(|problem| SyslogConfigError {
            key: "target",
            problem,
        })
    }
}

fn parse_target(target: &str) -> Result<Target, String> {
    let host_port = |rest: &str| {
        let ok = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if ok {
            Ok(rest.to_owned())
        } else {
            Err(format!("{target:?}: expected HOST:PORT after the scheme"))
        }
    };
    if let Some(path) = target.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{target:?}: expected a socket path after unix:"));
        }
        Ok(Target::Unix(PathBuf::from(path)))
    } else if let Some(rest) = target.strip_prefix("udp://") {
        host_port(rest).map(Target::Udp)
    } else if let Some(rest) = target.strip_prefix("tcp://") {
        host_port(rest).map(Target::Tcp)
    } else {
        Err(format!(
            "{target:?}: expected unix:PATH, udp://HOST:PORT or tcp://HOST:PORT"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Pure formatting
// ---------------------------------------------------------------------------------------------

/// What a line needs besides the event itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Line format.
    pub format: Format,
    /// Facility.
    pub facility: Facility,
    /// Host name, or `None` to leave it out of RFC 3164 lines (local sockets, like glibc).
    pub host: Option<&'a str>,
    /// TAG / APP-NAME.
    pub tag: &'a str,
    /// Process id.
    pub pid: u32,
    /// Enterprise number for the SD-ID.
    pub pen: u32,
}

/// Formats one syslog line (without framing) for `body` at wall-clock `time`.
pub fn format_line(h: &Header<'_>, severity: Severity, time: SystemTime, body: &str) -> String {
    let pri = (h.facility as u8) * 8 + severity.code();
    let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_micros()),
        Err(_) => (0, 0),
    };
    let c = Civil::from_unix(secs);
    match h.format {
        Format::Rfc3164 => {
            let mut line = format!(
                "<{pri}>{} {:2} {:02}:{:02}:{:02} ",
                MONTHS[(c.month - 1) as usize],
                c.day,
                c.hour,
                c.min,
                c.sec
            );
            if let Some(host) = h.host {
                line.push_str(&header_field(host, 255));
                line.push(' ');
            }
            let _ = write!(line, "{}[{}]: {}", h.tag, h.pid, one_line(body));
            line
        }
        Format::Rfc5424 => format!(
            "<{pri}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z {} {} {} {} {} {}",
            c.year,
            c.month,
            c.day,
            c.hour,
            c.min,
            c.sec,
            header_field(h.host.unwrap_or("-"), 255),
            header_field(h.tag, 48),
            h.pid,
            msgid(body),
            structured_data(h.pen, body),
            one_line(body),
        ),
    }
}

/// Frames a line for a TCP stream: RFC 6587 octet counting (`LEN SP MSG`).
pub fn octet_frame(line: &str) -> Vec<u8> {
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    min: u64,
    sec: u64,
}

impl Civil {
    /// Seconds since the Unix epoch to a UTC date (Howard Hinnant's `civil_from_days`).
    fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            min: rem % 3600 / 60,
            sec: rem % 60,
        }
    }
}

/// Control characters (newlines especially) would split the line: replace them.
fn one_line(body: &str) -> String {
    body.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An RFC 5424 header field: printable ASCII only, bounded, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v
    }
}

/// MSGID: the event's leading tag (`SCAN`, `BLOCK`, ...) when it has one.
fn msgid(body: &str) -> String {
    match body.split(' ').next() {
        Some(word) if !word.is_empty() && !word.contains('=') => header_field(word, 32),
        _ => "-".to_owned(),
    }
}

/// `[statewall@PEN key="value" ...]` from the body's key=value pairs, `-` when there are none.
fn structured_data(pen: u32, body: &str) -> String {
    let pairs = fields(body);
    let mut sd = format!("[statewall@{pen}");
    let mut any = false;
    for (key, value) in &pairs {
        let name: String = key
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
            .take(32)
            .collect();
        if name.is_empty() {
            continue;
        }
        any = true;
        let _ = write!(sd, " {name}=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                sd.push('\\');
            }
            sd.push(if c.is_control() { ' ' } else { c });
        }
        sd.push('"');
    }
    sd.push(']');
    if any {
        sd
    } else {
        "-".to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The sender thread
// ---------------------------------------------------------------------------------------------

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
}

impl Worker {
    fn new(
        cfg: SyslogConfig,
        target: Target,
        rx: Receiver<Command>,
        counters: Arc<Counters>,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
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
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;

    /// 2026-11-29T19:05:09.123456Z
    fn when() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_795_979_109_123_456)
    }

    fn header(format: Format, host: Option<&'static str>) -> Header<'static> {
        Header {
            format,
            facility: Facility::Auth,
            host,
            tag: "statewall",
            pid: 42,
            pen: 32473,
        }
    }

    const BODY: &str = "SCAN type=portscan nmap=-sF SRC=198.51.100.2 label=\"a b\" level=2";

    #[test]
    fn rfc3164_lines() {
        let line = format_line(
            &header(Format::Rfc3164, Some("gw")),
            Severity::Warning,
            when(),
            BODY,
        );
        assert_eq!(
            line,
            format!("<36>Nov 29 19:05:09 gw statewall[42]: {BODY}")
        );
        let local = format_line(
            &header(Format::Rfc3164, None),
            Severity::Info,
            when(),
            "x\ny",
        );
        assert_eq!(local, "<38>Nov 29 19:05:09 statewall[42]: x y");
        let early = UNIX_EPOCH + Duration::from_secs(86_400 * 3);
        let line = format_line(&header(Format::Rfc3164, None), Severity::Info, early, "x");
        assert_eq!(line, "<38>Jan  4 00:00:00 statewall[42]: x");
    }

    #[test]
    fn rfc5424_lines_with_structured_data() {
        let line = format_line(
            &header(Format::Rfc5424, Some("gw")),
            Severity::Warning,
            when(),
            BODY,
        );
        assert_eq!(
            line,
            format!(
                "<36>1 2026-11-29T19:05:09.123456Z gw statewall 42 SCAN [statewall@32473 \
                 type=\"portscan\" nmap=\"-sF\" SRC=\"198.51.100.2\" label=\"a b\" level=\"2\"] {BODY}"
            )
        );
        let escaped = structured_data(1, r#"X v="a]\"b\\" w=ok"#);
        assert_eq!(escaped, r#"[statewall@1 v="a\]\"b\\" w="ok"]"#);
        let bare = format_line(
            &header(Format::Rfc5424, None),
            Severity::Notice,
            when(),
            "started",
        );
        assert_eq!(
            bare,
            "<37>1 2026-11-29T19:05:09.123456Z - statewall 42 started - started"
        );
    }

    #[test]
    fn dates_convert() {
        for (secs, y, m, d) in [
            (0, 1970, 1, 1),
            (951_782_400, 2000, 2, 29),
            (4_107_542_400, 2100, 3, 1),
        ] {
            let c = Civil::from_unix(secs);
            assert_eq!((c.year, c.month, c.day), (y, m, d), "{secs}");
        }
    }

    #[test]
    fn octet_counting() {
        assert_eq!(
            octet_frame("<36>1 - - - - - x"),
            b"17 <36>1 - - - - - x".to_vec()
        );
    }

    fn parse(toml: &str) -> Result<SyslogConfig, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .get("syslog")
    }

    #[test]
    fn config_defaults_and_validation() {
        let cfg = parse("[syslog]\ntag = \"statewall\"\n").unwrap();
        assert_eq!(cfg, SyslogConfig::default());
        assert_eq!(cfg.validate().unwrap(), Target::Unix("/dev/log".into()));
        let cfg = parse("[syslog]\ntarget = \"tcp://log.example:601\"\nformat = \"rfc5424\"\nfacility = \"local3\"\n")
            .unwrap();
        assert_eq!(
            cfg.validate().unwrap(),
            Target::Tcp("log.example:601".into())
        );
        assert_eq!((cfg.format, cfg.facility as u8), (Format::Rfc5424, 19));
        assert!(parse("[syslog]\nfacility = \"mail2\"\n")
            .unwrap_err()
            .to_string()
            .contains("mail2"));
        assert!(parse("[syslog]\nport = 514\n")
            .unwrap_err()
            .to_string()
            .contains("port"));
        let check = |cfg: SyslogConfig| cfg.validate().unwrap_err().to_string();
        for target in [
            "udp://:514",
            "udp://host",
            "tcp://h:99999",
            "file:/x",
            "unix:",
        ] {
            let err = check(SyslogConfig {
                target: target.into(),
                ..Default::default()
            });
            assert!(err.starts_with("syslog.target:"), "{err}");
        }
        assert!(check(SyslogConfig {
            tag: "a b".into(),
            ..Default::default()
        })
        .starts_with("syslog.tag:"));
        assert!(check(SyslogConfig {
            queue: 0,
            ..Default::default()
        })
        .starts_with("syslog.queue:"));
        assert!(check(SyslogConfig {
            pen: 0,
            ..Default::default()
        })
        .starts_with("syslog.pen:"));
    }

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
