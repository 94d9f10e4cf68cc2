//! Is the daemon well? The watchdog pings only while every queue worker beats, and the kernel's
//! loss counters (queue full, socket buffer full, `ENOBUFS`) are watched and warned about.

use std::time::{Duration, Instant};

use crate::io::queue::{KernelQueueStats, QueueCounters};

/// A worker silent for this long is considered dead or stuck: the watchdog pings stop.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// At most one loss warning per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The first worker silent for longer than `stale` at `now` (time since the daemon's start),
/// with how long it has been silent.
pub fn silent_worker(
    counters: &[(u16, std::sync::Arc<QueueCounters>)],
    now: Duration,
    stale: Duration,
) -> Option<(u16, Duration)> {
    counters
        .iter()
        .map(|(n, c)| (*n, c.silent_for(now)))
        .find(|(_, silent)| *silent > stale)
}

/// Packets lost before statewall saw them, as totals of the kernel's and the workers'
/// counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// The kernel queue was full (`[queue] max_len`).
    pub queue_dropped: u64,
    /// The socket buffer was full (`[queue] recv_buffer`).
    pub user_dropped: u64,
    /// `ENOBUFS` reports received by the workers.
    pub enobufs: u64,
}

impl Losses {
    /// Totals of `kernel` and the workers' `counters`.
    pub fn read(
        kernel: &[KernelQueueStats],
        counters: &[(u16, std::sync::Arc<QueueCounters>)],
    ) -> Losses {
        Losses {
            queue_dropped: kernel.iter().map(|k| k.queue_dropped).sum(),
            user_dropped: kernel.iter().map(|k| k.user_dropped).sum(),
            enobufs: counters
                .iter()
                .map(|(_, c)| c.enobufs.load(std::sync::atomic::Ordering::Relaxed))
                .sum(),
        }
    }
}

/// Warns (rate-limited) when the loss counters rise.
#[derive(Debug, Default)]
pub struct LossWatch {
    /// The counters at the last warning (or at the start).
    reported: Losses,
    last_warning: Option<Instant>,
}

impl LossWatch {
    /// A watch starting from `now_losses` (what happened before, e.g. under an earlier
    /// process, is not this run's to report).
    pub fn new(now_losses: Losses) -> LossWatch {
        LossWatch {
            reported: now_losses,
            last_warning: None,
        }
    }

    /// Compares `current` with what was last reported; returns the increase to warn about,
    /// at most once per [`WARN_EVERY`] (increases in between are summed into the next one).
    pub fn check(&mut self, current: Losses, now: Instant) -> Option<Losses> {
        let delta = Losses {
            queue_dropped: current
                .queue_dropped
                .saturating_sub(self.reported.queue_dropped),
            user_dropped: current
                .user_dropped
                .saturating_sub(self.reported.user_dropped),
            enobufs: current.enobufs.saturating_sub(self.reported.enobufs),
        };
        if delta == Losses::default() {
            return None;
        }
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return None;
        }
        self.reported = current;
        self.last_warning = Some(now);
        Some(delta)
    }
}

/// Logs a loss warning with what to do about it.
pub fn warn_losses(delta: Losses) {
    tracing::warn!(
        queue_dropped = delta.queue_dropped,
        user_dropped = delta.user_dropped,
        enobufs = delta.enobufs,
        "the kernel dropped queued packets: statewall does not keep up (more [queue] count, \
         a larger [queue] max_len or recv_buffer help)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_silent_worker_is_found_and_a_beating_one_is_alive() {
        let a = Arc::new(QueueCounters::default());
        let b = Arc::new(QueueCounters::default());
        a.beat(Duration::from_secs(9));
        b.beat(Duration::from_secs(2));
        let c = vec![(0, Arc::clone(&a)), (1, Arc::clone(&b))];
        let now = Duration::from_secs(10);
        assert_eq!(
            silent_worker(&c, now, STALE_AFTER),
            Some((1, Duration::from_secs(8)))
        );
        // An idle worker beats whenever its receive times out.
        b.beat(now - crate::io::queue::HEARTBEAT);
        assert_eq!(silent_worker(&c, now, STALE_AFTER), None);
    }

    #[test]
    fn losses_are_warned_about_once_per_interval_and_summed() {
        let t0 = Instant::now();
        let mut w = LossWatch::new(Losses {
            queue_dropped: 5,
            ..Losses::default()
        });
        assert_eq!(
            w.check(
                Losses {
                    queue_dropped: 5,
                    ..Default::default()
                },
                t0
            ),
            None
        );
        let first = w.check(
            Losses {
                queue_dropped: 7,
                user_dropped: 1,
                enobufs: 0,
            },
            t0,
        );
        assert_eq!(
            first,
            Some(Losses {
                queue_dropped: 2,
                user_dropped: 1,
                enobufs: 0
            })
        );
        let later = Losses {
            queue_dropped: 9,
            user_dropped: 1,
            enobufs: 3,
        };
        assert_eq!(w.check(later, t0 + Duration::from_secs(1)), None);
        assert_eq!(
            w.check(later, t0 + WARN_EVERY),
            Some(Losses {
                queue_dropped: 2,
                user_dropped: 0,
                enobufs: 3
            })
        );
    }
}
