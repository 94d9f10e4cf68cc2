//! The Prometheus text exposition (format 0.0.4) of one [`Snapshot`], through the
//! `prometheus` crate's encoder: every scrape builds a fresh registry from the counters as
//! they are, so nothing is kept twice and no metric can drift from the counter it shows.
//!
//! Names (all prefixed `statewall_`; counters end in `_total`, as `promtool check metrics`
//! wants):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `conntrack_entries`, `conntrack_entries_limit` | gauge | — |
//! | `conntrack_family_entries` | gauge | `family` (`ipv4`, `ipv6`) |
//! | `conntrack_state_entries` | gauge | `state` (`ESTABLISHED`, `UNREPLIED`, ...) |
//! | `conntrack_opened_total`, `conntrack_expired_total`, `conntrack_early_drops_total`, `conntrack_resumed_total` | counter | — |
//! | `packets_total` | counter | — |
//! | `verdicts_total` | counter | `verdict` (`accept`, `drop`) |
//! | `accepted_packets_total` | counter | `kind` (`ignored`, `related`, `fragment`) |
//! | `drops_total` | counter | `reason` (the drop reason names) |
//! | `answers_total`, `answers_limited_total`, `rule_logs_suppressed_total` | counter | — |
//! | `rule_hits_total` | counter | `rule` (`FILE:LINE`, `default`), `action`, `label` |
//! | `scan_alerts_total` | counter | — |
//! | `blocks_active` | gauge | — |
//! | `queue_packets_total` | counter | `queue` |
//! | `queue_errors_total` | counter | `queue`, `kind` (`recv`, `enobufs`, `verdict`, `panic`) |
//! | `kernel_queue_dropped_total` | counter | `queue`, `cause` (`queue_full`, `socket_full`) |
//! | `kernel_queue_waiting` | gauge | `queue` |
//! | `reloads_total` | counter | `result` (`ok`, `failed`) |
//! | `event_subscribers` | gauge | — |
//! | `events_published_total`, `events_lost_total` | counter | — |

use prometheus::core::{AtomicI64, AtomicU64};
use prometheus::core::{
    Collector, GenericCounter, GenericCounterVec, GenericGauge, GenericGaugeVec,
};
use prometheus::{Encoder, Opts, Registry, TextEncoder};

use super::Snapshot;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Counter = GenericCounter<AtomicU64>;
type CounterVec = GenericCounterVec<AtomicU64>;
type Gauge = GenericGauge<AtomicI64>;
type GaugeVec = GenericGaugeVec<AtomicI64>;

/// Collects the metrics of one scrape; a registration error (a name given twice, which the
/// tests rule out) is remembered and reported by [`Builder::finish`].
struct Builder {
    registry: Registry,
    error: Option<prometheus::Error>,
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Builder {
    fn register<C: Collector + Clone + 'static>(&mut self, c: C) -> C {
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            self.error.get_or_insert(e);
        }
        c
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        if let Ok(c) = Counter::with_opts(Opts::new(name, help)) {
            c.inc_by(value);
            self.register(c);
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        if let Ok(g) = Gauge::with_opts(Opts::new(name, help)) {
            g.set(gauge_value(value));
            self.register(g);
        }
    }

    fn counters<'a>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        let Ok(vec) = CounterVec::new(Opts::new(name, help), labels) else {
            return;
        };
        for (values, n) in rows {
            if let Ok(c) = vec.get_metric_with_label_values(&values) {
                c.inc_by(n);
            }
        }
        self.register(vec);
    }

    fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        rows: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        let Ok(vec) = GaugeVec::new(Opts::new(name, help), labels) else {
            return;
        };
        for (values, n) in rows {
            if let Ok(g) = vec.get_metric_with_label_values(&values) {
                g.set(gauge_value(n));
            }
        }
        self.register(vec);
    }

    fn finish(self) -> Result<String, prometheus::Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The exposition of `s`.
pub fn render(s: &Snapshot) -> Result<String, prometheus::Error> {
    let mut b = Builder {
        registry: Registry::new_custom(Some("statewall".into()), None)?,
        error: None,
    };
    let st = &s.stats;
    b.gauge(
        "conntrack_entries",
        "Connections in statewall's table.",
        st.entries,
    );
    b.gauge(
        "conntrack_entries_limit",
        "Most connections the table holds ([conntrack] max_entries).",
        s.limit,
    );
    b.gauges(
        "conntrack_family_entries",
        "Connections in the table per address family.",
        &["family"],
        [
            (vec!["ipv4"], s.family_entries.0),
            (vec!["ipv6"], s.family_entries.1),
        ],
    );
    b.gauges(
        "conntrack_state_entries",
        "Connections in the table per state.",
        &["state"],
        s.states.iter().map(|(k, n)| (vec![k.as_str()], *n)),
    );
    b.counter(
        "conntrack_opened_total",
        "Connections opened.",
        st.new_connections,
    );
    b.counter("conntrack_expired_total", "Entries expired.", st.expired);
    b.counter(
        "conntrack_early_drops_total",
        "Unassured entries evicted because the table was full.",
        st.early_drops,
    );
    b.counter(
        "conntrack_resumed_total",
        "Handshakes evicted from a full table that completed and came back.",
        st.resumed,
    );
    b.counter("packets_total", "Packets judged.", st.packets);
    b.counters(
        "verdicts_total",
        "Verdicts given.",
        &["verdict"],
        [(vec!["accept"], st.accepted), (vec!["drop"], st.dropped)],
    );
    b.counters(
        "accepted_packets_total",
        "Accepted packets of the special kinds: without learning (retransmits, late ACKs), \
         ICMP errors related to a flow, non-first fragments.",
        &["kind"],
        [
            (vec!["ignored"], st.ignored),
            (vec!["related"], st.related),
            (vec!["fragment"], st.fragments),
        ],
    );
    b.counters(
        "drops_total",
        "Packets dropped, per reason.",
        &["reason"],
        s.drops.iter().map(|(r, n)| (vec![*r], *n)),
    );
    b.counter(
        "answers_total",
        "RSTs and ICMP unreachables sent (probe and reject answers).",
        st.answered,
    );
    b.counter(
        "answers_limited_total",
        "Answers suppressed by the [probes] rate limits.",
        st.answers_limited,
    );
    b.counter(
        "rule_logs_suppressed_total",
        "Rule log lines suppressed by their rate limit.",
        st.logs_suppressed,
    );
    b.counters(
        "rule_hits_total",
        "New connections and stateless packets decided per rule (FILE:LINE; `default`: the \
         default policy), since the rule set was loaded.",
        &["rule", "action", "label"],
        s.rules.iter().map(|r| {
            (
                vec![r.rule.as_str(), r.action.as_str(), r.label.as_str()],
                r.hits,
            )
        }),
    );
    b.counter("scan_alerts_total", "Scan alerts raised.", s.scan_alerts);
    b.gauge(
        "blocks_active",
        "Blocked addresses and networks.",
        s.blocks_active,
    );
    let queues: Vec<(String, &crate::io::queue::QueueStats)> =
        s.queues.iter().map(|q| (q.queue.to_string(), q)).collect();
    b.counters(
        "queue_packets_total",
        "Packets received per NFQUEUE.",
        &["queue"],
        queues.iter().map(|(n, q)| (vec![n.as_str()], q.packets)),
    );
    b.counters(
        "queue_errors_total",
        "Queue worker errors: failed receives, ENOBUFS (the kernel lost packets), failed \
         verdicts, caught panics.",
        &["queue", "kind"],
        queues.iter().flat_map(|(n, q)| {
            [
                (vec![n.as_str(), "recv"], q.recv_errors),
                (vec![n.as_str(), "enobufs"], q.enobufs),
                (vec![n.as_str(), "verdict"], q.verdict_errors),
                (vec![n.as_str(), "panic"], q.panics),
            ]
        }),
    );
    let kernel: Vec<(String, &crate::io::queue::KernelQueueStats)> =
        s.kernel.iter().map(|k| (k.queue.to_string(), k)).collect();
    b.counters(
        "kernel_queue_dropped_total",
        "Packets the kernel dropped per queue: the queue was full, or the socket buffer.",
        &["queue", "cause"],
        kernel.iter().flat_map(|(n, k)| {
            [
                (vec![n.as_str(), "queue_full"], k.queue_dropped),
                (vec![n.as_str(), "socket_full"], k.user_dropped),
            ]
        }),
    );
    b.gauges(
        "kernel_queue_waiting",
        "Packets waiting in the kernel for a verdict, per queue.",
        &["queue"],
        kernel.iter().map(|(n, k)| (vec![n.as_str()], k.waiting)),
    );
    b.counters(
        "reloads_total",
        "Rule reloads (SIGHUP or `statewall reload`), per result.",
        &["result"],
        [(vec!["ok"], s.reloads.0), (vec!["failed"], s.reloads.1)],
    );
    b.gauge(
        "event_subscribers",
        "Readers of the event stream (`statewall events`, the event log).",
        s.events.subscribers,
    );
    b.counter(
        "events_published_total",
        "Events handed to the event stream's readers.",
        s.events.published,
    );
    b.counter(
        "events_lost_total",
        "Events a slow reader of the stream lost (one per reader and event).",
        s.events.lost,
    );
    b.finish()
}
