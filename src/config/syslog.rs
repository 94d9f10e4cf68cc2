//! The `[syslog]` section: where alert and event lines go, in which format, under which
//! facility (the sender is [`crate::io::syslog`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::engine::DropLogConfig;
use crate::ratelimit::Rate;
use crate::verdict::DropReason;

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

/// The drop reasons logged by default: policy drops and rejects, and every out-of-state
/// probe (an ACK or RST of no connection, and the stealth shapes nmap sends).
pub const DEFAULT_DROPS: [DropReason; 9] = [
    DropReason::PolicyDrop,
    DropReason::PolicyReject,
    DropReason::NoConnection,
    DropReason::TcpNull,
    DropReason::TcpXmas,
    DropReason::TcpFinNoAck,
    DropReason::TcpSynFin,
    DropReason::TcpSynRst,
    DropReason::TcpBadFlags,
];

/// The `[syslog]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// Drop reasons whose packets get a drop (or reject) line (default [`DEFAULT_DROPS`]).
    pub drops: Vec<DropReason>,
    /// Text before `IN=` in drop lines, like `--log-prefix` (default `"DROP "`).
    pub drop_prefix: String,
    /// Text before `IN=` in reject lines (`policy_reject`; default `"REJECT "`).
    pub reject_prefix: String,
    /// Drop lines per second, all sources together (default `"200/s"`).
    pub drop_rate: Rate,
    /// Burst of drop lines, all sources together (default 1000).
    pub drop_burst: u32,
    /// Drop lines per second from one source group, /24 or /64 (default `"20/s"`).
    pub drop_source_rate: Rate,
    /// Burst of drop lines from one source group (default 400).
    pub drop_source_burst: u32,
}

impl SyslogConfig {
    /// The engine's side of the drop lines: which reasons, which limits.
    pub fn drop_log(&self) -> DropLogConfig {
        DropLogConfig {
            reasons: self.drops.clone(),
            rate: self.drop_rate,
            burst: self.drop_burst,
            source_rate: self.drop_source_rate,
            source_burst: self.drop_source_burst,
            ..DropLogConfig::default()
        }
    }
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
            drops: DEFAULT_DROPS.to_vec(),
            drop_prefix: "DROP ".to_owned(),
            reject_prefix: "REJECT ".to_owned(),
            drop_rate: Rate::per_sec(200.0),
            drop_burst: 1000,
            drop_source_rate: Rate::per_sec(20.0),
            drop_source_burst: 400,
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
        for (key, prefix) in [
            ("drop_prefix", &self.drop_prefix),
            ("reject_prefix", &self.reject_prefix),
        ] {
            if prefix.len() > 64 || prefix.contains("IN=") || prefix.chars().any(char::is_control) {
                return Err(err(
                    key,
                    "must be at most 64 bytes, without control characters or \"IN=\"",
                ));
            }
        }
        for (key, rate) in [
            ("drop_rate", self.drop_rate),
            ("drop_source_rate", self.drop_source_rate),
        ] {
            if rate.as_per_sec() <= 0.0 {
                return Err(err(
                    key,
                    "must be greater than 0 (drops = [] logs no drops)",
                ));
            }
        }
        for (key, burst) in [
            ("drop_burst", self.drop_burst),
            ("drop_source_burst", self.drop_source_burst),
        ] {
            if burst == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if let Some(r) = self
            .drops
            .iter()
            .find(|r| r.name().starts_with("malformed_"))
        {
            return Err(SyslogConfigError {
                key: "drops",
                problem: format!("{r}: a packet that does not decode has no fields to log"),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn drop_line_keys() {
        let cfg = parse(
            "[syslog]\ndrops = [\"no_connection\", \"blocked\"]\ndrop_prefix = \"sw: \"\n\
             drop_source_rate = \"5/s\"\ndrop_source_burst = 100\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let log = cfg.drop_log();
        assert_eq!(
            log.reasons,
            vec![DropReason::NoConnection, DropReason::Blocked]
        );
        assert_eq!(
            (log.source_rate, log.source_burst),
            (Rate::per_sec(5.0), 100)
        );
        assert_eq!((log.rate, log.burst), (Rate::per_sec(200.0), 1000));
        assert_eq!(cfg.drop_prefix, "sw: ");
        // Unknown reasons are refused by name; the default is the documented list.
        let err = parse("[syslog]\ndrops = [\"no_such\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such"), "{err}");
        assert_eq!(SyslogConfig::default().drop_log().reasons, DEFAULT_DROPS);
        let check = |cfg: SyslogConfig| cfg.validate().unwrap_err().to_string();
        let err = check(SyslogConfig {
            drops: vec![DropReason::MalformedTcp],
            ..Default::default()
        });
        assert!(err.starts_with("syslog.drops: malformed_tcp"), "{err}");
        for prefix in ["x IN=", "a\nb", &"p".repeat(65)] {
            let err = check(SyslogConfig {
                reject_prefix: prefix.into(),
                ..Default::default()
            });
            assert!(err.starts_with("syslog.reject_prefix:"), "{err}");
        }
        let err = check(SyslogConfig {
            drop_burst: 0,
            ..Default::default()
        });
        assert!(err.starts_with("syslog.drop_burst:"), "{err}");
        let err = check(SyslogConfig {
            drop_rate: Rate::per_sec(0.0),
            ..Default::default()
        });
        assert!(err.starts_with("syslog.drop_rate:"), "{err}");
        // [] is fine: no drop lines at all.
        let cfg = parse("[syslog]\ndrops = []\n").unwrap();
        cfg.validate().unwrap();
        assert!(cfg.drop_log().reasons.is_empty());
    }
}
