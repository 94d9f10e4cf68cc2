//! Time as the engine sees it: a monotonic timestamp handed in by the caller; and the one
//! conversion from Unix seconds to a calendar date, for the outputs that print dates: in UTC,
//! or in a [`Zone`] (RFC 3164 syslog lines are local time).
//!
//! The engine never reads a clock. The daemon passes the time elapsed since it started; replay
//! passes capture timestamps; tests pass whatever they like.

use std::fmt;
use std::time::Duration;

/// A point on a monotonic time line, in nanoseconds since an arbitrary origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin of the time line.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(1_000_000))
    }

    /// A timestamp `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// A timestamp `d` after the origin.
    pub fn from_duration(d: Duration) -> Self {
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the origin.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Whole seconds since the origin, as a float (for display).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// This timestamp moved `d` later (saturating).
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The coarse tick (tenths of a second) stored in table entries. It wraps every 13.6
    /// years; [`Tick`] compares wrap-safely.
    pub(crate) fn tick(self) -> Tick {
        // Truncation is the wrap.
        Tick((self.0 / TICK_NANOS) as u32)
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_secs_f64())
    }
}

const TICK_NANOS: u64 = 100_000_000;

/// A compact time (tenths of a second, wrapping every 13.6 years) kept in each connection
/// entry so that entries stay small.
///
/// Ticks compare as serial numbers (RFC 1982, as the kernel compares jiffies): a tick is later
/// than another when it is less than 2^31 tenths (6.8 years) ahead of it. A clock far from its
/// origin (a long uptime, concatenated captures years apart) therefore keeps working; no span
/// stored in an entry may be that long, so [`Tick::after_secs`] caps it at [`Tick::MAX_SECS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tick(pub(crate) u32);

impl Tick {
    /// The longest span an entry may store: 2^30 tenths of a second (3.4 years).
    pub(crate) const MAX_SECS: u32 = (1 << 30) / 10;

    /// This tick moved `secs` seconds later (at most [`Tick::MAX_SECS`]).
    pub(crate) fn after_secs(self, secs: u32) -> Tick {
        Tick(self.0.wrapping_add(secs.min(Self::MAX_SECS) * 10))
    }

    /// Tenths of a second from `now` until this tick, negative when past.
    pub(crate) fn ticks_from(self, now: Tick) -> i32 {
        // Two's complement: the serial-number distance.
        self.0.wrapping_sub(now.0) as i32
    }

    /// Whether this tick is later than `other`.
    pub(crate) fn is_after(self, other: Tick) -> bool {
        self.ticks_from(other) > 0
    }

    /// The earlier of this tick and `other`.
    pub(crate) fn earlier(self, other: Tick) -> Tick {
        if self.is_after(other) {
            other
        } else {
            self
        }
    }

    /// Seconds from `now` until this tick (0 when past).
    pub(crate) fn secs_from(self, now: Tick) -> u32 {
        u32::try_from(self.ticks_from(now)).unwrap_or(0) / 10
    }
}

/// A time zone: the offset from UTC at each instant, DST included.
///
/// The system's zone is read as the C library would, but in pure Rust (jiff): `TZ` first (a
/// name under /usr/share/zoneinfo, a `:/path`, or a POSIX rule such as `EST5EDT,M3.2.0,M11.1.0`),
/// else the TZif file /etc/localtime. Nothing calls `localtime_r`/`tzset`, which read the
/// environment without a lock and are not sound beside other threads (the `time` crate
/// refuses local offsets in multi-threaded processes for that reason). jiff caches the system
/// zone and looks again every 5 minutes, so a `timedatectl set-timezone` is picked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone(jiff::tz::TimeZone);

impl Zone {
    /// Coordinated Universal Time.
    pub const UTC: Zone = Zone(jiff::tz::TimeZone::UTC);

    /// The system's zone (`TZ`, else /etc/localtime), or why there is none.
    pub fn system() -> Result<Zone, String> {
        jiff::tz::TimeZone::try_system()
            .map(Zone)
            .map_err(|e| e.to_string())
    }

    /// A zone from the contents of a TZif file (as in /usr/share/zoneinfo).
    pub fn tzif(name: &str, data: &[u8]) -> Result<Zone, String> {
        jiff::tz::TimeZone::tzif(name, data)
            .map(Zone)
            .map_err(|e| e.to_string())
    }

    /// A zone from a POSIX `TZ` rule, e.g. `EST5EDT,M3.2.0,M11.1.0`.
    pub fn posix(rule: &str) -> Result<Zone, String> {
        jiff::tz::TimeZone::posix(rule)
            .map(Zone)
            .map_err(|e| e.to_string())
    }

    /// The zone's offset from UTC at `unix_secs`, in seconds (east positive).
    pub fn offset_secs(&self, unix_secs: u64) -> i32 {
        let at = i64::try_from(unix_secs)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok());
        // Past jiff's range (year 9999): no offset rather than a panic.
        at.map_or(0, |t| self.0.to_offset(t).seconds())
    }
}

/// A calendar date and time of day, UTC or local (syslog timestamps, `statewall status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute, 0 to 59.
    pub min: u32,
    /// Second, 0 to 59.
    pub sec: u32,
}

impl Civil {
    /// Seconds since the Unix epoch to a UTC date (Howard Hinnant's `civil_from_days`).
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        // Below 86 400: every part fits a u32.
        let rem = (secs % 86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            min: rem % 3600 / 60,
            sec: rem % 60,
        }
    }

    /// Seconds since the Unix epoch to the date and time of day in `zone` at that instant.
    pub fn from_unix_in(secs: u64, zone: &Zone) -> Civil {
        let local = i64::try_from(secs)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(zone.offset_secs(secs)));
        // Before the epoch (the first hours of 1970 east of Greenwich): the epoch.
        Civil::from_unix(u64::try_from(local).unwrap_or(0))
    }

    /// Three-letter English month name (`Jan`..`Dec`), as RFC 3164 writes it.
    pub fn month_abbrev(&self) -> &'static str {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let i = self.month.clamp(1, 12) as usize - 1;
        MONTHS[i]
    }

    /// RFC 3339 with a `Z` offset and whole seconds: `2026-11-24T19:54:02Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.min, self.sec
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn ticks_are_tenths_of_seconds() {
        assert_eq!(Timestamp::from_millis(1_250).tick(), Tick(12));
        assert_eq!(Tick(12).after_secs(3), Tick(42));
        assert_eq!(Tick(42).secs_from(Tick(12)), 3);
        assert_eq!(Tick(2).secs_from(Tick(12)), 0);
    }

    #[test]
    fn ticks_compare_across_the_wrap() {
        // 13.6 years after the origin the tick wraps; comparisons and spans go on.
        let near = Timestamp::from_secs(429_496_700).tick();
        let later = near.after_secs(120);
        assert!(later.0 < near.0, "wrapped");
        assert!(later.is_after(near) && !near.is_after(later));
        assert_eq!(later.secs_from(near), 120);
        assert_eq!(near.secs_from(later), 0);
        assert_eq!(near.earlier(later), near);
        assert_eq!(later.earlier(near), near);
        // Spans are capped well below the comparison's range.
        assert!(near.after_secs(u32::MAX).is_after(near));
    }

    #[test]
    fn dates_convert() {
        for (secs, y, m, d) in [
            (0, 1970, 1, 1),
            (951_782_400, 2000, 2, 29),
            (4_107_542_400, 2100, 3, 1),
        ] {
            let c = Civil::from_unix(secs);
            assert_eq!((c.year, c.month, c.day), (y, m, d), "{secs}");
        }
        let c = Civil::from_unix(1_795_550_042);
        assert_eq!(c.rfc3339(), "2026-11-24T19:54:02Z");
        assert_eq!(c.month_abbrev(), "Nov");
    }

    /// America/New_York from tzdata 2025b.
    pub(crate) fn new_york() -> Zone {
        let data = include_bytes!("../tests/zoneinfo/America/New_York");
        Zone::tzif("America/New_York", data).expect("TZif")
    }

    /// Local time across 2026's two DST changes in New York (TZif file and POSIX rule), and
    /// a zone a half hour off.
    #[test]
    fn local_dates_follow_the_zone_across_dst() {
        let rule = Zone::posix("EST5EDT,M3.2.0,M11.1.0").expect("rule");
        let local = |secs, zone: &Zone| {
            let c = Civil::from_unix_in(secs, zone);
            format!(
                "{} {:2} {:02}:{:02}:{:02}",
                c.month_abbrev(),
                c.day,
                c.hour,
                c.min,
                c.sec
            )
        };
        for zone in [new_york(), rule] {
            // Spring forward: 2026-03-08 07:00:00Z is 03:00 EDT, a second before 01:59:59 EST.
            assert_eq!(local(1_772_953_199, &zone), "Mar  8 01:59:59");
            assert_eq!(local(1_772_953_200, &zone), "Mar  8 03:00:00");
            assert_eq!(zone.offset_secs(1_772_953_200), -4 * 3600);
            // Fall back: 2026-11-01 06:00:00Z is 01:00 EST, a second after 01:59:59 EDT.
            assert_eq!(local(1_793_512_799, &zone), "Nov  1 01:59:59");
            assert_eq!(local(1_793_512_800, &zone), "Nov  1 01:00:00");
            assert_eq!(zone.offset_secs(1_793_512_800), -5 * 3600);
            // The day changes too: 2026-11-29T03:00:00Z is the 28th in New York.
            assert_eq!(local(1_795_921_200, &zone), "Nov 28 22:00:00");
        }
        let kolkata = Zone::posix("IST-5:30").expect("rule");
        assert_eq!(local(1_795_921_200, &kolkata), "Nov 29 08:30:00");
        assert_eq!(local(1_795_921_200, &Zone::UTC), "Nov 29 03:00:00");
        // East of Greenwich at the epoch, and far past jiff's range: no panic.
        assert_eq!(local(0, &kolkata), "Jan  1 05:30:00");
        assert_eq!(Zone::UTC.offset_secs(u64::MAX), 0);
        assert_eq!(new_york().offset_secs(u64::MAX), 0);
        assert!(Zone::tzif("x", b"not a TZif file").is_err());
        assert!(Zone::posix("not a rule").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_nanos(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(5)).as_nanos(), u64::MAX);
        assert_eq!(Timestamp::ZERO.since(t), Duration::ZERO);
    }
}
