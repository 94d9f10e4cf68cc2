//! NFQUEUE workers: one thread and one netlink queue per queue number.
//!
//! Each worker receives a packet, hands it to [`Engine::process`], performs the decision's
//! actions and sends the verdict. The `nfq` crate defaults a received message to Accept, so
//! the verdict is always set explicitly. Nothing a packet contains can stop a worker: the engine
//! turns undecodable packets into counted drops, a panic inside the engine is caught, counted
//! and answered with a drop, and a panic while performing the actions (answers, log lines) is
//! caught and counted too, the verdict standing.
//!
//! System calls are batched ([`Batching`], `[queue] recv_batch`, `verdict_batch`,
//! `verdict_delay_us`): one `recvmmsg` takes every packet already waiting (up to
//! `recv_batch`), and verdicts are held and sent several per `sendto` — runs of accepts merged
//! into one `NFQNL_MSG_VERDICT_BATCH` by the patched `nfq` — once `verdict_batch` are held,
//! once the oldest has waited `verdict_delay_us`, or as soon as no packet is waiting (before a
//! receive would block), so no packet waits for the next one. The per-packet work
//! ([`Judge`]) allocates nothing.
//!
//! Every turn of a worker's loop records a heartbeat ([`QueueCounters::heartbeat_ms`]), and an
//! idle worker wakes up from its receive every [`HEARTBEAT`] to beat; the daemon pings the
//! systemd watchdog only while every worker beats, so a dead or stuck worker stops the pings.
//! The kernel reports socket-buffer overflows (`ENOBUFS`, counted as `enobufs`): packets were
//! lost before statewall could see them.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::QueueSection;
use crate::engine::Engine;
use crate::fault::{self, Fault};
use crate::io::actions::ActionHandler;
use crate::marks::ConnMarks;
use crate::packet::PacketMeta;
use crate::time::Timestamp;
use crate::verdict::{Pass, Verdict};

/// A queue that cannot be set up.
#[derive(Debug, Error)]
pub enum QueueError {
    /// Opening the netlink socket failed.
    #[error("cannot open the netfilter queue socket: {0} (root or CAP_NET_ADMIN needed)")]
    Open(std::io::Error),
    /// A configuration request for one queue failed.
    #[error("queue {queue}: cannot {what}: {source}")]
    Configure {
        /// The queue number.
        queue: u16,
        /// What was being set.
        what: &'static str,
        /// The kernel's answer.
        source: std::io::Error,
    },
}

/// The settings every queue is opened with.
#[derive(Clone, Copy, Debug)]
pub struct QueueOptions {
    /// Bytes of each packet copied to user space.
    pub copy_range: u16,
    /// Receive GSO super-packets whole.
    pub gso: bool,
    /// Let packets through when the queue is full.
    pub fail_open: bool,
    /// Kernel queue length.
    pub max_len: u32,
    /// Receive buffer the daemon asks for, bytes (`[queue] recv_buffer`, or
    /// [`recv_buffer_for`] the queue's length when that is 0; [`open`] leaves the buffer
    /// alone: [`set_recv_buffer`]).
    pub recv_buffer: usize,
}

impl From<&QueueSection> for QueueOptions {
    fn from(q: &QueueSection) -> Self {
        QueueOptions {
            copy_range: q.copy_range,
            gso: q.gso,
            fail_open: q.fail_open,
            max_len: q.max_len,
            recv_buffer: match q.recv_buffer {
                0 => recv_buffer_for(q.max_len, q.copy_range),
                bytes => bytes,
            },
        }
    }
}

/// What the kernel charges a queue's socket for one queued packet of which `copy_range` bytes
/// are copied (`nfqnl_build_packet_message`): the copy and up to 256 bytes of netlink header
/// and attributes, in an skb whose data area (with its 320-byte `skb_shared_info`) comes from
/// a power-of-two slab, plus the 256-byte `sk_buff` itself. 1280 bytes for the default copy
/// range of 256.
pub fn message_truesize(copy_range: u16) -> usize {
    (usize::from(copy_range) + 256 + 320).next_power_of_two() + 256
}

/// The receive buffer that holds a full kernel queue: `max_len` packets of `copy_range`
/// bytes, with a quarter to spare; halved, since the kernel doubles what `SO_RCVBUF` asks
/// for (its bookkeeping); at most 1 GiB. With a smaller buffer (the system's default holds
/// about 160 such packets), a burst is lost at the socket (`kernel_user_dropped`) long before
/// the queue is full, so `[queue] max_len` would not be the bound it says it is.
pub fn recv_buffer_for(max_len: u32, copy_range: u16) -> usize {
    let full = (max_len as usize).saturating_mul(message_truesize(copy_range));
    (full / 8 * 5).min(1 << 30)
}

/// Opens and binds queue `num` with `opts`.
pub fn open(num: u16, opts: QueueOptions) -> Result<nfq::Queue, QueueError> {
    let mut q = nfq::Queue::open().map_err(QueueError::Open)?;
    let cfg = |what, r: std::io::Result<()>| {
        r.map_err(|source| QueueError::Configure {
            queue: num,
            what,
            source,
        })
    };
    cfg("bind", q.bind(num))?;
    cfg("set the copy range", q.set_copy_range(num, opts.copy_range))?;
    cfg("set GSO", q.set_recv_gso(num, opts.gso))?;
    cfg("set fail-open", q.set_fail_open(num, opts.fail_open))?;
    cfg(
        "set the queue length",
        q.set_queue_max_len(num, opts.max_len),
    )?;
    // Overflows of the socket buffer are reported (ENOBUFS), counted and warned about.
    cfg("turn ENOBUFS reports on", q.set_recv_enobufs(true))?;
    Ok(q)
}

/// Sets the receive buffer of queue `num`'s socket to `bytes` (`SO_RCVBUFFORCE`, or
/// `SO_RCVBUF` up to `net.core.rmem_max` without the capability); returns the size the kernel
/// granted (it doubles the request for its bookkeeping) and whether that is all of it.
pub fn set_recv_buffer(
    q: &mut nfq::Queue,
    num: u16,
    bytes: usize,
) -> Result<(usize, bool), QueueError> {
    let granted = q
        .set_recv_buffer_size(bytes)
        .map_err(|source| QueueError::Configure {
            queue: num,
            what: "set the receive buffer",
            source,
        })?;
    Ok((granted, granted >= bytes.saturating_mul(2)))
}

/// How an idle worker's receive waits at most before it beats.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How a worker batches its system calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Packets taken per receive system call at most (`recvmmsg`; 1: one `recv` each).
    pub recv: usize,
    /// Verdicts held before they are sent together (1: each at once).
    pub verdicts: usize,
    /// How long the oldest held verdict may wait for more.
    pub delay: Duration,
}

impl From<&QueueSection> for Batching {
    fn from(q: &QueueSection) -> Self {
        Batching {
            recv: q.recv_batch,
            verdicts: q.verdict_batch,
            delay: Duration::from_micros(q.verdict_delay_us),
        }
    }
}

impl Batching {
    /// Applies the batching and the heartbeat timeout to `q`.
    pub fn apply(&self, q: &mut nfq::Queue, num: u16) -> Result<(), QueueError> {
        q.set_recv_batch(self.recv);
        q.set_verdict_batch(self.verdicts, Some(self.delay));
        q.set_recv_timeout(Some(HEARTBEAT))
            .map_err(|source| QueueError::Configure {
                queue: num,
                what: "set the receive timeout",
                source,
            })
    }
}

/// Counters of one queue worker.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Packets received.
    pub packets: AtomicU64,
    /// Accept verdicts sent.
    pub accepted: AtomicU64,
    /// Drop verdicts sent.
    pub dropped: AtomicU64,
    /// Failed receives other than `ENOBUFS`.
    pub recv_errors: AtomicU64,
    /// `ENOBUFS` reports: the socket buffer overflowed and the kernel lost packets.
    pub enobufs: AtomicU64,
    /// Failed verdict sends.
    pub verdict_errors: AtomicU64,
    /// Panics caught: in the engine (the packet was dropped) or in action handling (the
    /// verdict stood).
    pub panics: AtomicU64,
    /// Milliseconds since the daemon's start at the worker's last loop turn (an idle worker
    /// turns every [`HEARTBEAT`]).
    pub heartbeat_ms: AtomicU64,
}

impl QueueCounters {
    /// A plain-number snapshot.
    pub fn snapshot(&self, queue: u16) -> QueueStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueueStats {
            queue,
            packets: l(&self.packets),
            accepted: l(&self.accepted),
            dropped: l(&self.dropped),
            recv_errors: l(&self.recv_errors),
            enobufs: l(&self.enobufs),
            verdict_errors: l(&self.verdict_errors),
            panics: l(&self.panics),
        }
    }

    /// Records a heartbeat at `now` (time since the daemon's start).
    pub fn beat(&self, now: Duration) {
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the worker has been silent at `now` (time since the daemon's start): the time
    /// since its last beat.
    pub fn silent_for(&self, now: Duration) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        now.saturating_sub(last)
    }
}

/// A snapshot of one queue's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Queue number.
    pub queue: u16,
    /// Packets received.
    pub packets: u64,
    /// Accept verdicts.
    pub accepted: u64,
    /// Drop verdicts.
    pub dropped: u64,
    /// Failed receives.
    pub recv_errors: u64,
    /// Socket buffer overflows reported.
    pub enobufs: u64,
    /// Failed verdicts.
    pub verdict_errors: u64,
    /// Panics caught (engine or actions).
    pub panics: u64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Everything a worker needs besides its queue.
pub struct Worker {
    /// The queue number.
    pub num: u16,
    /// The shared engine.
    pub engine: Arc<Engine>,
    /// This queue's counters.
    pub counters: Arc<QueueCounters>,
    /// What to do with the decisions' actions.
    pub actions: Arc<ActionHandler>,
    /// The daemon's time origin.
    pub start: Instant,
    /// The connection mark layout, when the kernel tracks the diverted traffic: accepted
    /// packets of tracked flows leave with the ADMITTED bit, which netfilter saves into their
    /// connection mark ([`crate::marks`]).
    pub marks: Option<ConnMarks>,
    /// How system calls are batched.
    pub batching: Batching,
}

/// Why a worker stopped.
#[derive(Debug, Error)]
#[error("queue {queue}: receive failed {count} times in a row, last: {last}")]
pub struct WorkerFailed {
    /// The queue number.
    pub queue: u16,
    /// Consecutive failures.
    pub count: u32,
    /// The last error.
    pub last: std::io::Error,
}

/// Consecutive non-transient receive failures after which a worker gives up.
const MAX_RECV_FAILURES: u32 = 100;

impl Worker {
    /// Receives and judges packets until the socket fails persistently. Transient receive
    /// errors (ENOBUFS, EINTR) are counted and the loop goes on; an expired receive timeout
    /// (an idle queue) is a heartbeat.
    pub fn run(self, mut queue: nfq::Queue) -> WorkerFailed {
        if let Err(e) = self.batching.apply(&mut queue, self.num) {
            tracing::warn!(error = %e, "batching not applied: one system call per packet");
        }
        let mut judge = Judge::new(
            self.num,
            self.engine,
            self.counters,
            self.actions,
            self.start,
            self.marks,
        );
        let counters = Arc::clone(&judge.counters);
        let mut failures = 0u32;
        let mut received = 0u64;
        loop {
            counters.beat(judge.start.elapsed());
            let result = if received > 0 && fault::injected(Fault::RecvError) {
                Err(std::io::Error::other("injected receive failure"))
            } else {
                queue.recv()
            };
            let mut msg = match result {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(e) if nfq::is_timeout(&e) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    bump(&counters.enobufs);
                    continue;
                }
                Err(e) => {
                    bump(&counters.recv_errors);
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    failures += 1;
                    tracing::warn!(queue = self.num, error = %e, "receive failed");
                    if failures >= MAX_RECV_FAILURES {
                        return WorkerFailed {
                            queue: self.num,
                            count: failures,
                            last: e,
                        };
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            received += 1;
            let outcome = judge.judge(&Queued {
                payload: msg.get_payload(),
                indev: msg.get_indev(),
                outdev: msg.get_outdev(),
                wire_len: msg.get_original_len(),
                mark: msg.get_nfmark(),
                hw_src: msg.get_hw_addr(),
                hw_protocol: msg.get_hw_protocol(),
            });
            if let Some(mark) = outcome.mark {
                msg.set_nfmark(mark);
            }
            msg.set_verdict(if outcome.accept {
                nfq::Verdict::Accept
            } else {
                nfq::Verdict::Drop
            });
            if let Err(e) = queue.queue_verdict(msg) {
                bump(&counters.verdict_errors);
                tracing::debug!(queue = self.num, error = %e, "verdict failed");
            }
            if fault::injected(Fault::Stall) {
                tracing::warn!(
                    queue = self.num,
                    "injected stall: this worker stops for good"
                );
                // The held verdicts go out first: only this worker stops, not its packets.
                let _ = queue.flush_verdicts();
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

/// One queued packet, as a worker received it.
#[derive(Clone, Copy, Debug)]
pub struct Queued<'a> {
    /// The packet from its IP header, up to the copy range.
    pub payload: &'a [u8],
    /// Input interface index (0: none).
    pub indev: u32,
    /// Output interface index (0: none).
    pub outdev: u32,
    /// The packet's length on the wire.
    pub wire_len: usize,
    /// Its packet mark (with statewall's bits restored from the connection mark).
    pub mark: u32,
    /// The link-layer source address (`NFQA_HWADDR`), when the kernel gave one.
    pub hw_src: Option<&'a [u8]>,
    /// The link-layer protocol (the EtherType).
    pub hw_protocol: u16,
}

/// What becomes of a queued packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Accept (or drop).
    pub accept: bool,
    /// The packet mark to leave with, when it changes.
    pub mark: Option<u32>,
}

/// The per-packet work of a worker, apart from the queue: the engine's decision, its actions
/// (answers, log lines, blocks) and the verdict with its mark. Nothing a packet contains can
/// stop it (panics are caught, counted and answered with a drop), and it allocates nothing for
/// packets of known flows on known interfaces.
pub struct Judge {
    num: u16,
    engine: Arc<Engine>,
    counters: Arc<QueueCounters>,
    actions: Arc<ActionHandler>,
    start: Instant,
    marks: Option<ConnMarks>,
    names: IfNames,
}

impl Judge {
    /// A judge for queue `num` (see [`Worker`] for the parts).
    pub fn new(
        num: u16,
        engine: Arc<Engine>,
        counters: Arc<QueueCounters>,
        actions: Arc<ActionHandler>,
        start: Instant,
        marks: Option<ConnMarks>,
    ) -> Judge {
        Judge {
            num,
            engine,
            counters,
            actions,
            start,
            marks,
            names: IfNames::default(),
        }
    }

    /// Judges one packet.
    pub fn judge(&mut self, p: &Queued<'_>) -> Outcome {
        bump(&self.counters.packets);
        self.names.learn(p.indev);
        self.names.learn(p.outdev);
        let meta = PacketMeta {
            wire_len: Some(p.wire_len),
            in_iface: self.names.get(p.indev),
            out_iface: self.names.get(p.outdev),
            fastpath: self.marks.is_some_and(|m| m.is_fastpath(p.mark)),
            admitted: self.marks.is_some_and(|m| m.is_admitted(p.mark)),
            mac: ethernet_header(self.names.mac(p.indev), p.hw_src, p.hw_protocol),
        };
        let now = Timestamp::from_duration(self.start.elapsed());
        // Accepted; a packet of its own tracked flow (the flow is admitted; an ICMP error
        // related to a flow leaves that flow's marks alone); on the fast path.
        let (accept, admitted, fastpath) = match catch_unwind(AssertUnwindSafe(|| {
            self.engine.process(p.payload, &meta, now)
        })) {
            Ok(decision) => {
                let admitted = matches!(
                    decision.verdict,
                    Verdict::Accept(Pass::Tracked | Pass::Opened | Pass::Ignored)
                );
                let fastpath = decision.fastpath;
                let accept = decision.accepted();
                let work = decision.action.is_some() || !decision.events.is_empty();
                let performed = catch_unwind(AssertUnwindSafe(|| {
                    if fault::injected(Fault::ActionPanic) && work {
                        // The fault the e2e tests inject (feature `fault-injection` only):
                        // this panic is the point, and the catch around it is under test.
                        #[allow(clippy::panic)]
                        {
                            panic!("injected action panic");
                        }
                    }
                    self.actions.handle(decision);
                }));
                if performed.is_err() {
                    bump(&self.counters.panics);
                    tracing::error!(queue = self.num, "action handling panicked; verdict kept");
                }
                (accept, admitted, fastpath)
            }
            Err(_) => {
                bump(&self.counters.panics);
                tracing::error!(queue = self.num, "engine panicked; packet dropped");
                (false, false, false)
            }
        };
        if accept {
            bump(&self.counters.accepted);
            let mark = self
                .marks
                .filter(|_| admitted)
                .map(|marks| marks.verdict_mark(p.mark, fastpath));
            Outcome { accept, mark }
        } else {
            bump(&self.counters.dropped);
            Outcome { accept, mark: None }
        }
    }
}

/// The Ethernet header of a received packet as the kernel's LOG target prints it
/// (destination, source, EtherType): NFQUEUE gives the source address (`NFQA_HWADDR`) and the
/// EtherType; the destination of a packet the gateway routes or receives is its input
/// interface's own address (a packet sent to another address never reaches the FORWARD or
/// INPUT hook as unicast). `None` when any part is unknown (not Ethernet, no input interface).
pub fn ethernet_header(
    in_mac: Option<[u8; 6]>,
    hw_src: Option<&[u8]>,
    ethertype: u16,
) -> Option<[u8; 14]> {
    let dst = in_mac?;
    let src = hw_src.filter(|a| a.len() == 6)?;
    let mut h = [0u8; 14];
    h[..6].copy_from_slice(&dst);
    h[6..12].copy_from_slice(src);
    h[12..].copy_from_slice(&ethertype.to_be_bytes());
    Some(h)
}

/// Interface index → name and Ethernet address, from `/sys/class/net/*/{ifindex,address}`,
/// re-read when an unknown index shows up (at most once a second, so a stream of unknown
/// indexes costs nothing).
#[derive(Debug, Default)]
pub struct IfNames {
    names: HashMap<u32, Box<str>>,
    macs: HashMap<u32, [u8; 6]>,
    last_scan: Option<Instant>,
}

const RESCAN_EVERY: Duration = Duration::from_secs(1);

impl IfNames {
    /// Makes sure `index` is known if it exists (0 means "no interface").
    pub fn learn(&mut self, index: u32) {
        if index == 0 || self.names.contains_key(&index) {
            return;
        }
        if self.last_scan.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return;
        }
        (self.names, self.macs) = scan_sys_class_net();
        self.last_scan = Some(Instant::now());
    }

    /// The name of `index`, if known.
    pub fn get(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(|n| &**n)
    }

    /// The Ethernet address of `index`, if known and 6 bytes long.
    pub fn mac(&self, index: u32) -> Option<[u8; 6]> {
        self.macs.get(&index).copied()
    }
}

type Scanned = (HashMap<u32, Box<str>>, HashMap<u32, [u8; 6]>);

fn scan_sys_class_net() -> Scanned {
    let (mut names, mut macs) = (HashMap::new(), HashMap::new());
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return (names, macs);
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("ifindex")) else {
            continue;
        };
        if let (Ok(index), Some(name)) = (text.trim().parse(), entry.file_name().to_str()) {
            names.insert(index, name.into());
            let address = std::fs::read_to_string(entry.path().join("address"));
            if let Some(mac) = address.ok().and_then(|a| parse_mac(a.trim())) {
                macs.insert(index, mac);
            }
        }
    }
    (names, macs)
}

/// `02:00:5e:10:00:01` → its 6 bytes; anything else (longer link addresses, garbage) → `None`.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// One line of `/proc/net/netfilter/nfnetlink_queue`: the kernel's view of a queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelQueueStats {
    /// Queue number.
    pub queue: u16,
    /// Packets waiting for a verdict.
    pub waiting: u64,
    /// Packets dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets dropped because the netlink socket buffer was full.
    pub user_dropped: u64,
}

/// Where the kernel lists its queues for the caller's network namespace: mode 0440, owned by
/// root, so a daemon running as its own user (the packaged unit) cannot read it, and a `/proc`
/// mounted with `subset=pid` hides it.
pub const KERNEL_STATS: &str = "/proc/net/netfilter/nfnetlink_queue";

/// Reads the kernel's per-queue counters (network namespace of the caller); none when the
/// file cannot be read (see [`read_kernel_stats`]).
pub fn kernel_stats() -> Vec<KernelQueueStats> {
    read_kernel_stats().unwrap_or_default()
}

/// Like [`kernel_stats`], with the error when [`KERNEL_STATS`] cannot be read.
pub fn read_kernel_stats() -> std::io::Result<Vec<KernelQueueStats>> {
    std::fs::read_to_string(KERNEL_STATS).map(|t| parse_kernel_stats(&t))
}

fn parse_kernel_stats(text: &str) -> Vec<KernelQueueStats> {
    // queue_number peer_portid queue_total copy_mode copy_range queue_dropped user_dropped
    // id_sequence 1
    text.lines()
        .filter_map(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .map_while(|w| w.parse().ok())
                .collect();
            if f.len() < 7 {
                return None;
            }
            Some(KernelQueueStats {
                queue: u16::try_from(f[0]).ok()?,
                waiting: f[2],
                queue_dropped: f[5],
                user_dropped: f[6],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stats_lines() {
        let text = "    0  12345     3 2   256     7     9   1000  1\n    1  12346     0 2   256     0     0      0  1\n";
        let s = parse_kernel_stats(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            KernelQueueStats {
                queue: 0,
                waiting: 3,
                queue_dropped: 7,
                user_dropped: 9
            }
        );
        assert_eq!(s[1].queue, 1);
        assert!(parse_kernel_stats("garbage\n").is_empty());
    }

    #[test]
    fn the_receive_buffer_holds_a_full_queue() {
        assert_eq!(message_truesize(256), 1280);
        assert_eq!(message_truesize(60), 1280);
        assert_eq!(message_truesize(1500), 4352);
        // The default queue: 1 024 packets of 256 bytes, with a quarter to spare, halved
        // for the kernel's doubling (what the SYN flood test keeps without socket losses).
        assert_eq!(recv_buffer_for(1024, 256), 819_200);
        assert!(2 * recv_buffer_for(1024, 256) >= 1024 * message_truesize(256));
        assert_eq!(recv_buffer_for(u32::MAX, u16::MAX), 1 << 30);
        let opts = |recv_buffer| {
            QueueOptions::from(&QueueSection {
                recv_buffer,
                ..QueueSection::default()
            })
        };
        assert_eq!(opts(0).recv_buffer, recv_buffer_for(1024, 256));
        assert_eq!(opts(65536).recv_buffer, 65536, "an explicit size wins");
    }

    #[test]
    fn ethernet_headers_from_the_queue() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:0a"),
            Some([2, 0, 0x5e, 0x10, 0, 10])
        );
        assert_eq!(parse_mac("02:00:5e:10:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:00:0a:01"), None);
        assert_eq!(parse_mac("zz:00:5e:10:00:0a"), None);
        let h = ethernet_header(Some([2, 0, 0, 0, 0, 1]), Some(&[2, 0, 0, 0, 0, 2]), 0x86dd);
        assert_eq!(h, Some([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd]));
        assert_eq!(
            ethernet_header(None, Some(&[2, 0, 0, 0, 0, 2]), 0x0800),
            None
        );
        assert_eq!(
            ethernet_header(Some([2, 0, 0, 0, 0, 1]), Some(&[1; 8]), 0x0800),
            None
        );
        assert_eq!(
            ethernet_header(Some([2, 0, 0, 0, 0, 1]), None, 0x0800),
            None
        );
    }

    #[test]
    fn loopback_has_a_name() {
        let mut n = IfNames::default();
        n.learn(1);
        assert_eq!(n.get(1), Some("lo"));
        assert_eq!(n.get(0), None);
    }

    #[test]
    fn unknown_index_does_not_rescan_every_time() {
        let mut n = IfNames::default();
        n.learn(u32::MAX);
        let first = n.last_scan;
        n.learn(u32::MAX);
        assert_eq!(n.last_scan, first);
        assert_eq!(n.get(u32::MAX), None);
    }

    #[test]
    fn counters_snapshot() {
        let c = QueueCounters::default();
        bump(&c.packets);
        bump(&c.accepted);
        assert_eq!(c.snapshot(3).queue, 3);
        assert_eq!(c.snapshot(3).packets, 1);
        assert_eq!(c.snapshot(3).dropped, 0);
    }
}
