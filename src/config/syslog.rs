//! The `[syslog]` section: where alert and event lines go, in which format, under which
//! facility (the sender is [`crate::io::syslog`]).

use std::path::PathBuf;

use serde::Deserialize;

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
}
