//! `nfq-accept-batched`: an accept-all NFQUEUE consumer (one queue) with the batched I/O of the
//! patched `nfq` crate, to measure what batching saves next to `nfq-accept` (the unchanged
//! per-packet baseline). It uses statewall's queue settings (copy range, GSO, queue length).
//!
//! Usage: `nfq-accept-batched [--queue N] [--recv-batch N] [--verdict-batch N] [--no-merge]`
//! - `--recv-batch 1` receives one packet per system call (`recv`), more uses `recvmmsg`;
//! - `--verdict-batch 0` sends each verdict at once (`Queue::verdict`, as `nfq-accept`), more
//!   holds that many back (`Queue::queue_verdict`, one `sendto` for all of them);
//! - `--no-merge` sends one verdict message per packet instead of merging runs into an
//!   `NFQNL_MSG_VERDICT_BATCH`.
//!
//! It prints `ready` once bound; on SIGTERM or SIGINT it prints one line of counters (packets,
//! receive system calls, datagrams, verdict `sendto`s and messages, CPU seconds) and exits.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use statewall::io::queue::{self, QueueOptions};

#[derive(Parser)]
#[command(
    name = "nfq-accept-batched",
    about = "Accept-all NFQUEUE consumer with batched receive and verdicts (measurement tool)"
)]
struct Args {
    /// Queue number.
    #[arg(long, default_value_t = 0)]
    queue: u16,
    /// Packets received per system call (1: recv, more: recvmmsg).
    #[arg(long, default_value_t = 16)]
    recv_batch: usize,
    /// Verdicts held back and sent together (0: each at once).
    #[arg(long, default_value_t = 32)]
    verdict_batch: usize,
    /// One verdict message per packet, no NFQNL_MSG_VERDICT_BATCH.
    #[arg(long)]
    no_merge: bool,
    /// Bytes copied per packet.
    #[arg(long, default_value_t = 256)]
    copy_range: u16,
    /// Kernel queue length.
    #[arg(long, default_value_t = 4096)]
    max_len: u32,
    /// Receive buffer of the queue socket in bytes (0: the system default, as `nfq-accept`).
    #[arg(long, default_value_t = 0)]
    rcvbuf: usize,
}

/// utime and stime of this process in seconds (/proc/self/stat, clock ticks of 1/100 s).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which ends with the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    (tick(11), tick(12))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = QueueOptions {
        copy_range: args.copy_range,
        gso: true,
        fail_open: false,
        max_len: args.max_len,
        recv_buffer: args.rcvbuf,
    };
    let mut q = match queue::open(args.queue, opts) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("nfq-accept-batched: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            eprintln!("nfq-accept-batched: signal handler: {e}");
            return ExitCode::from(1);
        }
    }
    let setup = if args.rcvbuf > 0 {
        q.set_recv_buffer_size(args.rcvbuf).map(|_| ())
    } else {
        Ok(())
    }
    .and_then(|_| q.set_recv_timeout(Some(Duration::from_millis(100))));
    if let Err(e) = setup {
        eprintln!("nfq-accept-batched: socket options: {e}");
        return ExitCode::from(1);
    }
    q.set_recv_batch(args.recv_batch);
    q.set_verdict_batch(args.verdict_batch.max(1), Some(Duration::from_millis(1)));
    q.set_verdict_merge(!args.no_merge);
    println!("ready");

    let (mut packets, mut errors) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        match q.recv() {
            Ok(mut msg) => {
                packets += 1;
                msg.set_verdict(nfq::Verdict::Accept);
                let r = if args.verdict_batch == 0 {
                    q.verdict(msg)
                } else {
                    q.queue_verdict(msg)
                };
                if let Err(e) = r {
                    errors += 1;
                    eprintln!("nfq-accept-batched: verdict: {e}");
                }
            }
            Err(e) if nfq::is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                errors += 1;
                if errors < 10 {
                    eprintln!("nfq-accept-batched: recv: {e}");
                }
            }
        }
    }
    let _ = q.flush_verdicts();
    let (user, sys) = cpu_seconds();
    let c = q.io_counts();
    println!(
        "packets={packets} receives={} datagrams={} sends={} messages={} errors={errors} \
         user_s={user:.2} sys_s={sys:.2}",
        c.receives, c.datagrams, c.verdict_sends, c.verdict_messages
    );
    ExitCode::SUCCESS
}
