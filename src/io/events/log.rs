//! The JSON event log (`[events] log`): every event as one JSON line, appended to a file by a
//! thread of its own that subscribes to the [`EventHub`] like any reader (so a slow disk
//! loses events, counted in the file as `{"event":"lost",...}`, and never slows the packet
//! path). [`EventLog::reopen`] (on SIGHUP) closes the file and opens the path again, for
//! logrotate's `postrotate` (or use `copytruncate`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::{json, EventHub, Subscription};

/// How long the writer sleeps when no event is waiting.
const IDLE: Duration = Duration::from_millis(50);

/// Mode of a log file statewall creates (the events name addresses: not world-readable).
const MODE: u32 = 0o640;

/// A running event log writer. Dropping it stops the thread after it wrote what was queued.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn open(path: &Path) -> io::Result<BufWriter<File>> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, file))
}

impl EventLog {
    /// Opens `path` (appending; created `0640`) and starts the writer with room for
    /// `capacity` events in its queue.
    pub fn spawn(path: &Path, hub: &Arc<EventHub>, capacity: usize) -> io::Result<EventLog> {
        let out = open(path)?;
        let sub = hub.subscribe(capacity);
        let reopen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("event-log".into())
            .spawn({
                let (path, reopen, stop) =
                    (path.to_path_buf(), Arc::clone(&reopen), Arc::clone(&stop));
                move || write_loop(&path, out, &sub, &reopen, &stop)
            })?;
        Ok(EventLog {
            path: path.to_path_buf(),
            reopen,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the writer to close the file and open the path again (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(
    path: &Path,
    mut out: BufWriter<File>,
    sub: &Subscription,
    reopen: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut failing = false;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut wrote = false;
        let mut result = Ok(());
        let lost = sub.take_lost();
        if lost > 0 {
            result = writeln!(out, "{}", json::lost(lost, SystemTime::now()));
            wrote = true;
        }
        while let Some(ev) = sub.next() {
            if result.is_ok() {
                result = writeln!(out, "{}", json::to_json(&ev));
            }
            wrote = true;
        }
        if wrote {
            result = result.and_then(|()| out.flush());
        }
        match result {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(path = %path.display(), error = %e, "event log write failed");
            }
            Err(_) => {}
        }
        if reopen.swap(false, Ordering::SeqCst) || failing {
            let _ = out.flush();
            match open(path) {
                Ok(f) => {
                    out = f;
                    tracing::info!(path = %path.display(), "event log reopened");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot reopen the event log")
                }
            }
        }
        if stopping {
            return;
        }
        if !wrote {
            std::thread::sleep(IDLE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockEvent;
    use crate::event::Event;

    fn event(n: u8) -> Event {
        let src = std::net::IpAddr::from([198, 51, 100, n]);
        Event::Block(BlockEvent::Unblock {
            src,
            net: ipnet::IpNet::from(src),
        })
    }

    fn wait_for_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            if lines.len() >= n || std::time::Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn events_are_appended_as_json_lines_and_the_file_is_reopened() {
        let dir = std::env::temp_dir().join(format!("statewall-evlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("events.json");
        let rotated = dir.join("events.json.1");
        let _ = std::fs::remove_file(&path);
        let hub = Arc::new(EventHub::new(|_| {}));
        let log = EventLog::spawn(&path, &hub, 64).expect("log");
        hub.publish(&event(1));
        hub.publish(&event(2));
        let lines = wait_for_lines(&path, 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[1]["src"], "198.51.100.2");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, MODE);
        // logrotate: rename, then SIGHUP.
        std::fs::rename(&path, &rotated).expect("rotate");
        log.reopen();
        // The writer opens the path again (creating it) before it writes anything more.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "not reopened");
            std::thread::sleep(Duration::from_millis(10));
        }
        hub.publish(&event(3));
        let lines = wait_for_lines(&path, 1);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["src"], "198.51.100.3");
        assert_eq!(wait_for_lines(&rotated, 2).len(), 2);
        drop(log);
        assert_eq!(hub.stats().subscribers, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
