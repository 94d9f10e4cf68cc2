//! `statewall replay`: runs a capture through the engine with the capture's timestamps and
//! reports every dropped packet with its reason.
//!
//! Output contract (stdout): one line per dropped packet (and per accepted packet with
//! `verbose`), then the drops per reason, and as the **last line**
//! `packets=N accepted=N dropped=N skipped=N held=N` (`skipped`: frames that are not IP;
//! `held`: fragments taken by reassembly, see below).
//!
//! Fragments are reassembled first by default ([`defrag`]), as the gateway's kernel does before
//! the queue: a datagram is judged once, on the frame that completes it, and its other
//! fragments (and those of datagrams that never complete, or that reassembly discards) count
//! as `held`. [`Fragments::AsSeen`] hands every fragment to the engine instead, as on a
//! gateway without kernel reassembly.

pub mod defrag;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use thiserror::Error;

use crate::engine::{Decision, Engine};
use crate::packet::{Packet, PacketMeta, Transport};
use crate::proto;
use crate::time::Timestamp;
use defrag::{Outcome, Reassembler};

/// A capture that cannot be replayed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// Not a pcap or pcapng file, or a broken one.
    #[error("cannot read capture: {0}")]
    Capture(String),
    /// A link type statewall cannot strip to the IP header.
    #[error("unsupported link type {0:?} (supported: Ethernet, Linux cooked v1/v2, raw IP, BSD loopback)")]
    LinkType(DataLink),
    /// Writing the report failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// How to report.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    /// JSON lines instead of text.
    pub json: bool,
    /// Also report accepted packets (and fragments held by reassembly).
    pub verbose: bool,
    /// What to do with IP fragments.
    pub fragments: Fragments,
}

/// What replay does with IP fragments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragments {
    /// Reassemble them before the engine, as the gateway's kernel does (the default).
    #[default]
    Reassemble,
    /// Hand each fragment to the engine as it is (a gateway without kernel reassembly).
    AsSeen,
}

/// Totals of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Frames read.
    pub packets: u64,
    /// IP packets accepted.
    pub accepted: u64,
    /// IP packets dropped.
    pub dropped: u64,
    /// Frames that are not IP.
    pub skipped: u64,
    /// Fragments taken by reassembly and not judged themselves: every fragment of a datagram
    /// but the one that completed it, and the fragments of datagrams never completed or
    /// discarded.
    pub held: u64,
    /// Drops per reason name.
    pub drops: BTreeMap<String, u64>,
    /// 1-based frame index and reason of every drop.
    pub dropped_frames: Vec<(u64, String)>,
}

/// One frame of a capture.
struct Frame {
    time: Duration,
    link: DataLink,
    orig_len: usize,
    data: Vec<u8>,
}

/// Reads every frame of a pcap or pcapng capture.
fn read_frames(mut input: impl Read) -> Result<Vec<Frame>, ReplayError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| ReplayError::Capture(e.to_string()))?;
    let cap = |e: pcap_file::PcapError| ReplayError::Capture(e.to_string());
    let mut frames = Vec::new();
    if bytes.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = PcapNgReader::new(&bytes[..]).map_err(cap)?;
        let mut links = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.map_err(cap)? {
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(p) => frames.push(Frame {
                    time: p.timestamp,
                    link: links
                        .get(p.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET),
                    orig_len: p.original_len as usize,
                    data: p.data.into_owned(),
                }),
                Block::SimplePacket(p) => frames.push(Frame {
                    time: Duration::ZERO,
                    link: links.first().copied().unwrap_or(DataLink::ETHERNET),
                    orig_len: p.original_len as usize,
                    data: p.data.into_owned(),
                }),
                _ => {}
            }
        }
    } else {
        frames = read_pcap(&bytes)?;
    }
    Ok(frames)
}

/// Reads a classic pcap file (either byte order, micro- or nanosecond timestamps).
///
/// Hand-written because header-only captures (`tcpdump -s 128`) legitimately have original
/// lengths above the snap length, which stricter readers reject.
fn read_pcap(bytes: &[u8]) -> Result<Vec<Frame>, ReplayError> {
    let bad = |what: &str| ReplayError::Capture(what.to_string());
    let magic = bytes
        .get(..4)
        .ok_or_else(|| bad("file too short for a pcap header"))?;
    let (big_endian, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
        _ => return Err(bad("not a pcap or pcapng file")),
    };
    let u32_at = |at: usize| -> Result<u32, ReplayError> {
        let b: [u8; 4] = bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("truncated pcap file"))?;
        Ok(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let link = DataLink::from(u32_at(20)?);
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (secs, frac, incl, orig) = (
            u32_at(at)?,
            u32_at(at + 4)?,
            u32_at(at + 8)?,
            u32_at(at + 12)?,
        );
        let start = at + 16;
        let end = start
            .checked_add(incl as usize)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("truncated packet record"))?;
        let sub = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        frames.push(Frame {
            time: Duration::new(u64::from(secs), sub.min(999_999_999)),
            link,
            orig_len: (orig as usize).max(end - start),
            data: bytes[start..end].to_vec(),
        });
        at = end;
    }
    Ok(frames)
}

/// Offset of the IP header in a frame of link type `link`, or `None` for a non-IP frame.
fn ip_offset(link: DataLink, data: &[u8]) -> Result<Option<usize>, ReplayError> {
    let is_ip = |ethertype: u16| matches!(ethertype, 0x0800 | 0x86dd);
    let be16 = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    Ok(match link {
        DataLink::ETHERNET => {
            // Any number of VLAN tags (802.1Q, 802.1ad, pre-standard QinQ 0x9100): each is 4
            // bytes, so the walk ends at the frame's end.
            let mut at = 12;
            while matches!(be16(at), Some(0x8100 | 0x88a8 | 0x9100)) {
                at += 4;
            }
            be16(at).filter(|t| is_ip(*t)).map(|_| at + 2)
        }
        DataLink::LINUX_SLL => be16(14).filter(|t| is_ip(*t)).map(|_| 16),
        DataLink::LINUX_SLL2 => be16(0).filter(|t| is_ip(*t)).map(|_| 20),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(0),
        DataLink::NULL | DataLink::LOOP => {
            data.get(4).filter(|b| matches!(*b >> 4, 4 | 6)).map(|_| 4)
        }
        other => return Err(ReplayError::LinkType(other)),
    })
}

/// Replays `input` through `engine`, writing the report to `out`.
pub fn replay(
    input: impl Read,
    engine: &Engine,
    opts: ReplayOptions,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let frames = read_frames(input)?;
    let start = frames.first().map_or(Duration::ZERO, |f| f.time);
    let mut sum = ReplaySummary::default();
    let mut defrag = Reassembler::default();
    for (i, frame) in frames.iter().enumerate() {
        let index = i as u64 + 1;
        sum.packets += 1;
        let Some(off) = ip_offset(frame.link, &frame.data)? else {
            sum.skipped += 1;
            continue;
        };
        let mut ip = &frame.data[off..];
        let mut wire_len = frame.orig_len.saturating_sub(off);
        let mut fragments = None;
        let whole;
        if opts.fragments == Fragments::Reassemble {
            match defrag.push(ip, wire_len, frame.time) {
                Outcome::Whole => {}
                Outcome::Complete(bytes, n) => {
                    whole = bytes;
                    (ip, wire_len, fragments) = (&whole[..], whole.len(), Some(n));
                }
                Outcome::Held => {
                    sum.held += 1;
                    report_held(out, opts, index, frame.time, None)?;
                    continue;
                }
                Outcome::Discarded(why) => {
                    sum.held += 1;
                    report_held(out, opts, index, frame.time, Some(why))?;
                    continue;
                }
            }
        }
        let meta = PacketMeta {
            wire_len: Some(wire_len),
            ..PacketMeta::default()
        };
        // Engine time starts at the first frame (entries store compact ticks).
        let now = Timestamp::from_duration(frame.time.saturating_sub(start));
        let d = engine.process(ip, &meta, now);
        if let Some(reason) = d.reason() {
            sum.dropped += 1;
            *sum.drops.entry(reason.name().to_string()).or_default() += 1;
            sum.dropped_frames.push((index, reason.name().to_string()));
        } else {
            sum.accepted += 1;
        }
        if !d.accepted() || opts.verbose {
            let line = Reported {
                index,
                time: frame.time,
                ip,
                meta: &meta,
                decision: &d,
                fragments,
            };
            report(out, opts, &line)?;
        }
    }
    if opts.json {
        writeln!(out, "{}", serde_json::json!({ "drops": sum.drops }))?;
    } else if !sum.drops.is_empty() {
        writeln!(out, "--- drops by reason")?;
        for (reason, n) in &sum.drops {
            writeln!(out, "{reason:<24} {n}")?;
        }
    }
    writeln!(
        out,
        "packets={} accepted={} dropped={} skipped={} held={}",
        sum.packets, sum.accepted, sum.dropped, sum.skipped, sum.held
    )?;
    Ok(sum)
}

/// A capture time as reports show it: seconds and microseconds.
fn seconds(time: Duration) -> String {
    format!("{}.{:06}", time.as_secs(), time.subsec_micros())
}

/// With `verbose`: a fragment held by reassembly, or dropped by it (`why`).
fn report_held(
    out: &mut impl Write,
    opts: ReplayOptions,
    index: u64,
    time: Duration,
    why: Option<defrag::Discard>,
) -> Result<(), ReplayError> {
    if !opts.verbose {
        return Ok(());
    }
    let time = seconds(time);
    let what = why.map_or("held", |_| "discarded");
    if opts.json {
        let line = serde_json::json!({
            "index": index, "time": time, "fragment": what, "why": why.map(|w| w.name()),
        });
        writeln!(out, "{line}")?;
    } else {
        let why = why.map(|w| format!(" ({})", w.name())).unwrap_or_default();
        writeln!(out, "{time} #{index} fragment {what}{why}")?;
    }
    Ok(())
}

/// One reported packet: its frame number and time, its bytes from the IP header on, and the
/// engine's decision.
struct Reported<'a> {
    index: u64,
    time: Duration,
    ip: &'a [u8],
    meta: &'a PacketMeta<'a>,
    decision: &'a Decision,
    /// The datagram was reassembled from this many fragments.
    fragments: Option<usize>,
}

fn report(out: &mut impl Write, opts: ReplayOptions, r: &Reported<'_>) -> Result<(), ReplayError> {
    let (index, ip, d) = (r.index, r.ip, r.decision);
    let time = r.time;
    let verdict = d.reason().map_or("accept", |r| r.name());
    let state = d.state.map(|s| s.to_string());
    let time = seconds(time);
    let Ok(p) = Packet::decode(ip, r.meta) else {
        if opts.json {
            let line = serde_json::json!({"index": index, "time": time, "reason": verdict});
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{time} #{index} (undecodable {} bytes) {verdict}",
                ip.len()
            )?;
        }
        return Ok(());
    };
    let (sport, dport) = p.ports();
    let proto = proto::Name(p.proto).to_string();
    let (detail, flags) = match &p.transport {
        Transport::Tcp(t) => (
            format!(
                "[{}] seq={} ack={} win={} len={}",
                t.flags, t.seq, t.ack, t.window, t.payload_len
            ),
            Some(t.flags.to_string()),
        ),
        Transport::Icmp(h) => (format!("type={} code={}", h.icmp_type, h.code), None),
        Transport::Fragment => ("fragment".to_string(), None),
        _ => (String::new(), None),
    };
    if opts.json {
        let line = serde_json::json!({
            "index": index, "time": time, "src": p.src, "dst": p.dst, "proto": proto,
            "sport": sport, "dport": dport, "flags": flags,
            "len": p.len, "verdict": if d.accepted() { "accept" } else { "drop" },
            "reason": d.reason().map(|r| r.name()), "state": state,
            "fragments": r.fragments,
        });
        writeln!(out, "{line}")?;
    } else {
        let state = state.map(|s| format!(" state={s}")).unwrap_or_default();
        let kind = if d.accepted() { "accept" } else { "drop" };
        let frags = r
            .fragments
            .map(|n| format!(" fragments={n}"))
            .unwrap_or_default();
        let reason = d
            .reason()
            .map(|r| format!(" reason={}", r.name()))
            .unwrap_or_default();
        writeln!(
            out,
            "{time} #{index} {}:{sport} > {}:{dport} {proto} {detail}{frags} {kind}{reason}{state}",
            p.src, p.dst
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::testing::{Pair, Side, ACK, FIN, RST, SYN};
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

    fn capture(link: DataLink, frames: &[Vec<u8>]) -> Vec<u8> {
        let header = PcapHeader {
            datalink: link,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).expect("header");
        for (i, f) in frames.iter().enumerate() {
            let p = PcapPacket::new(Duration::from_millis(1000 + i as u64), f.len() as u32, f);
            w.write_packet(&p).expect("write");
        }
        w.into_writer()
    }

    fn tcp(from_client: bool, flags: &str, seq: u32, ack: u32) -> Vec<u8> {
        let side = if from_client {
            Side::Client
        } else {
            Side::Server
        };
        let bits = flags.chars().fold(0, |f, c| match c {
            'S' => f | SYN,
            'A' => f | ACK,
            'F' => f | FIN,
            'R' => f | RST,
            _ => f,
        });
        Pair::V4.tcp(side, bits, seq, ack).window(1000).build()
    }

    fn run(pcap: &[u8]) -> (ReplaySummary, String) {
        run_with(pcap, ReplayOptions::default())
    }

    fn run_with(pcap: &[u8], opts: ReplayOptions) -> (ReplaySummary, String) {
        let engine = Engine::new(EngineConfig::default());
        let mut out = Vec::new();
        let sum = replay(pcap, &engine, opts, &mut out).expect("replay");
        (sum, String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn raw_ip_capture_reports_drops_and_summary_last() {
        let frames = vec![
            tcp(true, "S", 100, 0),
            tcp(false, "SA", 900, 101),
            tcp(true, "A", 101, 901),
            tcp(true, "FA", 5_000_000, 901),
        ];
        let (sum, text) = run(&capture(DataLink::RAW, &frames));
        assert_eq!(
            sum.dropped_frames,
            vec![(4, "seq_above_window".to_string())]
        );
        let last = text.lines().last().expect("lines");
        assert_eq!(last, "packets=4 accepted=3 dropped=1 skipped=0 held=0");
        assert!(text.contains("#4 198.51.100.2:40000 > 203.0.113.2:80 tcp [F.]"));
    }

    #[test]
    fn ethernet_capture_skips_non_ip_frames() {
        let arp = {
            let mut f = vec![0xffu8; 12];
            f.extend_from_slice(&[0x08, 0x06]);
            f.extend_from_slice(&[0u8; 28]);
            f
        };
        let frames = vec![arp, tagged(&[], &tcp(true, "A", 1, 1))];
        let (sum, text) = run(&capture(DataLink::ETHERNET, &frames));
        assert_eq!((sum.skipped, sum.dropped), (1, 1));
        assert!(text.ends_with("packets=2 accepted=0 dropped=1 skipped=1 held=0\n"));
        assert!(text.contains("no_connection"));
    }

    /// An Ethernet frame with one VLAN tag per TPID in `tpids`, outermost first.
    fn tagged(tpids: &[u16], ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for (i, tpid) in tpids.iter().enumerate() {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn ethernet_frames_are_read_under_any_number_of_vlan_tags() {
        // One connection whose frames carry 0 to 4 tags of the three TPIDs in use (802.1Q,
        // 802.1ad, the pre-standard QinQ 0x9100): a frame the reader skipped would leave the
        // handshake without its SYN and every later segment would be dropped.
        let frames = vec![
            tagged(&[0x8100, 0x8100, 0x8100], &tcp(true, "S", 100, 0)),
            tagged(&[], &tcp(false, "SA", 900, 101)),
            tagged(&[0x88a8, 0x8100], &tcp(true, "A", 101, 901)),
            tagged(
                &[0x9100, 0x88a8, 0x8100, 0x8100],
                &tcp(true, "FA", 101, 901),
            ),
            tagged(&[0x8100], &tcp(false, "FA", 901, 102)),
            tagged(&[0x8100, 0x8100, 0x8100], &tcp(true, "A", 102, 902)),
        ];
        let (sum, text) = run(&capture(DataLink::ETHERNET, &frames));
        assert_eq!((sum.skipped, sum.dropped), (0, 0), "{text}");
        assert!(
            text.ends_with("packets=6 accepted=6 dropped=0 skipped=0 held=0\n"),
            "{text}"
        );
    }

    /// The handshake of suricata-verify's bug-6887: the SYN in tiny fragments, its TCP header
    /// (with options) split over several, last fragment first (IPv6: 24-byte fragments, the
    /// first holding the whole 20-byte header as RFC 8200 requires).
    fn fragmented_handshake(pair: Pair) -> Vec<Vec<u8>> {
        let syn = pair
            .tcp(Side::Client, SYN, 100, 0)
            .window(1000)
            .mss(1460)
            .wscale(14)
            .build();
        let size = if pair.is_v6() { 24 } else { 8 };
        let mut frames = crate::testing::fragments(&syn, size, 0x77);
        frames.reverse();
        frames.push(
            pair.tcp(Side::Server, SYN | ACK, 900, 101)
                .window(1000)
                .build(),
        );
        frames.push(pair.tcp(Side::Client, ACK, 101, 901).window(1000).build());
        frames
    }

    #[test]
    fn fragments_are_reassembled_before_the_engine_as_the_kernel_does() {
        for pair in [Pair::V4, Pair::V6] {
            let frames = fragmented_handshake(pair);
            let n = frames.len() as u64;
            let (sum, text) = run(&capture(DataLink::RAW, &frames));
            // One datagram judged (accepted: the SYN), the other fragments held.
            assert_eq!(sum.dropped_frames, vec![], "{pair:?} {text}");
            assert_eq!((sum.accepted, sum.held), (3, n - 3), "{text}");
            let last = format!("packets={n} accepted=3 dropped=0 skipped=0 held={}", n - 3);
            assert!(text.ends_with(&format!("{last}\n")), "{text}");
        }
    }

    #[test]
    fn without_reassembly_the_engine_judges_each_fragment() {
        let frames = fragmented_handshake(Pair::V4);
        let opts = ReplayOptions {
            fragments: Fragments::AsSeen,
            verbose: true,
            ..ReplayOptions::default()
        };
        let (sum, _) = run_with(&capture(DataLink::RAW, &frames), opts);
        // The first fragment cannot hold the TCP header: malformed, and so the rest after it.
        assert_eq!(sum.held, 0);
        assert!(
            sum.drops.contains_key("malformed_fragment"),
            "{:?}",
            sum.drops
        );
    }

    #[test]
    fn reassembly_reports_held_and_discarded_fragments_when_verbose() {
        let syn = Pair::V4.tcp(Side::Client, SYN, 100, 0).payload(16).build();
        let mut frames = crate::testing::fragments(&syn, 8, 5);
        let dup = frames[0].clone();
        frames.insert(1, dup);
        let opts = ReplayOptions {
            verbose: true,
            ..ReplayOptions::default()
        };
        let (_, text) = run_with(&capture(DataLink::RAW, &frames), opts);
        assert!(text.contains("#1 fragment held\n"), "{text}");
        assert!(
            text.contains("#2 fragment discarded (duplicate)\n"),
            "{text}"
        );
        assert!(
            text.contains(" fragments=5 accept state=SYN_SENT"),
            "{text}"
        );
    }

    #[test]
    fn a_frame_that_is_all_vlan_tags_is_skipped() {
        let mut f = vec![0u8; 12];
        for _ in 0..3 {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        let (sum, _) = run(&capture(DataLink::ETHERNET, &[f]));
        assert_eq!((sum.skipped, sum.dropped), (1, 0));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let engine = Engine::new(EngineConfig::default());
        let e = replay(
            &b"not a capture"[..],
            &engine,
            ReplayOptions::default(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(e, ReplayError::Capture(_)));
    }

    #[test]
    fn json_lines() {
        let opts = ReplayOptions {
            json: true,
            ..ReplayOptions::default()
        };
        let (_, text) = run_with(&capture(DataLink::RAW, &[tcp(true, "F", 1, 0)]), opts);
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("line")).expect("json");
        assert_eq!(first["reason"], "tcp_fin_no_ack");
        assert_eq!(first["index"], 1);
    }
}
