//! One syslog line from an event body: RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`) or
//! RFC 5424 (with the body's `key=value` pairs as structured data), and RFC 6587 octet
//! counting for TCP. Pure: the time and the time zone are passed in.
//!
//! RFC 3164 has no offset in its timestamp and means the sender's local time (syslog daemons,
//! fail2ban and psad read it so); RFC 5424 writes UTC with its `Z`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::alert::{fields, Severity};
use crate::config::{Facility, Format};
use crate::time::{Civil, Zone};

/// What a line needs besides the event itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Line format.
    pub format: Format,
    /// Facility.
    pub facility: Facility,
    /// Host name, or `None` to leave it out of RFC 3164 lines (local sockets, like glibc).
    pub host: Option<&'a str>,
    /// TAG / APP-NAME.
    pub tag: &'a str,
    /// Process id.
    pub pid: u32,
    /// Enterprise number for the SD-ID.
    pub pen: u32,
    /// Zone of RFC 3164 timestamps (the system's); RFC 5424 ones are UTC.
    pub zone: &'a Zone,
}

/// Formats one syslog line (without framing) for `body` at wall-clock `time`.
pub fn format_line(h: &Header<'_>, severity: Severity, time: SystemTime, body: &str) -> String {
    let pri = (h.facility as u8) * 8 + severity.code();
    let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_micros()),
        Err(_) => (0, 0),
    };
    match h.format {
        Format::Rfc3164 => {
            let c = Civil::from_unix_in(secs, h.zone);
            let mut line = format!(
                "<{pri}>{} {:2} {:02}:{:02}:{:02} ",
                c.month_abbrev(),
                c.day,
                c.hour,
                c.min,
                c.sec
            );
            if let Some(host) = h.host {
                line.push_str(&header_field(host, 255));
                line.push(' ');
            }
            let _ = write!(line, "{}[{}]: {}", h.tag, h.pid, one_line(body));
            line
        }
        Format::Rfc5424 => {
            let c = Civil::from_unix(secs);
            format!(
                "<{pri}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z {} {} {} {} {} {}",
                c.year,
                c.month,
                c.day,
                c.hour,
                c.min,
                c.sec,
                header_field(h.host.unwrap_or("-"), 255),
                header_field(h.tag, 48),
                h.pid,
                msgid(body),
                structured_data(h.pen, body),
                one_line(body),
            )
        }
    }
}

/// Frames a line for a TCP stream: RFC 6587 octet counting (`LEN SP MSG`).
pub fn octet_frame(line: &str) -> Vec<u8> {
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

/// Control characters (newlines especially) would split the line: replace them.
fn one_line(body: &str) -> String {
    body.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An RFC 5424 header field: printable ASCII only, bounded, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v
    }
}

/// MSGID: the event's leading tag (`SCAN`, `BLOCK`, ...) when it has one.
fn msgid(body: &str) -> String {
    match body.split(' ').next() {
        Some(word) if !word.is_empty() && !word.contains('=') => header_field(word, 32),
        _ => "-".to_owned(),
    }
}

/// `[statewall@PEN key="value" ...]` from the body's key=value pairs, `-` when there are none.
fn structured_data(pen: u32, body: &str) -> String {
    let pairs = fields(body);
    let mut sd = format!("[statewall@{pen}");
    let mut any = false;
    for (key, value) in &pairs {
        let name: String = key
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
            .take(32)
            .collect();
        if name.is_empty() {
            continue;
        }
        any = true;
        let _ = write!(sd, " {name}=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                sd.push('\\');
            }
            sd.push(if c.is_control() { ' ' } else { c });
        }
        sd.push('"');
    }
    sd.push(']');
    if any {
        sd
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Facility;
    use std::time::Duration;

    /// 2026-11-29T19:05:09.123456Z
    fn when() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_795_979_109_123_456)
    }

    fn header(format: Format, host: Option<&'static str>) -> Header<'static> {
        static UTC: Zone = Zone::UTC;
        in_zone(format, host, &UTC)
    }

    fn in_zone<'z>(format: Format, host: Option<&'static str>, zone: &'z Zone) -> Header<'z> {
        Header {
            format,
            facility: Facility::Auth,
            host,
            tag: "statewall",
            pid: 42,
            pen: 32473,
            zone,
        }
    }

    const BODY: &str = "SCAN type=portscan nmap=-sF SRC=198.51.100.2 label=\"a b\" level=2";

    #[test]
    fn rfc3164_lines() {
        let line = format_line(
            &header(Format::Rfc3164, Some("gw")),
            Severity::Warning,
            when(),
            BODY,
        );
        assert_eq!(
            line,
            format!("<36>Nov 29 19:05:09 gw statewall[42]: {BODY}")
        );
        let local = format_line(
            &header(Format::Rfc3164, None),
            Severity::Info,
            when(),
            "x\ny",
        );
        assert_eq!(local, "<38>Nov 29 19:05:09 statewall[42]: x y");
        let early = UNIX_EPOCH + Duration::from_secs(86_400 * 3);
        let line = format_line(&header(Format::Rfc3164, None), Severity::Info, early, "x");
        assert_eq!(line, "<38>Jan  4 00:00:00 statewall[42]: x");
    }

    /// RFC 3164 in the zone's local time, DST included; RFC 5424 stays UTC.
    #[test]
    fn rfc3164_is_local_time_and_rfc5424_utc() {
        let ny = crate::time::tests::new_york();
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let line = |format, secs| {
            format_line(
                &in_zone(format, Some("gw"), &ny),
                Severity::Warning,
                at(secs),
                "x",
            )
        };
        // 2026-11-29T19:05:09Z: 14:05:09 EST.
        assert_eq!(
            format_line(
                &in_zone(Format::Rfc3164, Some("gw"), &ny),
                Severity::Warning,
                when(),
                BODY
            ),
            format!("<36>Nov 29 14:05:09 gw statewall[42]: {BODY}")
        );
        // Across 2026's DST changes (2026-03-08 07:00:00Z and 2026-11-01 06:00:00Z).
        assert_eq!(
            line(Format::Rfc3164, 1_772_953_199),
            "<36>Mar  8 01:59:59 gw statewall[42]: x"
        );
        assert_eq!(
            line(Format::Rfc3164, 1_772_953_200),
            "<36>Mar  8 03:00:00 gw statewall[42]: x"
        );
        assert_eq!(
            line(Format::Rfc3164, 1_793_512_799),
            "<36>Nov  1 01:59:59 gw statewall[42]: x"
        );
        assert_eq!(
            line(Format::Rfc3164, 1_793_512_800),
            "<36>Nov  1 01:00:00 gw statewall[42]: x"
        );
        assert_eq!(
            line(Format::Rfc5424, 1_793_512_800),
            "<36>1 2026-11-01T06:00:00.000000Z gw statewall 42 x - x"
        );
    }

    #[test]
    fn rfc5424_lines_with_structured_data() {
        let line = format_line(
            &header(Format::Rfc5424, Some("gw")),
            Severity::Warning,
            when(),
            BODY,
        );
        assert_eq!(
            line,
            format!(
                "<36>1 2026-11-29T19:05:09.123456Z gw statewall 42 SCAN [statewall@32473 \
                 type=\"portscan\" nmap=\"-sF\" SRC=\"198.51.100.2\" label=\"a b\" level=\"2\"] {BODY}"
            )
        );
        let escaped = structured_data(1, r#"X v="a]\"b\\" w=ok"#);
        assert_eq!(escaped, r#"[statewall@1 v="a\]\"b\\" w="ok"]"#);
        let bare = format_line(
            &header(Format::Rfc5424, None),
            Severity::Notice,
            when(),
            "started",
        );
        assert_eq!(
            bare,
            "<37>1 2026-11-29T19:05:09.123456Z - statewall 42 started - started"
        );
    }

    #[test]
    fn octet_counting() {
        assert_eq!(
            octet_frame("<36>1 - - - - - x"),
            b"17 <36>1 - - - - - x".to_vec()
        );
    }
}
