//! The client side: [`request`] sends one command, and the `cli_*` functions behind
//! `statewall status|stats|conns|reload|blocks|unblock` print its answer.
//!
//! Exit codes of the `cli_*` functions: 0 done, 1 the daemon refused the command (e.g. a
//! rejected rule file), 2 the daemon could not be reached or answered nonsense.
//!
//! With `--json`, a success prints the response's `data` (pretty JSON) on stdout; a refusal
//! prints the whole response (`{"v":1,"ok":false,"error":...,"details":[...]}`) on stdout.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::protocol::{
    AddrMatch, BlockEntry, BlockReport, ConnEntry, ConnFilter, HaReport, KillReport, ReloadReport,
    Request, Response, RuleEntry, StatsReport, Status, UnblockReport,
};
use super::{group_name, render, ControlError};

/// How long the client waits for the daemon (a reload or a large listing can take a while).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response the client accepts (a listing of millions of connections fits).
const MAX_RESPONSE: u64 = 1 << 30;

/// Sends `req` to the daemon on `socket` and returns its answer, waiting up to
/// [`CLIENT_TIMEOUT`].
pub fn request(socket: &Path, req: &Request) -> Result<Response, ControlError> {
    request_with_timeout(socket, req, CLIENT_TIMEOUT)
}

/// Like [`request`] with an explicit timeout for each of sending and receiving.
pub fn request_with_timeout(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| connect_error(socket, e))?;
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ControlError::Timeout {
            path: socket.to_path_buf(),
        },
        _ => ControlError::io("cannot talk to statewall on", socket, e),
    };
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(io_err)?;
    stream.write_all(req.to_line().as_bytes()).map_err(io_err)?;
    // Tell the server the request is complete; it answers on the first newline anyway.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    if let Err(e) = (&mut stream).take(MAX_RESPONSE).read_to_end(&mut buf) {
        // A complete response line before a reset still counts.
        if !buf.contains(&b'\n') {
            return Err(io_err(e));
        }
    }
    let protocol = |message: String| ControlError::Protocol {
        path: socket.to_path_buf(),
        message,
    };
    if buf.is_empty() {
        return Err(protocol("connection closed without a response".into()));
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    Response::from_line(line).map_err(protocol)
}

/// Maps a `connect(2)` failure to an error an admin can act on.
fn connect_error(socket: &Path, e: io::Error) -> ControlError {
    let path = socket.to_path_buf();
    match e.kind() {
        io::ErrorKind::NotFound => ControlError::NotRunning { path },
        io::ErrorKind::ConnectionRefused => ControlError::Refused { path },
        io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            who: who_may_connect(socket),
            path,
        },
        _ => ControlError::io("cannot connect to", socket, e),
    }
}

/// Describes the socket's access rule from its owner group and mode.
fn who_may_connect(socket: &Path) -> String {
    let Ok(meta) = std::fs::metadata(socket) else {
        return "not accessible to this user (cannot read its directory)".into();
    };
    let owner = if meta.uid() == 0 {
        "root".to_string()
    } else {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let name = passwd.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == meta.uid().to_string()).then(|| name.to_string())
        });
        format!(
            "user {} and root",
            name.unwrap_or_else(|| meta.uid().to_string())
        )
    };
    if meta.mode() & 0o060 == 0o060 && meta.gid() != 0 {
        let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let group = group_name(&groups, meta.gid()).unwrap_or_else(|| meta.gid().to_string());
        format!("restricted to {owner} and group {group}")
    } else if meta.uid() == 0 {
        "root-only".into()
    } else {
        format!("restricted to {owner}")
    }
}

/// The subcommand name of a request, for messages.
fn command_name(req: &Request) -> &'static str {
    match req {
        Request::Status => "status",
        Request::Stats => "stats",
        Request::Conns(_) => "conns",
        Request::Reload => "reload",
        Request::Blocks => "blocks",
        Request::Unblock { .. } => "unblock",
        Request::Kill(_) => "kill",
        Request::Block { .. } => "block",
        Request::Rules => "rules",
        Request::Events => "events",
        Request::Takeover => "takeover",
        Request::Standby => "standby",
    }
}

fn decode<T: DeserializeOwned>(data: Value) -> Result<T, String> {
    serde_json::from_value(data).map_err(|e| format!("unexpected response data: {e}"))
}

/// Human text of a successful response: (stdout, stderr).
fn render_ok(req: &Request, data: Value, verbose: bool) -> Result<(String, String), String> {
    Ok(match req {
        Request::Status => (render::status(&decode::<Status>(data)?), String::new()),
        Request::Stats => (render::stats(&decode::<StatsReport>(data)?), String::new()),
        Request::Conns(_) => {
            let list: Vec<ConnEntry> = decode(data)?;
            (render::conns(&list), render::conns_summary(list.len()))
        }
        Request::Reload => (
            render::reload_ok(&decode::<ReloadReport>(data)?),
            String::new(),
        ),
        Request::Blocks => (
            render::blocks(&decode::<Vec<BlockEntry>>(data)?),
            String::new(),
        ),
        Request::Unblock { .. } => (
            render::unblock(&decode::<UnblockReport>(data)?),
            String::new(),
        ),
        Request::Kill(_) => (render::kill(&decode::<KillReport>(data)?), String::new()),
        Request::Block { .. } => (render::block(&decode::<BlockReport>(data)?), String::new()),
        Request::Rules => (
            render::rules(&decode::<Vec<RuleEntry>>(data)?, verbose),
            String::new(),
        ),
        // Streams are read by `cli_events`; a one-shot answer has nothing to show.
        Request::Events => (String::new(), String::new()),
        Request::Takeover | Request::Standby => {
            (render::ha(&decode::<HaReport>(data)?), String::new())
        }
    })
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Runs one subcommand against `socket`, printing to `out` and `err`; returns the exit code
/// (0 done, 1 refused by the daemon, 2 daemon unreachable or answer not understood).
pub fn cli_run(
    socket: &Path,
    req: &Request,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    cli_run_verbose(socket, req, json, false, out, err)
}

/// [`cli_run`] with the verbose rendering (`rules -v`).
pub fn cli_run_verbose(
    socket: &Path,
    req: &Request,
    json: bool,
    verbose: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    // Output errors (a closed pipe) are ignored: the exit code still tells the outcome.
    match request(socket, req) {
        Err(e) => {
            let _ = writeln!(err, "statewall: {e}");
            2
        }
        Ok(resp @ Response::Err { .. }) => {
            if json {
                let _ = out.write_all(pretty(&resp.to_value()).as_bytes());
            } else if let Response::Err { error, details } = &resp {
                let text = render::failure(command_name(req), error, details);
                let _ = err.write_all(text.as_bytes());
            }
            1
        }
        Ok(Response::Ok(data)) if json => {
            let _ = out.write_all(pretty(&data).as_bytes());
            0
        }
        Ok(Response::Ok(data)) => match render_ok(req, data, verbose) {
            Ok((text, note)) => {
                let _ = out.write_all(text.as_bytes());
                let _ = err.write_all(note.as_bytes());
                0
            }
            Err(e) => {
                let _ = writeln!(
                    err,
                    "statewall: bad response from {}: {e}",
                    socket.display()
                );
                2
            }
        },
    }
}

fn cli_stdio(socket: &Path, req: &Request, json: bool) -> i32 {
    cli_run(
        socket,
        req,
        json,
        &mut io::stdout().lock(),
        &mut io::stderr(),
    )
}

/// `statewall status [--json]`.
pub fn cli_status(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Status, json)
}

/// `statewall stats [--json]`.
pub fn cli_stats(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Stats, json)
}

/// `statewall conns [src A] [dst A] [port P] [state S] [--json]`; parse the words with
/// [`ConnFilter::from_args`].
pub fn cli_conns(socket: &Path, filter: &ConnFilter, json: bool) -> i32 {
    cli_stdio(socket, &Request::Conns(filter.clone()), json)
}

/// `statewall reload [--json]`: on a rejected rule file prints every error and returns 1.
pub fn cli_reload(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Reload, json)
}

/// `statewall blocks [--json]`.
pub fn cli_blocks(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Blocks, json)
}

/// `statewall unblock ADDR [--json]`: 0 also when the address was not blocked (it says so).
pub fn cli_unblock(socket: &Path, addr: IpAddr, json: bool) -> i32 {
    cli_stdio(socket, &Request::Unblock { addr }, json)
}

/// `statewall kill FILTER... [--json]`: refused (exit 1) without a filter.
pub fn cli_kill(socket: &Path, filter: &ConnFilter, json: bool) -> i32 {
    cli_stdio(socket, &Request::Kill(filter.clone()), json)
}

/// `statewall block ADDR[/LEN] [--ttl SECS] [--json]`.
pub fn cli_block(socket: &Path, net: AddrMatch, ttl_secs: Option<u64>, json: bool) -> i32 {
    cli_stdio(socket, &Request::Block { net, ttl_secs }, json)
}

/// `statewall rules [-v] [--json]`.
pub fn cli_rules(socket: &Path, verbose: bool, json: bool) -> i32 {
    cli_run_verbose(
        socket,
        &Request::Rules,
        json,
        verbose,
        &mut io::stdout().lock(),
        &mut io::stderr(),
    )
}

/// `statewall events [--json]`: prints events as they come (one JSON object per line with
/// `--json`, else one line of text each), flushed per line, until the daemon goes away or the
/// output is closed. Exit code 0 when the daemon ended the stream, 1 when it refused it, 2
/// when it could not be reached.
pub fn cli_events(socket: &Path, json: bool) -> i32 {
    events_to(socket, json, &mut io::stdout().lock(), &mut io::stderr())
}

/// [`cli_events`] writing to `out` and `err`.
pub fn events_to(socket: &Path, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    use std::io::BufRead;
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "statewall: {}", connect_error(socket, e));
            return 2;
        }
    };
    let sent = stream
        .set_write_timeout(Some(CLIENT_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(CLIENT_TIMEOUT)))
        .and_then(|()| stream.write_all(Request::Events.to_line().as_bytes()));
    if let Err(e) = sent {
        let _ = writeln!(
            err,
            "statewall: cannot talk to statewall on {}: {e}",
            socket.display()
        );
        return 2;
    }
    let mut lines = io::BufReader::new(stream);
    let mut hello = String::new();
    if let Err(e) = lines.read_line(&mut hello) {
        let _ = writeln!(err, "statewall: no answer from {}: {e}", socket.display());
        return 2;
    }
    match Response::from_line(hello.as_bytes()) {
        Ok(Response::Ok(_)) => {}
        Ok(Response::Err { error, details }) => {
            let _ = err.write_all(render::failure("events", &error, &details).as_bytes());
            return 1;
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "statewall: bad response from {}: {e}",
                socket.display()
            );
            return 2;
        }
    }
    // Events come when they happen: no timeout from here on.
    let _ = lines.get_ref().set_read_timeout(None);
    for line in lines.lines() {
        let Ok(line) = line else {
            break;
        };
        let text = if json {
            line
        } else {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => render::event(&v),
                Err(_) => line,
            }
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            // The output was closed (`| head`): done.
            return 0;
        }
    }
    0
}

/// `statewall takeover [--json]` (keepalived's MASTER notification runs it).
pub fn cli_takeover(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Takeover, json)
}

/// `statewall standby [--json]` (keepalived's BACKUP, FAULT and STOP notifications run it).
pub fn cli_standby(socket: &Path, json: bool) -> i32 {
    cli_stdio(socket, &Request::Standby, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_socket_says_not_running() {
        let path = std::env::temp_dir().join("statewall-no-such-dir/control.sock");
        let e = request(&path, &Request::Status).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("statewall is not running (no socket at {})", path.display())
        );
        let mut out = Vec::new();
        let mut err = Vec::new();
        assert_eq!(
            cli_run(&path, &Request::Status, false, &mut out, &mut err),
            2
        );
        assert!(out.is_empty());
        assert!(String::from_utf8_lossy(&err).contains("is not running"));
    }

    #[test]
    fn stale_socket_says_refused() {
        let dir = std::env::temp_dir().join(format!("statewall-stale-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let e = request(&path, &Request::Status).unwrap_err().to_string();
        assert!(e.contains("stale socket"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
