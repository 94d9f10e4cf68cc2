//! The `[metrics]` and `[events]` sections: the Prometheus listener and the JSON event log
//! (served by [`crate::io::metrics`] and [`crate::io::events`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Address of the `/metrics` listener (`127.0.0.1:9559`); none (the default): off.
    pub listen: Option<SocketAddr>,
}

/// `[events]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// JSON event log: every event as one JSON line appended to this file, reopened on
    /// SIGHUP (logrotate); none (the default): no log.
    pub log: Option<PathBuf>,
    /// Events the log's writer may have waiting before it loses some (counted in the file).
    pub log_queue: usize,
}

impl Default for EventsSection {
    fn default() -> Self {
        EventsSection {
            log: None,
            log_queue: 65_536,
        }
    }
}

impl EventsSection {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1 << 24).contains(&self.log_queue) {
            return Err("[events] log_queue must be 1 to 16777216".into());
        }
        if self.log.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err("[events] log must not be empty (leave it out for no log)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_values_are_checked() {
        assert_eq!(MetricsSection::default().listen, None);
        let e = EventsSection::default();
        assert_eq!((e.log.clone(), e.validate()), (None, Ok(())));
        let zero = EventsSection {
            log_queue: 0,
            ..EventsSection::default()
        };
        assert!(zero.validate().is_err());
    }
}
