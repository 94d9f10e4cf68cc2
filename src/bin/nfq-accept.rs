//! `nfq-accept`: a minimal NFQUEUE consumer that accepts every packet, with statewall's queue
//! settings (copy range, GSO, queue length). Benchmarks compare statewall against it.
//!
//! Usage: `nfq-accept [--queue FIRST] [--count N] [--copy-range BYTES] [--no-gso]`
//! It binds the queues, prints `ready` on stdout and runs until killed. The iptables rules
//! that feed the queues are the caller's business.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::thread;

use clap::Parser;

use statewall::io::queue::{self, QueueOptions};

#[derive(Parser)]
#[command(
    name = "nfq-accept",
    about = "Accept-all NFQUEUE consumer (benchmark baseline)"
)]
struct Args {
    /// First queue number.
    #[arg(long, default_value_t = 0)]
    queue: u16,
    /// Number of queues (one thread each).
    #[arg(long, default_value_t = 1)]
    count: u16,
    /// Bytes copied per packet.
    #[arg(long, default_value_t = 256)]
    copy_range: u16,
    /// Receive segmented packets instead of GSO super-packets.
    #[arg(long)]
    no_gso: bool,
    /// Kernel queue length.
    #[arg(long, default_value_t = 4096)]
    max_len: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = QueueOptions {
        copy_range: args.copy_range,
        gso: !args.no_gso,
        fail_open: false,
        max_len: args.max_len,
        // The baseline keeps the system's default buffer (never set).
        recv_buffer: 0,
    };
    let mut handles = Vec::new();
    for num in args.queue..=args.queue.saturating_add(args.count.max(1) - 1) {
        let mut q = match queue::open(num, opts) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("nfq-accept: {e}");
                return ExitCode::from(1);
            }
        };
        handles.push(thread::spawn(move || loop {
            match q.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    if let Err(e) = q.verdict(msg) {
                        eprintln!("nfq-accept: queue {num}: verdict: {e}");
                    }
                }
                Err(e) => eprintln!("nfq-accept: queue {num}: recv: {e}"),
            }
        }));
    }
    println!("ready");
    for h in handles {
        let _ = h.join();
    }
    ExitCode::SUCCESS
}
