//! The control socket: `statewall status|stats|conns|reload|blocks|unblock` talk to the running
//! daemon over a Unix stream socket.
//!
//! - [`protocol`]: the wire format (one JSON line each way, versioned) and the typed data.
//! - [`server`]: [`serve`] binds the socket and answers requests through a [`ControlHandler`]
//!   that the daemon implements over its engine.
//! - [`client`]: [`request`] and the `cli_*` functions behind the subcommands.
//! - [`render`]: the human-readable output.
//!
//! - [`peer`]: the client's credentials (`SO_PEERCRED`), for the log and for what a client
//!   may be shown.
//!
//! # Access control
//!
//! Access is controlled by the file system, as for most Unix control sockets: the socket file
//! is `0600` owned by the daemon's user, or `0660` with group GROUP when `[control] group` is
//! set (the packaged unit runs as user and group `statewall`, so `group = "statewall"` gives
//! the socket the daemon's own group without any chown), in a directory created `0755` (the
//! unit's runtime directory is `0750 statewall:statewall`). `connect(2)` needs write permission
//! on the socket file, so everybody else gets `EACCES`. The socket is bound in a private directory
//! (mode 0700: nobody else can reach it there or replace it by a symlink), given its mode and
//! group there and only then renamed into place, so it never appears under its name with a
//! looser mode, and the process-wide umask is left alone. Every request is attributed to the peer's uid and pid (`SO_PEERCRED`).

pub mod client;
pub mod peer;
pub mod protocol;
pub mod render;
pub mod server;

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use client::{
    cli_blocks, cli_conns, cli_reload, cli_standby, cli_stats, cli_status, cli_takeover,
    cli_unblock, request, request_with_timeout,
};
pub use peer::Peer;
pub use protocol::{
    BlockEntry, ConnEntry, ConnFilter, HaReport, QueueStatus, ReloadFailure, ReloadReport, Request,
    Response, StatsReport, Status, UnblockReport,
};
pub use server::{serve, ControlHandler, ControlServer};

/// Where the daemon listens when nothing else is configured.
pub const DEFAULT_SOCKET: &str = "/run/statewall/control.sock";

/// A control-socket failure, on either side.
#[derive(Debug, Error)]
pub enum ControlError {
    /// Client: nothing at the socket path.
    #[error("statewall is not running (no socket at {})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Client: the socket file exists but nobody listens (the daemon died without cleanup).
    #[error("statewall is not running (stale socket at {}: connection refused)", path.display())]
    Refused {
        /// The socket path.
        path: PathBuf,
    },
    /// Client: the socket file's mode does not let this user connect.
    #[error("permission denied on {}: the control socket is {who}", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
        /// Who may use it: `root-only`, `restricted to user NAME and root`, or either with
        /// `and group NAME`.
        who: String,
    },
    /// Client: the daemon did not answer in time.
    #[error("timed out waiting for statewall on {}", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
    },
    /// Client: the daemon's answer could not be understood.
    #[error("bad response from statewall on {}: {message}", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Server: another daemon answers on the socket.
    #[error("{} is in use: another statewall is running", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Server: the path exists and is not a socket; statewall will not delete it.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Server: `[control] group` names no group in /etc/group.
    #[error("control socket group `{group}` does not exist")]
    UnknownGroup {
        /// The configured group.
        group: String,
    },
    /// Server: the socket cannot be given `[control] group`.
    #[error(
        "cannot give the control socket to group `{group}`: {source} (run statewall with this group as its own group, e.g. the unit's Group=)"
    )]
    Group {
        /// The configured group.
        group: String,
        /// Why.
        source: io::Error,
    },
    /// Any other I/O error; `what` says which step failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step, e.g. `cannot bind`.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl ControlError {
    pub(crate) fn io(what: &'static str, path: &Path, source: io::Error) -> ControlError {
        ControlError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The control socket path for a CLI subcommand: `--socket PATH` wins, then the
/// `[control] socket` of `--config PATH` (with `STATEWALL_*` overrides), then
/// [`DEFAULT_SOCKET`].
pub fn socket_path(
    socket_arg: Option<PathBuf>,
    config_arg: Option<PathBuf>,
) -> Result<PathBuf, String> {
    if let Some(socket) = socket_arg {
        return Ok(socket);
    }
    if let Some(config) = config_arg {
        let settings = crate::config::Settings::load(&config).map_err(|e| e.to_string())?;
        return Ok(settings.control.socket);
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

/// Looks a group up in `group_file` (`/etc/group` format): by name, or a numeric gid as is.
pub(crate) fn resolve_group(group_file: &str, group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Some(gid);
    }
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let gid = fields.nth(1)?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

/// The name of a gid in `group_file`.
pub(crate) fn group_name(group_file: &str, gid: u32) -> Option<String> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let g: u32 = fields.nth(1)?.parse().ok()?;
        (g == gid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GROUPS: &str = "root:x:0:\nadm:x:4:syslog,alice\n# comment\nbroken\nstatewall:x:997:\n";

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(resolve_group(GROUPS, "statewall"), Some(997));
        assert_eq!(resolve_group(GROUPS, "adm"), Some(4));
        assert_eq!(resolve_group(GROUPS, "1234"), Some(1234));
        assert_eq!(resolve_group(GROUPS, "nope"), None);
        assert_eq!(resolve_group(GROUPS, "broken"), None);
        assert_eq!(group_name(GROUPS, 997).as_deref(), Some("statewall"));
        assert_eq!(group_name(GROUPS, 5), None);
    }

    #[test]
    fn socket_path_precedence() {
        let dir = std::env::temp_dir().join(format!("statewall-sockpath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("statewall.toml");
        std::fs::File::create(&config)
            .and_then(|mut f| f.write_all(b"[control]\nsocket = \"/tmp/from-config.sock\"\n"))
            .expect("write config");

        let explicit = Some(PathBuf::from("/tmp/explicit.sock"));
        assert_eq!(
            socket_path(explicit.clone(), Some(config.clone())),
            Ok(PathBuf::from("/tmp/explicit.sock"))
        );
        assert_eq!(
            socket_path(None, Some(config.clone())),
            Ok(PathBuf::from("/tmp/from-config.sock"))
        );
        assert_eq!(socket_path(None, None), Ok(PathBuf::from(DEFAULT_SOCKET)));
        let e = socket_path(None, Some(dir.join("missing.toml"))).unwrap_err();
        assert!(e.contains("missing.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
