//! Operational logs: `tracing` events on stderr, with the journal's priority prefixes when
//! stderr is the journal.
//!
//! systemd connects a service's stderr to the journal and says so in `JOURNAL_STREAM`
//! (`DEVICE:INODE` of that stream). Then each line starts with its syslog priority as
//! `sd-daemon(3)` defines it (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), which the
//! journal reads as the entry's priority (`SyslogLevelPrefix=yes`, systemd's default), and
//! carries no timestamp of its own (the journal stamps entries). Anywhere else the lines are
//! tracing's usual ones.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogSection;

/// Installs the `tracing` subscriber: stderr, level from `[log] level`, `RUST_LOG` overrides;
/// priority prefixes when stderr is the journal.
pub fn init_logging(log: &LogSection) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if stderr_is_journal() {
        builder
            .with_ansi(false)
            .event_format(Prefixed(tracing_subscriber::fmt::format().without_time()))
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// Whether stderr is the stream `JOURNAL_STREAM` names.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    names_stream(&stream, meta.dev(), meta.ino())
}

/// Whether `JOURNAL_STREAM`'s value `DEVICE:INODE` is the stream with `dev` and `ino`.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The syslog priority of a `tracing` level (`sd-daemon(3)` prefixes).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A line format with the event's `<N>` priority in front.
struct Prefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_is_recognised_by_device_and_inode() {
        assert!(names_stream("25:4711", 25, 4711));
        assert!(!names_stream("25:4712", 25, 4711));
        assert!(!names_stream("26:4711", 25, 4711));
        assert!(!names_stream("254711", 25, 4711));
        assert!(!names_stream("x:y", 25, 4711));
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_start_with_their_priority() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::DEBUG)
            .with_writer(move || out.clone())
            .with_ansi(false)
            .event_format(Prefixed(tracing_subscriber::fmt::format().without_time()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("e");
            tracing::warn!(target: "statewall::alert", "SCAN type=portscan");
            tracing::info!(queue = 0, "started");
            tracing::debug!("d");
        });
        let text = String::from_utf8(buf.0.lock().expect("buffer").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("<3>ERROR "), "{text}");
        assert!(
            lines[1].starts_with("<4> WARN statewall::alert: SCAN type=portscan"),
            "{text}"
        );
        assert!(lines[2].starts_with("<6> INFO "), "{text}");
        assert!(lines[2].ends_with("started queue=0"), "{text}");
        assert!(lines[3].starts_with("<7>DEBUG "), "{text}");
    }
}
