//! Rate limits for the answers statewall sends on its own (RSTs, ICMP port unreachables).
//!
//! Answers to probes cost almost nothing to trigger, and their source address may be forged,
//! so they are capped twice: per source (an IPv4 address or IPv6 /64 by default: the one
//! notion of a source, [`SourcePrefix`], that connection limits and scan tracking use too) and
//! globally. The per-source cap is checked first so that one noisy source cannot drain the
//! global budget that other sources share.
//!
//! Both use [`TokenBucket`], a lock-free GCRA ("virtual scheduling") bucket: one atomic holding
//! the theoretical arrival time of the next conforming answer.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

use crate::source::SourcePrefix;
use crate::time::Timestamp;
use crate::verdict::ProbeMode;

/// A rate in events per second, written `"200/s"`, `"600/min"`, `"3600/h"` or as a plain
/// number of events per second (`200`, `0.5`).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "RateRepr")]
pub struct Rate(f64);

impl Rate {
    /// `n` events per second.
    pub const fn per_sec(n: f64) -> Rate {
        Rate(n)
    }

    /// Events per second.
    pub fn as_per_sec(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// The number before the unit is not a finite non-negative number.
    #[error("invalid rate {0:?}: expected a number such as \"200/s\"")]
    Number(String),
    /// The unit after `/` is not s, sec, m, min, h or hour.
    #[error("invalid rate unit in {0:?}: expected /s, /min or /h")]
    Unit(String),
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Rate, RateError> {
        let s = s.trim();
        let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
        let per = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => return Err(RateError::Unit(s.to_owned())),
        };
        let n: f64 = num
            .trim()
            .parse()
            .map_err(|_| RateError::Number(s.to_owned()))?;
        Rate::try_from(RateRepr::Number(n / per)).map_err(|_| RateError::Number(s.to_owned()))
    }
}

/// How a rate may be written in the configuration.
#[derive(Deserialize)]
#[serde(untagged)]
enum RateRepr {
    Number(f64),
    Text(String),
}

impl TryFrom<RateRepr> for Rate {
    type Error = RateError;

    fn try_from(repr: RateRepr) -> Result<Rate, RateError> {
        match repr {
            RateRepr::Number(n) if n.is_finite() && n >= 0.0 => Ok(Rate(n)),
            RateRepr::Number(n) => Err(RateError::Number(n.to_string())),
            RateRepr::Text(s) => s.parse(),
        }
    }
}

/// The `[probes]` section: how out-of-state probes are answered and how fast.
///
/// Defaults are sized so that one scanner's complete 1000-port `nmap -T4` scan is answered
/// in full: nmap sends the 1000 probes plus some retransmissions, a few hundred per second at
/// most once it has measured the path, often all in the first second on a LAN. A per-source
/// burst of 1200 covers the whole scan with 20 % retransmissions however fast it comes, and a
/// refill of 200/s covers slower scans indefinitely. The global bucket (2000 burst, 500/s)
/// answers such a scan and most of a second concurrent one, while capping the total: 500
/// answers/s of 40–60 byte RSTs (or ≤576-byte ICMP errors) is a few hundred kB/s at most, so
/// forged-source probes cannot turn statewall into a useful reflector.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbesConfig {
    /// `"rst"` (default) or `"drop"`.
    pub respond: ProbeMode,
    /// Global answers per second (default `"500/s"`).
    pub rate: Rate,
    /// Global burst, in answers (default 2000).
    pub burst: u32,
    /// Answers per second to one source (`[sources]`: an address, an IPv6 /64) (default
    /// `"200/s"`).
    pub per_source_rate: Rate,
    /// Burst for one source group, in answers (default 1200).
    pub per_source_burst: u32,
    /// Source groups tracked at once (default 4096); idle and then oldest ones are forgotten.
    pub max_sources: usize,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            respond: ProbeMode::Rst,
            rate: Rate::per_sec(500.0),
            burst: 2000,
            per_source_rate: Rate::per_sec(200.0),
            per_source_burst: 1200,
            max_sources: 4096,
        }
    }
}

/// An invalid `[probes]` value; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbesConfigError {
    /// A rate is zero; use `respond = "drop"` to answer nothing.
    #[error("probes.{0}: must be greater than 0 (use respond = \"drop\" to send no answers)")]
    ZeroRate(&'static str),
    /// A count that must be at least 1 is 0.
    #[error("probes.{0}: must be at least 1")]
    Zero(&'static str),
}

impl ProbesConfig {
    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ProbesConfigError> {
        if self.rate.as_per_sec() <= 0.0 {
            return Err(ProbesConfigError::ZeroRate("rate"));
        }
        if self.per_source_rate.as_per_sec() <= 0.0 {
            return Err(ProbesConfigError::ZeroRate("per_source_rate"));
        }
        for (key, value) in [
            ("burst", self.burst as usize),
            ("per_source_burst", self.per_source_burst as usize),
            ("max_sources", self.max_sources),
        ] {
            if value == 0 {
                return Err(ProbesConfigError::Zero(key));
            }
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved up. Lock-free (GCRA).
#[derive(Debug)]
pub struct TokenBucket {
    /// Nanoseconds between two tokens.
    interval: u64,
    /// How far ahead of `now` the theoretical arrival time may run: `(burst - 1) * interval`.
    tolerance: u64,
    /// Theoretical arrival time of the next token, in nanoseconds.
    tat: AtomicU64,
}

impl TokenBucket {
    /// A full bucket. A zero or invalid rate gives a bucket that never hands out a token.
    pub fn new(rate: Rate, burst: u32) -> TokenBucket {
        let per_sec = rate.as_per_sec();
        if !(per_sec > 0.0 && per_sec.is_finite()) {
            return TokenBucket {
                interval: u64::MAX,
                tolerance: 0,
                tat: AtomicU64::new(u64::MAX),
            };
        }
        let interval = ((1e9 / per_sec) as u64).max(1);
        let tolerance = interval.saturating_mul(u64::from(burst.max(1) - 1));
        TokenBucket {
            interval,
            tolerance,
            tat: AtomicU64::new(0),
        }
    }

    /// Takes one token if one is available at `now`.
    pub fn try_take(&self, now: Timestamp) -> bool {
        let now = now.as_nanos();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return false;
            }
            let next = start.saturating_add(self.interval);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// True when the bucket is full again at `now` (forgetting it changes nothing).
    pub fn is_full(&self, now: Timestamp) -> bool {
        self.tat.load(Ordering::Relaxed) <= now.as_nanos()
    }
}

/// The group a source is reported with, and blocked by with `block_scope = "group"`: its IPv4
/// /24 or IPv6 /64.
pub fn source_group(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => Ipv4Net::new(v4, 24)
            .map(|n| IpNet::V4(n.trunc()))
            .unwrap_or(IpNet::from(ip)),
        IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or(IpNet::from(ip)),
    }
}

/// One token bucket per source group, with a bounded number of groups.
///
/// When the table is full, groups whose bucket is full again are forgotten first (that loses
/// nothing); if none is, the least recently used eighth goes, so the cost of eviction is
/// amortised over many insertions.
#[derive(Debug)]
pub struct KeyedBuckets {
    rate: Rate,
    burst: u32,
    cap: usize,
    sources: SourcePrefix,
    table: Mutex<HashMap<IpNet, Keyed>>,
}

#[derive(Debug)]
struct Keyed {
    bucket: TokenBucket,
    last_used: Timestamp,
}

impl KeyedBuckets {
    /// Buckets of `rate` and `burst` for at most `cap` sources (at least 1), one source being
    /// what [`SourcePrefix::default`] says.
    pub fn new(rate: Rate, burst: u32, cap: usize) -> KeyedBuckets {
        KeyedBuckets {
            rate,
            burst,
            cap: cap.max(1),
            sources: SourcePrefix::default(),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The same buckets, one per source as `sources` says.
    pub fn with_sources(self, sources: SourcePrefix) -> KeyedBuckets {
        KeyedBuckets { sources, ..self }
    }

    /// Takes a token from the bucket of `src`'s source.
    pub fn try_take(&self, src: IpAddr, now: Timestamp) -> bool {
        let group = self.sources.net(src);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if !table.contains_key(&group) && table.len() >= self.cap {
            evict(&mut table, now);
        }
        let entry = table.entry(group).or_insert_with(|| Keyed {
            bucket: TokenBucket::new(self.rate, self.burst),
            last_used: now,
        });
        entry.last_used = now;
        entry.bucket.try_take(now)
    }

    /// Number of groups currently tracked.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no group is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees room in a full table: full buckets first, else the least recently used eighth.
fn evict(table: &mut HashMap<IpNet, Keyed>, now: Timestamp) {
    let before = table.len();
    table.retain(|_, k| !k.bucket.is_full(now));
    if table.len() < before {
        return;
    }
    let mut ages: Vec<Timestamp> = table.values().map(|k| k.last_used).collect();
    let nth = (ages.len() / 8).min(ages.len().saturating_sub(1));
    let (_, cutoff, _) = ages.select_nth_unstable(nth);
    let cutoff = *cutoff;
    table.retain(|_, k| k.last_used > cutoff);
}

/// Which limit refused an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Limited {
    /// The global answer budget is spent.
    #[error("global probe answer rate exceeded")]
    Global,
    /// The source group's answer budget is spent.
    #[error("per-source probe answer rate exceeded")]
    Source,
}

/// The two limits applied to every answer: per source group, then global.
#[derive(Debug)]
pub struct RateLimiter {
    /// Shared by all sources.
    pub global: TokenBucket,
    /// One bucket per source.
    pub per_source: KeyedBuckets,
}

impl RateLimiter {
    /// Limits as configured in `[probes]`, one source being what `sources` says.
    pub fn new(cfg: &ProbesConfig, sources: SourcePrefix) -> RateLimiter {
        RateLimiter {
            global: TokenBucket::new(cfg.rate, cfg.burst),
            per_source: KeyedBuckets::new(
                cfg.per_source_rate,
                cfg.per_source_burst,
                cfg.max_sources,
            )
            .with_sources(sources),
        }
    }

    /// May statewall answer a probe from `src` at `now`?
    pub fn try_take(&self, src: IpAddr, now: Timestamp) -> Result<(), Limited> {
        if !self.per_source.try_take(src, now) {
            return Err(Limited::Source);
        }
        if !self.global.try_take(now) {
            return Err(Limited::Global);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn takes(bucket: &TokenBucket, now: Timestamp, n: usize) -> usize {
        (0..n).filter(|_| bucket.try_take(now)).count()
    }

    #[test]
    fn bucket_gives_burst_then_rate() {
        let b = TokenBucket::new(Rate::per_sec(10.0), 5);
        let t0 = Timestamp::from_secs(100);
        assert_eq!(takes(&b, t0, 20), 5);
        assert!(!b.is_full(t0));
        // 10/s: one token every 100 ms.
        assert_eq!(takes(&b, Timestamp::from_millis(100_050), 5), 0);
        assert_eq!(takes(&b, Timestamp::from_millis(100_100), 5), 1);
        assert_eq!(takes(&b, Timestamp::from_millis(100_400), 5), 3);
        // Long idle: refilled to the burst, never beyond.
        assert!(b.is_full(Timestamp::from_secs(200)));
        assert_eq!(takes(&b, Timestamp::from_secs(200), 20), 5);
    }

    #[test]
    fn zero_rate_bucket_never_gives() {
        let b = TokenBucket::new(Rate::per_sec(0.0), 10);
        assert_eq!(takes(&b, Timestamp::from_secs(1_000_000), 5), 0);
    }

    #[test]
    fn bucket_is_shared_between_threads() {
        let b = Arc::new(TokenBucket::new(Rate::per_sec(1.0), 1000));
        let now = Timestamp::from_secs(10);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || takes(&b, now, 500))
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn groups_are_slash_24_and_slash_64() {
        assert_eq!(
            source_group(ip("198.51.100.77")).to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(
            source_group(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn keyed_buckets_are_per_source() {
        let k = KeyedBuckets::new(Rate::per_sec(1.0), 2, 100);
        let now = Timestamp::from_secs(1);
        // By default an IPv4 source is its address, an IPv6 source its /64.
        assert!(k.try_take(ip("198.51.100.1"), now) && k.try_take(ip("198.51.100.1"), now));
        assert!(k.try_take(ip("198.51.100.2"), now));
        assert!(k.try_take(ip("2001:db8:1:2::1"), now));
        assert!(k.try_take(ip("2001:db8:1:2:ffff::2"), now));
        assert!(
            !k.try_take(ip("2001:db8:1:2:abcd::3"), now),
            "same /64 shares a bucket"
        );
        let k = KeyedBuckets::new(Rate::per_sec(1.0), 2, 100)
            .with_sources(SourcePrefix { ipv4: 24, ipv6: 64 });
        assert!(k.try_take(ip("198.51.100.1"), now));
        assert!(k.try_take(ip("198.51.100.2"), now));
        assert!(
            !k.try_take(ip("198.51.100.3"), now),
            "same /24 shares a bucket"
        );
        assert!(k.try_take(ip("198.51.101.1"), now));
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn keyed_buckets_stay_bounded() {
        let k = KeyedBuckets::new(Rate::per_sec(1.0), 2, 64);
        let now = Timestamp::from_secs(1);
        for i in 0..10_000u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            k.try_take(IpAddr::V4(a), now);
            assert!(k.len() <= 64);
        }
    }

    #[test]
    fn eviction_prefers_full_buckets_then_oldest() {
        let k = KeyedBuckets::new(Rate::per_sec(1.0), 2, 8);
        // An abusive group drains its bucket at t=10 and keeps being used.
        let abuser = ip("192.0.2.1");
        let t = Timestamp::from_secs(10);
        assert!(k.try_take(abuser, t) && k.try_take(abuser, t));
        assert!(!k.try_take(abuser, t));
        // Old groups used at t=1 are full again by t=10 and are forgotten first.
        for i in 0..7u8 {
            k.try_take(IpAddr::from([10, i, 0, 1]), Timestamp::from_secs(1));
        }
        assert_eq!(k.len(), 8);
        assert!(k.try_take(ip("203.0.113.9"), t));
        assert!(k.len() <= 8);
        assert!(
            !k.try_take(abuser, t),
            "the drained bucket was not reset by eviction"
        );
    }

    /// One scanner's full `nmap -T4` 1000-port scan with 15 % retransmissions, sent as fast as
    /// 2000 probes/s, is answered completely with the default limits.
    #[test]
    fn default_limits_answer_a_full_nmap_scan() {
        let limiter = RateLimiter::new(&ProbesConfig::default(), SourcePrefix::default());
        let scanner = ip("198.51.100.2");
        let mut answered = 0;
        for i in 0..1150u64 {
            let now = Timestamp::from_nanos((1_000_000 + i * 500) * 1000);
            answered += usize::from(limiter.try_take(scanner, now).is_ok());
        }
        assert_eq!(answered, 1150);
    }

    #[test]
    fn default_limits_cap_a_flood() {
        let limiter = RateLimiter::new(&ProbesConfig::default(), SourcePrefix::default());
        // One source flooding for 10 s at 10 kpps: burst + rate × time.
        let flooder = ip("198.51.100.2");
        let mut answered = 0;
        for i in 0..100_000u64 {
            let now = Timestamp::from_nanos((1_000_000 + i * 100) * 1000);
            answered += usize::from(limiter.try_take(flooder, now).is_ok());
        }
        assert!((3100..=3300).contains(&answered), "{answered}");
        let t = Timestamp::from_secs(11);
        let _ = limiter.try_take(flooder, t);
        assert_eq!(limiter.try_take(flooder, t), Err(Limited::Source));
        // Forged sources from everywhere hit the global cap.
        let limiter = RateLimiter::new(&ProbesConfig::default(), SourcePrefix::default());
        let mut answered = 0;
        let mut refused_global = 0;
        for i in 0..100_000u32 {
            let now = Timestamp::from_nanos((1_000_000 + u64::from(i) * 100) * 1000);
            match limiter.try_take(IpAddr::from((0x0a00_0000 + (i << 8)).to_be_bytes()), now) {
                Ok(()) => answered += 1,
                Err(Limited::Global) => refused_global += 1,
                Err(Limited::Source) => {}
            }
        }
        assert!((6900..=7100).contains(&answered), "{answered}");
        assert_eq!(answered + refused_global, 100_000);
    }

    #[test]
    fn rates_parse() {
        assert_eq!("200/s".parse::<Rate>().unwrap(), Rate::per_sec(200.0));
        assert_eq!(" 600 / min ".parse::<Rate>().unwrap(), Rate::per_sec(10.0));
        assert_eq!("7200/h".parse::<Rate>().unwrap(), Rate::per_sec(2.0));
        assert_eq!("50".parse::<Rate>().unwrap(), Rate::per_sec(50.0));
        assert!(matches!("200/d".parse::<Rate>(), Err(RateError::Unit(_))));
        assert!(matches!(
            "fast/s".parse::<Rate>(),
            Err(RateError::Number(_))
        ));
        assert!(matches!("-1/s".parse::<Rate>(), Err(RateError::Number(_))));
        assert!(matches!("inf/s".parse::<Rate>(), Err(RateError::Number(_))));
    }

    fn parse(toml: &str) -> Result<ProbesConfig, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(toml, config::FileFormat::Toml))
            .build()?
            .get("probes")
    }

    #[test]
    fn config_defaults_and_overrides() {
        let cfg = parse("[probes]\nrespond = \"rst\"\n").unwrap();
        assert_eq!(cfg, ProbesConfig::default());
        let cfg = parse(
            "[probes]\nrespond = \"drop\"\nrate = \"100/s\"\nper_source_rate = 20\nburst = 5\n",
        )
        .unwrap();
        assert_eq!(cfg.respond, ProbeMode::Drop);
        assert_eq!(cfg.rate, Rate::per_sec(100.0));
        assert_eq!(cfg.per_source_rate, Rate::per_sec(20.0));
        assert_eq!(cfg.burst, 5);
        assert_eq!(cfg.per_source_burst, 1200);
        cfg.validate().unwrap();
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = parse("[probes]\nrats = 1\n").unwrap_err().to_string();
        assert!(err.contains("rats"), "{err}");
        let err = parse("[probes]\nrespond = \"reject\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reject"), "{err}");
        let err = parse("[probes]\nrate = \"10/fortnight\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fortnight"), "{err}");
        let cfg = ProbesConfig {
            per_source_rate: Rate::per_sec(0.0),
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("probes.per_source_rate:"));
        let cfg = ProbesConfig {
            burst: 0,
            ..Default::default()
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("probes.burst:"));
    }
}
