//! `tcp-pingpong`: request/response latency over one TCP connection (netperf's TCP_RR, which
//! Debian does not package). Benchmarks put it through the gateway next to the throughput loads.
//!
//! ```text
//! tcp-pingpong server --listen ADDR:PORT [--for SECONDS]
//! tcp-pingpong client --connect ADDR:PORT [--seconds S] [--size BYTES] [--warmup-ms MS]
//! ```
//!
//! The server echoes every byte it reads, one thread per connection, until `--for` expires
//! (default: one hour; bounded, never a daemon). The client opens one connection
//! (`TCP_NODELAY` on both ends), then sends `--size` bytes and waits for as many back, over
//! and over: the first `--warmup-ms` are not counted, then every transaction's round trip is
//! recorded for `--seconds`. It prints one line of `key=value` (`transactions`, `per_sec`,
//! `p50_us`, `p90_us`, `p99_us`, `max_us`, `mean_us`) and exits 0, or says what failed and
//! exits 1. Every wait is bounded by a socket timeout.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tcp-pingpong",
    about = "TCP request/response latency (benchmark tool)"
)]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Echo every byte back.
    Server {
        /// Address and port to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Exit after this many seconds.
        #[arg(long = "for", default_value_t = 3600)]
        lifetime: u64,
    },
    /// Measure round trips.
    Client {
        /// The server.
        #[arg(long)]
        connect: SocketAddr,
        /// Seconds of measured transactions.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Bytes per request (and per response).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Milliseconds of transactions before the measurement starts.
        #[arg(long, default_value_t = 500)]
        warmup_ms: u64,
    },
}

/// How long any single read, write or connect may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let result = match Args::parse().role {
        Role::Server { listen, lifetime } => serve(listen, Duration::from_secs(lifetime)),
        Role::Client {
            connect,
            seconds,
            size,
            warmup_ms,
        } => measure(
            connect,
            Duration::from_secs_f64(seconds.max(0.001)),
            size.clamp(1, 65536),
            Duration::from_millis(warmup_ms),
        )
        .map(|r| println!("{r}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp-pingpong: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listen: SocketAddr, lifetime: Duration) -> Result<(), String> {
    let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let end = Instant::now() + lifetime;
    println!("ready");
    while Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                std::thread::spawn(move || echo(stream, end));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => eprintln!("tcp-pingpong: accept: {e}"),
        }
    }
    Ok(())
}

fn echo(mut stream: TcpStream, end: Instant) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_nodelay(true).is_err()
        || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The round trips of one measurement.
struct Report {
    /// Round trips in nanoseconds, sorted.
    rtts: Vec<u64>,
    elapsed: Duration,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        // Nearest rank: the smallest value with at least p % of the values at or below it.
        let n = self.rtts.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.rtts[rank.clamp(1, n) - 1] as f64 / 1e3
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.rtts.len();
        let mean = self.rtts.iter().sum::<u64>() as f64 / n as f64 / 1e3;
        write!(
            f,
            "transactions={n} per_sec={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} mean_us={mean:.1}",
            n as f64 / self.elapsed.as_secs_f64(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(100.0),
        )
    }
}

fn measure(
    to: SocketAddr,
    seconds: Duration,
    size: usize,
    warmup: Duration,
) -> Result<Report, String> {
    let mut s =
        TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(|e| format!("connect {to}: {e}"))?;
    s.set_nodelay(true)
        .and_then(|()| s.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    let request = vec![0x5a_u8; size];
    let mut response = vec![0u8; size];
    let mut transaction = |s: &mut TcpStream| -> Result<Duration, String> {
        let t0 = Instant::now();
        s.write_all(&request).map_err(|e| format!("send: {e}"))?;
        s.read_exact(&mut response)
            .map_err(|e| format!("receive: {e}"))?;
        Ok(t0.elapsed())
    };
    let warm_end = Instant::now() + warmup;
    while Instant::now() < warm_end {
        transaction(&mut s)?;
    }
    let mut rtts = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    while start.elapsed() < seconds {
        let rtt = transaction(&mut s)?;
        rtts.push(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
    }
    let elapsed = start.elapsed();
    if rtts.is_empty() {
        return Err("no transaction completed".into());
    }
    rtts.sort_unstable();
    Ok(Report { rtts, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let r = Report {
            rtts: (1..=100).map(|i| i * 1000).collect(),
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(r.percentile(50.0), 50.0);
        assert_eq!(r.percentile(99.0), 99.0);
        assert_eq!(r.percentile(100.0), 100.0);
        assert_eq!(r.percentile(0.0), 1.0);
        let one = Report {
            rtts: vec![7000],
            elapsed: Duration::from_secs(1),
        };
        assert_eq!(one.percentile(99.0), 7.0);
        assert!(one
            .to_string()
            .starts_with("transactions=1 per_sec=1 p50_us=7.0"));
    }

    #[test]
    fn loopback_round_trips() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let end = Instant::now() + Duration::from_secs(10);
        std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                echo(s, end);
            }
        });
        let r = measure(
            addr,
            Duration::from_millis(100),
            64,
            Duration::from_millis(10),
        )
        .expect("measure");
        assert!(r.rtts.len() > 10, "{}", r);
        assert!(r.rtts.windows(2).all(|w| w[0] <= w[1]));
        assert!(r.percentile(50.0) <= r.percentile(99.0));
    }
}
