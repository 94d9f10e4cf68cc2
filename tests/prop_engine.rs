//! Property tests of the decoder and the engine:
//! - arbitrary bytes never panic;
//! - random valid two-endpoint TCP conversations (random segment sizes, windows and window
//!   scales, reordering within the window, duplicates, loss and retransmission, both close
//!   orders) are never dropped;
//! - targeted corruptions of such conversations (sequence far outside the window, ACK of data
//!   never sent, forbidden flag combinations) always are;
//! - such conversations through a table of 8 entries kept full by a flood of spoofed SYNs (of
//!   both families, between any two of the conversation's packets, until both ends sent their
//!   FIN) are never dropped either: an evicted handshake completes, a closing connection goes
//!   after the half-open ones.

use proptest::prelude::*;
use statewall::conntrack::Limits;
use statewall::engine::{Engine, EngineConfig};
use statewall::testing::{self, Pair, ACK, FIN, PSH, RST, SYN, URG};
use statewall::verdict::DropReason;
use statewall::{PacketMeta, Timestamp};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let e = Engine::new(EngineConfig::default());
        e.set_pickup_until(Some(Timestamp::from_secs(10)));
        let _ = e.process(&bytes, &PacketMeta::default(), Timestamp::ZERO);
        let meta = PacketMeta { wire_len: Some(bytes.len() * 3), ..Default::default() };
        let _ = e.process(&bytes, &meta, Timestamp::from_secs(1));
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        seed in any::<u64>(),
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..8),
    ) {
        let mut sim = Sim::new(seed, Params::default());
        sim.handshake();
        let mut pkt = sim.segment(Side::A, ACK | PSH, 100, 0);
        for (at, v) in flips {
            if let Some(b) = pkt.get_mut(at) {
                *b ^= v;
            }
        }
        let now = sim.now();
        let _ = sim.engine.process(&pkt, &PacketMeta::default(), now);
    }

}

proptest! {
    // Whole conversations are long: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn valid_conversations_are_never_dropped(seed in any::<u64>(), params in params()) {
        let mut sim = Sim::new(seed, params);
        sim.run_conversation();
        prop_assert_eq!(&sim.drops, &Vec::<String>::new());
        prop_assert!(sim.delivered_bytes[0] <= sim.params.len[0]);
    }

    /// Port reuse: after a complete transfer the old flow is left half-closed (FIN one way),
    /// with both FINs but the last ACK (LAST_ACK) or closed (TIME_WAIT); the client then
    /// opens a new connection from the same port with a random ISN and other options (window
    /// scale, so a resynchronisation that forgets the SYN's scale drops the data).
    #[test]
    fn port_reuse_after_a_close_is_never_dropped(
        seed in any::<u64>(),
        params in params(),
        again in params(),
        closing in 0u8..3,
    ) {
        let mut sim = Sim::new(seed, params.clone());
        prop_assume!(sim.transfer());
        let (first, second) = sim.closers();
        sim.close(first);
        match closing {
            0 => {}
            1 => {
                // The second FIN seen, its ACK never.
                sim.send_fin(second);
                if let Some(fin) = sim.flight.pop() {
                    sim.wire(&fin.bytes, "second fin");
                }
            }
            _ => sim.close(second),
        }
        let mut next = sim.reuse(Params { ipv6: params.ipv6, ..again });
        next.run_conversation();
        prop_assert_eq!(&next.drops, &Vec::<String>::new());
    }

    #[test]
    fn valid_conversations_outlive_a_spoofed_syn_flood(
        seed in any::<u64>(),
        params in params(),
        per_packet in 0u32..6,
    ) {
        let mut sim = Sim::new(seed, params);
        sim.flood_through_a_full_table(per_packet);
        sim.run_conversation();
        prop_assert_eq!(&sim.drops, &Vec::<String>::new());
    }

    #[test]
    fn corruptions_are_always_dropped(seed in any::<u64>(), params in params(), kind in 0u8..5) {
        let mut sim = Sim::new(seed, params);
        sim.handshake();
        sim.exchange(40);
        let (pkt, want) = sim.corruption(kind);
        let now = sim.now();
        let d = sim.engine.process(&pkt, &PacketMeta::default(), now);
        prop_assert_eq!(d.reason(), Some(want));
    }
}

/// Simulation steps per conversation before it is cut short.
const STEP_BUDGET: usize = 60_000;

#[derive(Clone, Debug)]
struct Params {
    /// Bytes each side sends.
    len: [u32; 2],
    /// Receive window of each side (bytes, before scaling).
    window: [u32; 2],
    /// Window scale each side offers (None: no option).
    scale: [Option<u8>; 2],
    mss: u32,
    /// Percentages.
    loss: u32,
    dup: u32,
    /// How far delivery may reorder the in-flight queue.
    reorder: usize,
    /// Who closes first.
    a_closes_first: bool,
    ipv6: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            len: [5000, 20000],
            window: [65535, 65535],
            scale: [Some(7), Some(7)],
            mss: 1400,
            loss: 5,
            dup: 5,
            reorder: 3,
            a_closes_first: true,
            ipv6: false,
        }
    }
}

fn params() -> impl Strategy<Value = Params> {
    (
        (0u32..20_000, 0u32..60_000),
        (536u32..2_000_000, 536u32..2_000_000),
        (proptest::option::of(0u8..=9), proptest::option::of(0u8..=9)),
        prop_oneof![Just(536u32), Just(1400), Just(8960), Just(60000)],
        (0u32..15, 0u32..15, 1usize..6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(len, window, scale, mss, (loss, dup, reorder), first, ipv6)| {
                let (len0, len1) = len;
                let scale = [scale.0, scale.1];
                let both = scale[0].is_some() && scale[1].is_some();
                // Without scaling on both sides the window field caps the window at 65535.
                let cap = |w: u32, s: Option<u8>| {
                    let shift = if both { u32::from(s.unwrap_or(0)) } else { 0 };
                    w.min(65535 << shift).max(536)
                };
                Params {
                    len: [len0, len1],
                    window: [cap(window.0, scale[0]), cap(window.1, scale[1])],
                    scale,
                    mss,
                    loss,
                    dup,
                    reorder,
                    a_closes_first: first,
                    ipv6,
                }
            },
        )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

impl Side {
    fn i(self) -> usize {
        self as usize
    }
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One endpoint's sending and receiving state, in stream offsets.
#[derive(Clone, Debug, Default)]
struct End {
    isn: u32,
    snd_una: u32,
    snd_nxt: u32,
    fin_sent: bool,
    rcv_nxt: u32,
    fin_received: bool,
}

struct Segment {
    from: Side,
    bytes: Vec<u8>,
    /// Stream offset and length carried (for the receiver).
    off: u32,
    len: u32,
    fin: bool,
    ack_off: u32,
}

struct Sim {
    rng: u64,
    params: Params,
    engine: Engine,
    ends: [End; 2],
    flight: Vec<Segment>,
    clock_ms: u64,
    drops: Vec<String>,
    delivered_bytes: [u32; 2],
    scaling: bool,
    /// Every packet on the wire, when `SIM_DUMP=FILE` asks for a capture of failures.
    dump: Option<Vec<(Timestamp, Vec<u8>)>>,
    /// A spoofed SYN flood between the conversation's packets ([`Sim::flood_through_a_full_table`]).
    flood: Option<Flood>,
}

/// Spoofed SYNs (198.18.0.0/15 and 2001:db8:ffff::/48, each from a tuple of its own) sent
/// before each packet of the conversation: up to `per_packet`, at most `limit` in all.
struct Flood {
    per_packet: u32,
    sent: u32,
    limit: u32,
}

/// Entries of the flooded table.
const FLOODED_TABLE: usize = 8;

impl Drop for Sim {
    fn drop(&mut self) {
        let (Some(frames), Ok(path)) = (&self.dump, std::env::var("SIM_DUMP")) else {
            return;
        };
        if self.drops.is_empty() {
            return;
        }
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let header = PcapHeader {
            datalink: pcap_file::DataLink::RAW,
            ..PcapHeader::default()
        };
        let Ok(file) = std::fs::File::create(&path) else {
            return;
        };
        let Ok(mut w) = PcapWriter::with_header(file, header) else {
            return;
        };
        for (t, b) in frames {
            let p = PcapPacket::new(t.as_duration(), b.len() as u32, b);
            let _ = w.write_packet(&p);
        }
    }
}

impl Sim {
    fn new(seed: u64, params: Params) -> Sim {
        let mut sim = Sim {
            rng: seed | 1,
            scaling: params.scale[0].is_some() && params.scale[1].is_some(),
            params,
            engine: Engine::new(EngineConfig::default()),
            ends: Default::default(),
            flight: Vec::new(),
            clock_ms: 0,
            drops: Vec::new(),
            delivered_bytes: [0, 0],
            dump: std::env::var_os("SIM_DUMP").map(|_| Vec::new()),
            flood: None,
        };
        sim.ends[0].isn = sim.rand() as u32;
        sim.ends[1].isn = sim.rand() as u32;
        sim
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, percent: u32) -> bool {
        (self.rand() % 100) < u64::from(percent)
    }

    fn now(&mut self) -> Timestamp {
        self.clock_ms += 1;
        Timestamp::from_millis(self.clock_ms)
    }

    fn seq(&self, side: Side, off: u32) -> u32 {
        self.ends[side.i()].isn.wrapping_add(1).wrapping_add(off)
    }

    /// Window field a side advertises.
    fn win_field(&self, side: Side) -> u16 {
        let w = self.params.window[side.i()];
        let shift = if self.scaling {
            self.params.scale[side.i()].unwrap_or(0)
        } else {
            0
        };
        (w >> shift).min(65535) as u16
    }

    /// One header-only segment (the IP length counts `len` payload bytes the buffer does not
    /// hold, as NFQUEUE delivers it), with MSS and window scale on a SYN when `syn_opts`.
    fn build(
        &self,
        side: Side,
        flags: u8,
        (seq, ack): (u32, u32),
        len: u32,
        syn_opts: bool,
    ) -> Vec<u8> {
        let pair = if self.params.ipv6 { Pair::V6 } else { Pair::V4 }.ports(40000, 443);
        let window = if flags & SYN != 0 {
            self.params.window[side.i()].min(65535) as u16
        } else {
            self.win_field(side)
        };
        let from = match side {
            Side::A => testing::Side::Client,
            Side::B => testing::Side::Server,
        };
        let mut seg = pair
            .tcp(from, flags, seq, ack)
            .window(window)
            .payload(len as usize)
            .header_only();
        if syn_opts {
            if let Some(s) = self.params.scale[side.i()] {
                seg = seg.mss(1460).wscale(s);
            }
        }
        seg.build()
    }

    /// A data/ACK segment from `side` at stream offset `off`.
    fn segment(&self, side: Side, flags: u8, len: u32, off: u32) -> Vec<u8> {
        let e = &self.ends[side.i()];
        let ack = self.seq(side.other(), e.rcv_nxt) + u32::from(e.fin_received);
        self.build(side, flags, (self.seq(side, off), ack), len, false)
    }

    /// Runs the conversation through a table of [`FLOODED_TABLE`] entries, filled and kept
    /// full by up to `per_packet` spoofed SYNs before each of its packets, until both ends
    /// sent their FIN (after that its entry is closed and may go; so may any such entry on a
    /// gateway). The total stays well under what the table remembers of evicted handshakes.
    fn flood_through_a_full_table(&mut self, per_packet: u32) {
        self.engine = Engine::new(EngineConfig {
            limits: Limits {
                max_entries: FLOODED_TABLE,
                per_source: FLOODED_TABLE,
                early_drop_scan: 16,
                ..Limits::default()
            },
            ..EngineConfig::default()
        });
        self.flood = Some(Flood {
            per_packet,
            sent: 0,
            limit: 20_000,
        });
        for _ in 0..FLOODED_TABLE {
            self.spoofed_syn();
        }
    }

    /// One spoofed SYN of the flood, from a tuple no other SYN used (its verdict is not the
    /// conversation's: a full table of closing entries may refuse it).
    fn spoofed_syn(&mut self) {
        let Some(flood) = &mut self.flood else {
            return;
        };
        let i = flood.sent;
        flood.sent += 1;
        let [_, hi, mid, lo] = i.to_be_bytes();
        let (src, dst): (std::net::IpAddr, _) = if i % 2 == 0 {
            let src = std::net::Ipv4Addr::new(198, 18 + (hi & 1), mid, lo);
            (src.into(), Pair::V4.server)
        } else {
            let src = std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xffff,
                0,
                0,
                0,
                u16::from(hi),
                u16::from_be_bytes([mid, lo]),
            );
            (src.into(), Pair::V6.server)
        };
        let syn = testing::tcp(src, dst)
            .ports(1024 + (i % 60_000) as u16, 443)
            .flags(SYN)
            .seq(i.wrapping_mul(2_654_435_761))
            .build();
        let now = self.now();
        let _ = self.engine.process(&syn, &PacketMeta::default(), now);
    }

    /// Passes a packet through the engine; records any drop.
    fn wire(&mut self, bytes: &[u8], what: &str) {
        let closing = self.ends.iter().all(|e| e.fin_sent);
        let per_packet = match &self.flood {
            Some(f) if !closing && f.sent < f.limit => f.per_packet,
            _ => 0,
        };
        let burst = if per_packet > 0 {
            (self.rand() % u64::from(per_packet + 1)) as u32
        } else {
            0
        };
        for _ in 0..burst {
            self.spoofed_syn();
        }
        let now = self.now();
        if let Some(dump) = &mut self.dump {
            dump.push((now, bytes.to_vec()));
        }
        let d = self.engine.process(bytes, &PacketMeta::default(), now);
        if let Some(r) = d.reason() {
            self.drops.push(format!("{what}: {r}"));
        }
    }

    fn handshake(&mut self) {
        let syn = self.build(Side::A, SYN, (self.ends[0].isn, 0), 0, true);
        self.wire(&syn, "syn");
        if self.chance(20) {
            self.wire(&syn, "syn retransmit");
        }
        let isn_a = self.ends[0].isn;
        let synack = self.build(
            Side::B,
            SYN | ACK,
            (self.ends[1].isn, isn_a.wrapping_add(1)),
            0,
            true,
        );
        self.wire(&synack, "syn/ack");
        if self.chance(20) {
            self.wire(&synack, "syn/ack retransmit");
        }
        if self.chance(10) {
            // The client's SYN timer fired while the SYN/ACK was on its way.
            self.wire(&syn, "late syn retransmit");
        }
        let ack = self.segment(Side::A, ACK, 0, 0);
        self.wire(&ack, "handshake ack");
    }

    fn in_flight_limit(&self, side: Side) -> u32 {
        let e = &self.ends[side.i()];
        // What the peer actually advertises: its window field, scaled.
        let peer = side.other();
        let shift = if self.scaling {
            self.params.scale[peer.i()].unwrap_or(0)
        } else {
            0
        };
        let peer_window = u32::from(self.win_field(peer)) << shift;
        (e.snd_una + peer_window).saturating_sub(e.snd_nxt)
    }

    /// Sends new data from `side` if its window allows.
    fn send_data(&mut self, side: Side) -> bool {
        let e = &self.ends[side.i()];
        let remaining = self.params.len[side.i()] - e.snd_nxt;
        let room = self
            .in_flight_limit(side)
            .min(self.params.mss)
            .min(remaining);
        if room == 0 {
            return false;
        }
        let len = 1 + (self.rand() % u64::from(room)) as u32;
        let off = self.ends[side.i()].snd_nxt;
        let bytes = self.segment(side, ACK | PSH, len, off);
        let ack_off = self.ends[side.i()].rcv_nxt;
        self.ends[side.i()].snd_nxt += len;
        self.flight.push(Segment {
            from: side,
            bytes,
            off,
            len,
            fin: false,
            ack_off,
        });
        true
    }

    fn send_fin(&mut self, side: Side) {
        let off = self.params.len[side.i()];
        let bytes = self.segment(side, FIN | ACK, 0, off);
        let ack_off = self.ends[side.i()].rcv_nxt;
        self.ends[side.i()].fin_sent = true;
        self.ends[side.i()].snd_nxt = off;
        self.flight.push(Segment {
            from: side,
            bytes,
            off,
            len: 0,
            fin: true,
            ack_off,
        });
    }

    fn send_ack(&mut self, side: Side) {
        let off = self.ends[side.i()].snd_nxt + u32::from(self.ends[side.i()].fin_sent);
        let bytes = self.segment(side, ACK, 0, off);
        let ack_off = self.ends[side.i()].rcv_nxt;
        self.flight.push(Segment {
            from: side,
            bytes,
            off,
            len: 0,
            fin: false,
            ack_off,
        });
    }

    /// Delivers one in-flight segment (maybe reordered, duplicated, lost).
    fn deliver_one(&mut self) {
        if self.flight.is_empty() {
            return;
        }
        let k = (self.rand() as usize) % self.params.reorder.min(self.flight.len());
        let seg = self.flight.remove(k);
        let lost_before = self.chance(self.params.loss / 2);
        if !lost_before {
            self.wire(&seg.bytes, "segment");
            if self.chance(self.params.dup) {
                self.wire(&seg.bytes, "duplicate");
            }
        }
        if lost_before || self.chance(self.params.loss / 2) {
            return;
        }
        let to = seg.from.other();
        // Cumulative ACK processing at the receiver of this segment.
        {
            let e = &mut self.ends[to.i()];
            if seg.ack_off > e.snd_una {
                e.snd_una = seg.ack_off.min(e.snd_nxt);
            }
        }
        let e = &mut self.ends[to.i()];
        let mut advanced = false;
        if seg.len > 0 && seg.off <= e.rcv_nxt && seg.off + seg.len > e.rcv_nxt {
            let new = seg.off + seg.len - e.rcv_nxt;
            e.rcv_nxt += new;
            self.delivered_bytes[seg.from.i()] += new;
            advanced = true;
        }
        if seg.fin && seg.off == e.rcv_nxt && !e.fin_received {
            e.fin_received = true;
            advanced = true;
        }
        if seg.len > 0 || seg.fin || advanced {
            self.send_ack(to);
        }
    }

    /// Retransmits unacknowledged data (go-back-N).
    fn maybe_timeout(&mut self, side: Side) {
        let e = &self.ends[side.i()];
        if e.snd_una < e.snd_nxt && self.chance(2) {
            self.ends[side.i()].snd_nxt = self.ends[side.i()].snd_una;
        }
    }

    fn exchange(&mut self, steps: usize) {
        for _ in 0..steps {
            let side = if self.chance(50) { Side::A } else { Side::B };
            match self.rand() % 4 {
                0 | 1 => {
                    if !self.send_data(side) {
                        self.deliver_one();
                    }
                }
                2 => self.deliver_one(),
                _ => self.maybe_timeout(side),
            }
        }
    }

    fn all_data_delivered(&self) -> bool {
        self.delivered_bytes == self.params.len && self.ends.iter().all(|e| e.snd_una == e.snd_nxt)
    }

    fn run_conversation(&mut self) {
        if !self.transfer() {
            // A slow conversation (tiny windows, heavy loss): what ran so far was checked.
            return;
        }
        // Close: first closer, then the other; retransmit FINs until acknowledged.
        let (first, second) = self.closers();
        self.close(first);
        self.close(second);
    }

    /// The handshake and every byte of data delivered and acknowledged; false when the
    /// conversation was cut short (step budget).
    fn transfer(&mut self) -> bool {
        self.handshake();
        let mut guard = 0;
        while !self.all_data_delivered() && guard < STEP_BUDGET {
            self.exchange(1);
            // Data everyone sent but nobody retransmits: force a timeout.
            if self.flight.is_empty() {
                for side in [Side::A, Side::B] {
                    let e = &mut self.ends[side.i()];
                    e.snd_nxt = e.snd_una;
                    self.send_data(side);
                }
            }
            guard += 1;
        }
        guard < STEP_BUDGET
    }

    /// Who closes first, who second.
    fn closers(&self) -> (Side, Side) {
        if self.params.a_closes_first {
            (Side::A, Side::B)
        } else {
            (Side::B, Side::A)
        }
    }

    /// `side` sends its FIN until the other side received it (and acknowledged it).
    fn close(&mut self, side: Side) {
        let mut tries = 0;
        while !self.ends[side.other().i()].fin_received && tries < 1000 {
            self.send_fin(side);
            while !self.flight.is_empty() {
                self.deliver_one();
            }
            tries += 1;
        }
    }

    /// A new conversation on the same tuple through the same engine, a second on: new ISNs
    /// and `params`'s options, as a client reusing its port does (the old flow's segments
    /// still in flight are gone).
    fn reuse(mut self, params: Params) -> Sim {
        let seed = self.rand();
        let mut next = Sim::new(seed, params);
        next.engine = std::mem::replace(&mut self.engine, Engine::new(EngineConfig::default()));
        next.clock_ms = self.clock_ms + 1000;
        next.drops = std::mem::take(&mut self.drops);
        next
    }

    /// A corrupted segment and the drop reason it must get.
    fn corruption(&mut self, kind: u8) -> (Vec<u8>, DropReason) {
        let a = self.ends[0].clone();
        let far = self.params.window[1].max(self.params.window[0]) as u64 * 8 + 10_000_000;
        match kind {
            // Data far beyond the receiver's window.
            0 => {
                let off = (u64::from(a.snd_nxt) + far) as u32;
                (
                    self.segment(Side::A, ACK | PSH, 100, off),
                    DropReason::SeqAboveWindow,
                )
            }
            // ACK of data the other side never sent.
            1 => {
                let seq = self.seq(Side::A, a.snd_nxt);
                let ack = self.seq(
                    Side::B,
                    self.ends[1].snd_nxt.max(self.params.len[1]) + 100_000,
                );
                (
                    self.build(Side::A, ACK, (seq, ack), 0, false),
                    DropReason::AckUnsentData,
                )
            }
            // RST far outside the window.
            2 => {
                let seq = self.seq(Side::A, a.snd_nxt).wrapping_add(far as u32);
                (
                    self.build(Side::A, RST, (seq, 0), 0, false),
                    DropReason::RstOutOfWindow,
                )
            }
            // Forbidden flag combinations.
            3 => {
                let seq = self.seq(Side::A, a.snd_nxt);
                (
                    self.build(Side::A, SYN | FIN, (seq, 0), 0, false),
                    DropReason::TcpSynFin,
                )
            }
            _ => {
                let seq = self.seq(Side::A, a.snd_nxt);
                (
                    self.build(Side::A, FIN | PSH | URG, (seq, 0), 0, false),
                    DropReason::TcpXmas,
                )
            }
        }
    }
}

/// Cases proptest once found, kept as regressions.
#[test]
fn regression_reordered_conversation_with_small_window() {
    let params = Params {
        len: [314, 98464],
        window: [53484, 536],
        scale: [None, None],
        mss: 60000,
        loss: 0,
        dup: 0,
        reorder: 5,
        a_closes_first: false,
        ipv6: false,
    };
    let mut sim = Sim::new(16505774902799547980, params);
    sim.run_conversation();
    assert_eq!(&sim.drops, &Vec::<String>::new());
}
