//! The server side: [`serve`] binds the control socket and answers each connection in a
//! short-lived thread through the daemon's [`ControlHandler`].
//!
//! A client gets [`SERVER_TIMEOUT`] to send its request (at most [`MAX_REQUEST`] bytes) and
//! [`CLIENT_DEADLINE`] overall, response included (however slowly it reads), so a stuck or
//! malicious client costs one thread for a bounded time, never the daemon. At most
//! [`MAX_CLIENTS`] clients are served at once; more get a `busy` error.
//!
//! Every request is attributed to its peer (`SO_PEERCRED`: uid, gid, pid): requests that change
//! something (`reload`, `unblock`, `kill`, `block`) are logged at info level with the user who
//! ran them. A failed reload's source lines go only to peers that may read the rule files
//! themselves. `conns` is streamed entry by entry instead of being built as one JSON document.
//! `events` is a stream with no deadline: at most [`MAX_EVENT_CLIENTS`] at once (so that
//! commands always find a slot), each with its own bounded queue.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::peer::Peer;
use super::protocol::{
    BlockEntry, BlockReport, ConnEntry, ConnFilter, HaReport, KillReport, ReloadFailure,
    ReloadReport, Request, Response, RuleEntry, StatsReport, Status, UnblockReport,
    DEFAULT_BLOCK_SECS, MAX_REQUEST, SERVER_TIMEOUT, VERSION,
};
use super::{resolve_group, ControlError};

/// Clients served at the same time; more are answered `busy`.
pub const MAX_CLIENTS: usize = 16;

/// Longest a client may keep its slot, from accept to the end of the response.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// Socket mode without a group: its owner (the daemon's user) and root only.
const MODE_ROOT_ONLY: u32 = 0o600;
/// Socket mode with `[control] group`.
const MODE_GROUP: u32 = 0o660;
/// Mode of a socket directory statewall creates.
const MODE_DIR: u32 = 0o755;

/// What the daemon exposes to the control socket. Implemented by the daemon over its engine,
/// rule loader and block list; called from the control threads, concurrently with packet
/// processing.
pub trait ControlHandler: Send + Sync + 'static {
    /// Daemon overview.
    fn status(&self) -> Status;
    /// Engine counters and connections per state.
    fn stats(&self) -> StatsReport;
    /// Live connections matching `filter` (pass `|c| filter.matches(c)` to
    /// `Engine::connections`), with the rule that admitted each.
    fn conns(&self, filter: &ConnFilter) -> Vec<ConnEntry>;
    /// Reloads the rule file; on failure the running rules must stay in use.
    fn reload(&self) -> Result<ReloadReport, ReloadFailure>;
    /// Active auto-blocks.
    fn blocks(&self) -> Vec<BlockEntry>;
    /// Lifts the block on `addr`: `Ok(true)` when one was lifted, `Ok(false)` when `addr` was
    /// not blocked.
    fn unblock(&self, addr: IpAddr) -> Result<bool, String>;
    /// Kills the live connections matching `filter` (never empty: the dispatcher refuses an
    /// empty filter).
    fn kill(&self, filter: &ConnFilter) -> KillReport;
    /// Blocks `net` for `ttl_secs`.
    fn block(&self, net: IpNet, ttl_secs: u64) -> Result<BlockReport, String>;
    /// The rules in force with their hits, then the default policy's.
    fn rules(&self) -> Vec<RuleEntry>;
    /// A new reader of the event stream.
    fn events(&self) -> Result<Box<dyn EventFeed>, String>;
    /// This gateway of a pair took over the addresses.
    fn takeover(&self) -> Result<HaReport, String> {
        Err("this daemon is not one of a pair".into())
    }
    /// This gateway of a pair lost the addresses.
    fn standby(&self) -> Result<HaReport, String> {
        Err("this daemon is not one of a pair".into())
    }
}

/// One reader's side of the event stream: what `statewall events` receives.
pub trait EventFeed: Send {
    /// Appends the events waiting (one JSON object each, no newline), at most `max`, after
    /// a `{"event":"lost",...}` line when some were lost since the last call.
    fn poll(&mut self, out: &mut Vec<String>, max: usize);
}

/// Clients of `statewall events` at the same time (of the [`MAX_CLIENTS`]).
pub const MAX_EVENT_CLIENTS: usize = 8;

/// Clients of `statewall events` now (all servers of the process).
static EVENT_CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// Events written per poll of an event feed at most.
const EVENT_BATCH: usize = 256;
/// How long an events client's thread waits when nothing is queued (it watches for the
/// client hanging up meanwhile).
const EVENT_IDLE: Duration = Duration::from_millis(50);
/// An events client that takes nothing for this long is dropped.
const EVENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers one request of `peer` through `handler` (no I/O). A panicking handler becomes an
/// error response.
pub fn dispatch(handler: &dyn ControlHandler, req: &Request, peer: &Peer) -> Response {
    let answer = catch_unwind(AssertUnwindSafe(|| match req {
        Request::Status => Response::data(&handler.status()),
        Request::Stats => Response::data(&handler.stats()),
        Request::Conns(filter) => Response::data(&conn_entries(handler, filter)),
        Request::Reload => match handler.reload() {
            Ok(report) => Response::data(&report),
            Err(failure) => {
                let details = reload_details(failure.errors, &failure.sources, peer);
                Response::Err {
                    error: failure.message,
                    details,
                }
            }
        },
        Request::Blocks => Response::data(&handler.blocks()),
        Request::Unblock { addr } => match handler.unblock(*addr) {
            Ok(unblocked) => Response::data(&UnblockReport {
                addr: *addr,
                unblocked,
            }),
            Err(e) => Response::error(e),
        },
        Request::Kill(filter) if filter.is_empty() => Response::error(
            "kill needs a filter (src, dst, port, state, proto); `src 0.0.0.0/0` kills every \
             IPv4 connection",
        ),
        Request::Kill(filter) => Response::data(&handler.kill(filter)),
        Request::Block { net, ttl_secs } => {
            match handler.block(net.net(), ttl_secs.unwrap_or(DEFAULT_BLOCK_SECS)) {
                Ok(report) => Response::data(&report),
                Err(e) => Response::error(e),
            }
        }
        Request::Rules => Response::data(&handler.rules()),
        // Streamed by the connection's thread (see `stream_events`); not a one-shot answer.
        Request::Events => Response::error("events are a stream: connect and read the lines"),
        Request::Takeover => match handler.takeover() {
            Ok(report) => Response::data(&report),
            Err(e) => Response::error(e),
        },
        Request::Standby => match handler.standby() {
            Ok(report) => Response::data(&report),
            Err(e) => Response::error(e),
        },
    }));
    answer.unwrap_or_else(|_| {
        tracing::error!(?req, "control handler panicked");
        internal_error()
    })
}

fn internal_error() -> Response {
    Response::error("internal error while handling the request (see the daemon log)")
}

/// The connections matching `filter`, sorted by addresses and ports.
fn conn_entries(handler: &dyn ControlHandler, filter: &ConnFilter) -> Vec<ConnEntry> {
    let mut conns = handler.conns(filter);
    conns.sort_unstable_by(|a, b| {
        (a.src, a.sport, a.dst, a.dport, &a.proto).cmp(&(b.src, b.sport, b.dst, b.dport, &b.proto))
    });
    conns
}

/// A failed reload's error lines for `peer`: in full (with the offending source lines) when the
/// peer may read every file involved, otherwise only each error's first line
/// (`FILE:LINE:COL: error: ...`), so that the socket never shows a file's content to a user
/// who could not read the file.
fn reload_details(errors: Vec<String>, sources: &[PathBuf], peer: &Peer) -> Vec<String> {
    let unreadable: Vec<&PathBuf> = sources.iter().filter(|f| !peer.may_read(f)).collect();
    if unreadable.is_empty() {
        return errors;
    }
    let mut details: Vec<String> = errors
        .iter()
        .map(|e| e.lines().next().unwrap_or_default().to_string())
        .collect();
    let names: Vec<String> = unreadable.iter().map(|f| f.display().to_string()).collect();
    details.push(format!(
        "(source lines omitted: uid {} may not read {})",
        peer.uid,
        names.join(", ")
    ));
    details
}
/// A running control socket. Dropping it (or [`ControlServer::shutdown`]) stops the accept
/// thread and removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of our socket file, so we never remove somebody else's.
    identity: (u64, u64),
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, waits for the accept thread and removes the socket file. Clients being
    /// served finish on their own (bounded by the timeouts).
    pub fn shutdown(mut self) {
        self.stop_and_clean();
    }

    fn stop_and_clean(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(2): shutting down a listening socket makes it fail on Linux;
        // a connection wakes it as well, should the shutdown not (the loop checks `stop`).
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        let _ = UnixStream::connect(&self.path);
        let _ = thread.join();
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove control socket");
                }
            }
            _ => {}
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_and_clean();
    }
}

/// Binds the control socket of `cfg` and serves `handler` on it from a background thread.
///
/// Creates the parent directory (mode 0755) if needed; replaces a stale socket file left by a
/// crashed daemon but refuses to replace a live one or a non-socket file; sets mode 0600
/// (root only), or 0660 and the group when `cfg.group` is set, before the socket appears under
/// its name.
pub fn serve(
    cfg: &crate::config::ControlSection,
    handler: Arc<dyn ControlHandler>,
) -> Result<ControlServer, ControlError> {
    let path = cfg.socket.clone();
    let gid = match &cfg.group {
        None => None,
        Some(group) => {
            let groups = std::fs::read_to_string("/etc/group")
                .map_err(|e| ControlError::io("cannot read", Path::new("/etc/group"), e))?;
            Some(
                resolve_group(&groups, group).ok_or_else(|| ControlError::UnknownGroup {
                    group: group.clone(),
                })?,
            )
        }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(MODE_DIR)
            .create(&dir)
            .and_then(|()| {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(MODE_DIR))
            })
            .map_err(|e| ControlError::io("cannot create directory", &dir, e))?;
    }
    remove_stale(&path)?;

    if let Some(gid) = gid {
        warn_if_group_cannot_reach(&dir, gid, cfg.group.as_deref().unwrap_or_default());
    }

    // Bind in a private directory of our own (mode 0700: nobody else can reach the socket
    // or put a symlink in its place there), give the socket its mode and group there, then
    // rename it into place: it appears under its name with its final permissions.
    let mode = if gid.is_some() {
        MODE_GROUP
    } else {
        MODE_ROOT_ONLY
    };
    let private = PrivateDir::create(&dir)?;
    let tmp = private.path.join("s");
    let bound = UnixListener::bind(&tmp)
        .map_err(|e| ControlError::io("cannot bind", &path, e))
        .and_then(|listener| {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .map_err(|e| ControlError::io("cannot set the mode of", &path, e))?;
            set_group(&tmp, gid).map_err(|e| ControlError::Group {
                group: cfg.group.clone().unwrap_or_default(),
                source: e,
            })?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| ControlError::io("cannot set up", &path, e))?;
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| ControlError::io("cannot stat", &path, e))?;
            if !meta.file_type().is_socket() || meta.mode() & 0o777 != mode {
                return Err(ControlError::io(
                    "unexpected mode or type after binding",
                    &path,
                    io::Error::other(format!("mode {:o}", meta.mode() & 0o7777)),
                ));
            }
            let accept_side = listener
                .try_clone()
                .map_err(|e| ControlError::io("cannot set up", &path, e))?;
            Ok((listener, accept_side, (meta.dev(), meta.ino())))
        });
    drop(private);
    let (listener, accept_side, identity) = bound?;

    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn({
            let stop = Arc::clone(&stop);
            move || accept_loop(accept_side, handler, stop)
        })
        .map_err(|e| {
            let _ = std::fs::remove_file(&path);
            ControlError::io("cannot start the control thread for", &path, e)
        })?;
    tracing::info!(path = %path.display(), mode = format!("{mode:o}"), gid, "control socket listening");
    Ok(ControlServer {
        path,
        identity,
        listener,
        stop,
        thread: Some(thread),
    })
}

/// A directory only this process's user can enter, in which the socket is bound before it is
/// renamed into place; removed (with anything left in it) when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `DIR/.statewall-PID.d` with mode 0700 (a leftover of a dead process with the
    /// same pid is removed first).
    fn create(dir: &Path) -> Result<PrivateDir, ControlError> {
        let path = dir.join(format!(".statewall-{}.d", std::process::id()));
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| ControlError::io("cannot create directory", &path, e))?;
        Ok(PrivateDir { path })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Gives the socket file at `path` the group `gid` without following a symlink, and only when
/// it does not have it already: the file takes the process's group, which under the packaged
/// unit is its `Group=` (a unit whose system call filter forbids chown needs no chown then).
fn set_group(path: &Path, gid: Option<u32>) -> io::Result<()> {
    let Some(gid) = gid else {
        return Ok(());
    };
    let meta = std::fs::symlink_metadata(path)?;
    if meta.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(gid))
}

/// Warns when members of the socket's group cannot reach the socket because of its directory's
/// mode (the packaged unit's runtime directory is `0750 statewall:statewall`).
fn warn_if_group_cannot_reach(dir: &Path, gid: u32, group: &str) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.mode();
    let reachable = mode & 0o001 != 0 || (meta.gid() == gid && mode & 0o010 != 0);
    if !reachable {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            dir_gid = meta.gid(),
            group,
            "members of the control socket's group cannot reach it through this directory; \
             use the daemon's own group (the unit's Group=) as [control] group"
        );
    }
}

/// Removes `path` if it is a socket nobody listens on.
fn remove_stale(path: &Path) -> Result<(), ControlError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ControlError::io("cannot stat", path, e)),
        Ok(m) if !m.file_type().is_socket() => Err(ControlError::NotASocket {
            path: path.to_path_buf(),
        }),
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::AlreadyRunning {
                    path: path.to_path_buf(),
                });
            }
            tracing::info!(path = %path.display(), "removing stale control socket");
            std::fs::remove_file(path).map_err(|e| ControlError::io("cannot remove", path, e))
        }
    }
}

/// Decrements the active-client count when a client thread ends, even by a panic.
struct ClientSlot(Arc<AtomicUsize>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Gives an event reader's place back when its thread ends.
struct EventSlot;

impl Drop for EventSlot {
    fn drop(&mut self) {
        EVENT_CLIENTS.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<dyn ControlHandler>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            active.fetch_sub(1, Ordering::SeqCst);
            let busy = Response::error("statewall is busy with other control clients; retry");
            let _ = stream
                .set_write_timeout(Some(SERVER_TIMEOUT))
                .and_then(|()| stream.write_all(busy.to_line().as_bytes()));
            finish(stream, Duration::from_millis(50));
            continue;
        }
        let slot = ClientSlot(Arc::clone(&active));
        let handler = Arc::clone(&handler);
        let spawned = std::thread::Builder::new()
            .name("control-client".into())
            .spawn(move || {
                let _slot = slot;
                serve_client(stream, &*handler);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control client thread");
        }
    }
    tracing::debug!("control accept loop stopped");
}

/// Why no request could be read.
enum ReadError {
    /// The client closed without sending anything.
    Empty,
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLarge,
    /// Nothing complete within [`SERVER_TIMEOUT`].
    Timeout,
    /// The connection broke.
    Io(io::Error),
}

/// Reads one request line within one overall deadline (so trickling bytes does not extend it).
fn read_request(stream: &mut UnixStream) -> Result<Vec<u8>, ReadError> {
    let deadline = Instant::now() + SERVER_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(ReadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadError::Timeout)
            }
            Err(e) => return Err(ReadError::Io(e)),
        };
        if n == 0 {
            // EOF: a request without its newline is still a request.
            return if buf.is_empty() {
                Err(ReadError::Empty)
            } else {
                Ok(buf)
            };
        }
        let data = &chunk[..n];
        if let Some(end) = data.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&data[..end]);
            return if buf.len() + 1 > MAX_REQUEST {
                Err(ReadError::TooLarge)
            } else {
                Ok(buf)
            };
        }
        buf.extend_from_slice(data);
        if buf.len() >= MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
    }
}

fn serve_client(mut stream: UnixStream, handler: &dyn ControlHandler) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let peer = match Peer::of(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "control client without credentials; refused");
            return;
        }
    };
    let read = read_request(&mut stream);
    let unread_input = matches!(read, Err(ReadError::TooLarge));
    let response = match read {
        Ok(line) => match Request::from_line(&line) {
            Ok(req) => {
                log_request(&req, &peer);
                if let Request::Conns(filter) = &req {
                    let mut out = DeadlineWriter::new(&stream, deadline);
                    if let Err(e) = stream_conns(handler, filter, &mut out) {
                        tracing::debug!(error = %e, "control client conns write failed");
                    }
                    return;
                }
                if req == Request::Events {
                    if let Err(e) = stream_events(handler, &mut stream) {
                        tracing::debug!(error = %e, "events client gone");
                    }
                    return;
                }
                dispatch(handler, &req, &peer)
            }
            Err(e) => {
                tracing::debug!(error = %e, "bad control request");
                Response::error(e.0)
            }
        },
        Err(ReadError::Empty) => return,
        Err(ReadError::Io(e)) => {
            tracing::debug!(error = %e, "control client read failed");
            return;
        }
        Err(ReadError::TooLarge) => {
            Response::error(format!("request too large (limit {MAX_REQUEST} bytes)"))
        }
        Err(ReadError::Timeout) => {
            tracing::debug!("control client sent no complete request in time");
            Response::error("timed out waiting for the request")
        }
    };
    let mut out = DeadlineWriter::new(&stream, deadline);
    let sent = out
        .write_all(response.to_line().as_bytes())
        .and_then(|()| out.flush());
    if let Err(e) = sent {
        tracing::debug!(error = %e, "control client write failed");
    }
    if unread_input {
        finish(stream, Duration::from_millis(200));
    }
}

/// Streams events to a client of `statewall events` until it hangs up (or takes nothing for
/// [`EVENT_WRITE_TIMEOUT`]): the response line, then one event per line, flushed as they
/// come. Its events wait in its own bounded queue (the feed), so a slow client loses events,
/// counted and told, and never slows the packet path.
fn stream_events(handler: &dyn ControlHandler, stream: &mut UnixStream) -> io::Result<()> {
    stream.set_write_timeout(Some(SERVER_TIMEOUT))?;
    if EVENT_CLIENTS.fetch_add(1, Ordering::SeqCst) >= MAX_EVENT_CLIENTS {
        EVENT_CLIENTS.fetch_sub(1, Ordering::SeqCst);
        let busy = Response::error(format!(
            "{MAX_EVENT_CLIENTS} event readers already; retry when one has left"
        ));
        return stream.write_all(busy.to_line().as_bytes());
    }
    let _slot = EventSlot;
    let feed = catch_unwind(AssertUnwindSafe(|| handler.events()))
        .unwrap_or_else(|_| Err("internal error (see the daemon log)".into()));
    stream.set_write_timeout(Some(EVENT_WRITE_TIMEOUT))?;
    let mut feed = match feed {
        Ok(feed) => feed,
        Err(e) => return stream.write_all(Response::error(e).to_line().as_bytes()),
    };
    let hello = Response::data(&serde_json::json!({"stream": "events"}));
    stream.write_all(hello.to_line().as_bytes())?;
    stream.set_read_timeout(Some(EVENT_IDLE))?;
    let mut lines = Vec::new();
    let mut text = String::new();
    let mut scratch = [0u8; 256];
    loop {
        lines.clear();
        feed.poll(&mut lines, EVENT_BATCH);
        if lines.is_empty() {
            // Nothing to send: wait a little, watching for the client to hang up.
            match stream.read(&mut scratch) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        text.clear();
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        stream.write_all(text.as_bytes())?;
    }
}

/// Logs who asked for what: changes at info level (the audit trail), queries at debug level.
fn log_request(req: &Request, peer: &Peer) {
    let changes = matches!(
        req,
        Request::Reload | Request::Unblock { .. } | Request::Kill(_) | Request::Block { .. }
    );
    let user = peer.user_name();
    if changes {
        tracing::info!(uid = peer.uid, user, pid = peer.pid, request = ?req, "control request");
    } else {
        tracing::debug!(uid = peer.uid, user, pid = peer.pid, request = ?req, "control request");
    }
}

/// Writes the `conns` answer one entry at a time: the same line as
/// `Response::data(&entries).to_line()`, without building it in memory.
fn stream_conns(
    handler: &dyn ControlHandler,
    filter: &ConnFilter,
    out: &mut impl Write,
) -> io::Result<()> {
    let Ok(entries) = catch_unwind(AssertUnwindSafe(|| conn_entries(handler, filter))) else {
        tracing::error!("control handler panicked listing connections");
        out.write_all(internal_error().to_line().as_bytes())?;
        return out.flush();
    };
    let mut buf = io::BufWriter::with_capacity(64 * 1024, out);
    write!(buf, "{{\"v\":{VERSION},\"ok\":true,\"data\":[")?;
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            buf.write_all(b",")?;
        }
        serde_json::to_writer(&mut buf, entry).map_err(io::Error::other)?;
    }
    buf.write_all(b"]}\n")?;
    buf.flush()
}

/// A writer whose every write is bounded by one overall deadline: a client that reads slowly
/// cannot hold its slot past [`CLIENT_DEADLINE`].
struct DeadlineWriter<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl<'a> DeadlineWriter<'a> {
    fn new(stream: &'a UnixStream, deadline: Instant) -> Self {
        DeadlineWriter { stream, deadline }
    }
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client deadline passed",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Closes a connection whose request was not read in full. Closing a Unix socket with unread
/// input resets it, and the peer's read then fails before it sees our response; so signal the
/// end of the response and discard what the client still sends, briefly and boundedly.
fn finish(mut stream: UnixStream, patience: Duration) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + patience;
    let mut sink = [0u8; 4096];
    let mut budget = 4 * MAX_REQUEST;
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnInfo;

    struct Panicky;

    impl ControlHandler for Panicky {
        fn status(&self) -> Status {
            panic!("boom")
        }
        fn stats(&self) -> StatsReport {
            StatsReport::default()
        }
        fn conns(&self, _: &ConnFilter) -> Vec<ConnEntry> {
            let c = |port| {
                ConnEntry::from(ConnInfo {
                    proto: "udp".into(),
                    src: IpAddr::from([192, 0, 2, 1]),
                    dst: IpAddr::from([192, 0, 2, 2]),
                    sport: port,
                    dport: 53,
                    state: "REPLIED".into(),
                    expires_in: 30,
                    assured: true,
                    counts: Default::default(),
                    rule: Default::default(),
                    offloaded: false,
                })
            };
            vec![c(3000), c(1000), c(2000)]
        }
        fn reload(&self) -> Result<ReloadReport, ReloadFailure> {
            Err(ReloadFailure {
                message: "rejected".into(),
                errors: vec!["r:1:1: error: a".into(), "r:2:1: error: b".into()],
                sources: Vec::new(),
            })
        }
        fn blocks(&self) -> Vec<BlockEntry> {
            Vec::new()
        }
        fn unblock(&self, _: IpAddr) -> Result<bool, String> {
            Err("no block list".into())
        }
        fn kill(&self, _: &ConnFilter) -> KillReport {
            KillReport { killed: 2, rsts: 4 }
        }
        fn block(&self, net: IpNet, ttl_secs: u64) -> Result<BlockReport, String> {
            Ok(BlockReport { net, ttl_secs })
        }
        fn rules(&self) -> Vec<RuleEntry> {
            Vec::new()
        }
        fn events(&self) -> Result<Box<dyn EventFeed>, String> {
            Err("no events here".into())
        }
    }

    #[test]
    fn kill_needs_a_filter_and_block_a_default_duration() {
        match dispatch(
            &Panicky,
            &Request::Kill(ConnFilter::default()),
            &Peer::root(),
        ) {
            Response::Err { error, .. } => assert!(error.contains("needs a filter"), "{error}"),
            r => panic!("unexpected {r:?}"),
        }
        let filter = ConnFilter::from_args(&["proto", "tcp"]).expect("filter");
        assert_eq!(
            dispatch(&Panicky, &Request::Kill(filter), &Peer::root()),
            Response::Ok(serde_json::json!({"killed": 2, "rsts": 4}))
        );
        let net = "203.0.113.0/24".parse().expect("net");
        assert_eq!(
            dispatch(
                &Panicky,
                &Request::Block {
                    net,
                    ttl_secs: None
                },
                &Peer::root()
            ),
            Response::Ok(
                serde_json::json!({"net": "203.0.113.0/24", "ttl_secs": DEFAULT_BLOCK_SECS})
            )
        );
    }

    #[test]
    fn handler_panic_becomes_an_error_response() {
        match dispatch(&Panicky, &Request::Status, &Peer::root()) {
            Response::Err { error, .. } => assert!(error.contains("internal error"), "{error}"),
            r => panic!("unexpected {r:?}"),
        }
    }

    #[test]
    fn conns_are_sorted() {
        let Response::Ok(data) = dispatch(
            &Panicky,
            &Request::Conns(ConnFilter::default()),
            &Peer::root(),
        ) else {
            panic!("conns failed");
        };
        let ports: Vec<u64> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["sport"].as_u64())
            .collect();
        assert_eq!(ports, [1000, 2000, 3000]);
    }

    #[test]
    fn reload_failure_and_unblock_error_map_to_error_responses() {
        assert_eq!(
            dispatch(&Panicky, &Request::Reload, &Peer::root()),
            Response::Err {
                error: "rejected".into(),
                details: vec!["r:1:1: error: a".into(), "r:2:1: error: b".into()],
            }
        );
        assert_eq!(
            dispatch(
                &Panicky,
                &Request::Unblock {
                    addr: IpAddr::from([192, 0, 2, 1])
                },
                &Peer::root(),
            ),
            Response::error("no block list")
        );
    }

    #[test]
    fn reload_source_lines_only_for_peers_who_may_read_the_files() {
        let dir = std::env::temp_dir().join(format!("statewall-redact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let secret = dir.join("secret.rules");
        std::fs::write(&secret, "alow tcp\n").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let errors = vec![format!(
            "{}:1:1: error: unknown keyword\nalow tcp\n^",
            secret.display()
        )];
        let sources = vec![secret.clone()];
        assert_eq!(
            reload_details(errors.clone(), &sources, &Peer::root()),
            errors
        );
        let nobody = Peer {
            uid: 65534,
            gid: 65534,
            pid: 1,
        };
        let shown = reload_details(errors.clone(), &sources, &nobody);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            shown[0],
            format!("{}:1:1: error: unknown keyword", secret.display())
        );
        assert!(!shown.iter().any(|l| l.contains("alow tcp")), "{shown:?}");
        assert!(shown[1].contains("source lines omitted"), "{shown:?}");
    }
}
