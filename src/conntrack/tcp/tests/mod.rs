//! State machine tests, grouped by state, built from fixtures (`conn_established()`) and
//! segment templates. The client (original direction) starts at ISN 1000, the server at 5000.

use super::*;
use crate::packet::{TcpFlags, TcpOptions};
use Dir::{Original as C, Reply as S};

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;
const URG: u8 = TcpFlags::URG;

const C_ISN: u32 = 1000;
const S_ISN: u32 = 5000;
const WIN: u16 = 64000;

fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> TcpHeader {
    TcpHeader {
        sport: 40000,
        dport: 80,
        seq: Seq(seq),
        ack: Seq(ack),
        flags: TcpFlags(flags),
        window: WIN,
        payload_len: len,
        options: TcpOptions::default(),
    }
}

fn with_win(mut s: TcpHeader, window: u16) -> TcpHeader {
    s.window = window;
    s
}

fn with_scale(mut s: TcpHeader, shift: u8) -> TcpHeader {
    s.options.wscale = Some(shift);
    s.options.sack_permitted = true;
    s
}

fn syn() -> TcpHeader {
    seg(SYN, C_ISN, 0, 0)
}
fn syn_ack() -> TcpHeader {
    seg(SYN | ACK, S_ISN, C_ISN + 1, 0)
}
/// A segment from the client with `len` bytes at offset `off` of its stream.
fn c_data(off: u32, len: u32) -> TcpHeader {
    seg(ACK | PSH, C_ISN + 1 + off, S_ISN + 1, len)
}
/// A segment from the server with `len` bytes at offset `off`, acking `c_acked` client bytes.
fn s_data(off: u32, len: u32, c_acked: u32) -> TcpHeader {
    seg(ACK | PSH, S_ISN + 1 + off, C_ISN + 1 + c_acked, len)
}

macro_rules! send {
    ($conn:expr, $dir:expr, $seg:expr) => {
        send!($conn, $dir, $seg, Ok(Step::Accept))
    };
    ($conn:expr, $dir:expr, $seg:expr, $expect:expr) => {{
        let got = $conn.track($dir, &$seg);
        assert_eq!(got, $expect, "segment {:?} from {:?}", $seg, $dir);
    }};
}

fn conn_syn_sent() -> TcpConn {
    TcpConn::from_syn(&syn())
}

fn conn_syn_recv() -> TcpConn {
    let mut c = conn_syn_sent();
    send!(c, S, syn_ack());
    assert_eq!(c.state, TcpState::SynRecv);
    c
}

fn conn_established() -> TcpConn {
    let mut c = conn_syn_recv();
    send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
    assert_eq!(c.state, TcpState::Established);
    c
}

/// Client sent FIN after 100 bytes; server sent 0 bytes.
fn conn_fin_wait() -> TcpConn {
    let mut c = conn_established();
    send!(c, C, c_data(0, 100));
    send!(c, C, seg(FIN | ACK, C_ISN + 101, S_ISN + 1, 0));
    assert_eq!(c.state, TcpState::FinWait);
    c
}

fn conn_close_wait() -> TcpConn {
    let mut c = conn_fin_wait();
    send!(c, S, seg(ACK, S_ISN + 1, C_ISN + 102, 0));
    assert_eq!(c.state, TcpState::CloseWait);
    c
}

fn conn_last_ack() -> TcpConn {
    let mut c = conn_close_wait();
    send!(c, S, seg(FIN | ACK, S_ISN + 1, C_ISN + 102, 0));
    assert_eq!(c.state, TcpState::LastAck);
    c
}

fn conn_time_wait() -> TcpConn {
    let mut c = conn_last_ack();
    send!(c, C, seg(ACK, C_ISN + 102, S_ISN + 2, 0));
    assert_eq!(c.state, TcpState::TimeWait);
    c
}

mod flags {
    use super::*;

    #[test]
    fn valid_combinations_pass() {
        for f in [
            SYN,
            SYN | URG,
            SYN | ACK,
            RST,
            RST | ACK,
            FIN | ACK,
            FIN | ACK | URG,
            ACK,
            ACK | URG,
            ACK | PSH,
            SYN | TcpFlags::ECE | TcpFlags::CWR,
        ] {
            assert_eq!(check_flags(TcpFlags(f)), Ok(()), "{}", TcpFlags(f));
        }
    }

    #[test]
    fn each_invalid_shape_has_its_reason() {
        let cases = [
            (SYN | FIN, DropReason::TcpSynFin),
            (SYN | FIN | ACK, DropReason::TcpSynFin),
            (SYN | RST, DropReason::TcpSynRst),
            (0, DropReason::TcpNull),
            (PSH, DropReason::TcpBadFlags),
            (FIN | PSH | URG, DropReason::TcpXmas),
            (FIN, DropReason::TcpFinNoAck),
            (FIN | PSH, DropReason::TcpFinNoAck),
            (RST | FIN, DropReason::TcpBadFlags),
            (URG, DropReason::TcpBadFlags),
            (SYN | ACK | URG, DropReason::TcpBadFlags),
        ];
        for (f, reason) in cases {
            assert_eq!(check_flags(TcpFlags(f)), Err(reason), "{}", TcpFlags(f));
        }
    }
}

mod syn_sent {
    use super::*;

    #[test]
    fn syn_opens() {
        let c = conn_syn_sent();
        assert_eq!(c.state, TcpState::SynSent);
    }

    #[test]
    fn retransmitted_syn_is_accepted() {
        let mut c = conn_syn_sent();
        send!(c, C, syn());
        assert_eq!(c.state, TcpState::SynSent);
    }

    #[test]
    fn syn_with_higher_isn_reinitialises() {
        let mut c = conn_syn_sent();
        send!(c, C, seg(SYN, C_ISN + 50_000, 0, 0));
        send!(c, S, seg(SYN | ACK, S_ISN, C_ISN + 50_001, 0));
        assert_eq!(c.state, TcpState::SynRecv);
    }

    #[test]
    fn syn_ack_from_the_client_is_invalid() {
        let mut c = conn_syn_sent();
        send!(c, C, syn_ack(), Err(DropReason::UnexpectedSynAck));
    }

    #[test]
    fn ack_from_the_client_before_syn_ack_is_invalid() {
        let mut c = conn_syn_sent();
        send!(
            c,
            C,
            seg(ACK, C_ISN + 1, S_ISN + 1, 0),
            Err(DropReason::UnexpectedAck)
        );
    }

    #[test]
    fn fin_before_handshake_is_invalid() {
        let mut c = conn_syn_sent();
        send!(
            c,
            C,
            seg(FIN | ACK, C_ISN + 1, 1, 0),
            Err(DropReason::UnexpectedFin)
        );
    }

    #[test]
    fn ack_from_the_server_is_ignored() {
        let mut c = conn_syn_sent();
        send!(c, S, seg(ACK, 77, C_ISN + 1, 0), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::SynSent);
    }

    #[test]
    fn syn_ack_with_wrong_ack_is_invalid() {
        let mut c = conn_syn_sent();
        send!(
            c,
            S,
            seg(SYN | ACK, S_ISN, C_ISN + 999, 0),
            Err(DropReason::AckUnsentData)
        );
    }

    #[test]
    fn rst_answering_the_syn_closes() {
        let mut c = conn_syn_sent();
        send!(c, S, seg(RST | ACK, 0, C_ISN + 1, 0));
        assert_eq!(c.state, TcpState::Close);
    }

    #[test]
    fn rst_not_acknowledging_the_syn_is_dropped() {
        let mut c = conn_syn_sent();
        send!(
            c,
            S,
            seg(RST | ACK, 0, C_ISN + 7, 0),
            Err(DropReason::RstOutOfWindow)
        );
        send!(c, S, seg(RST, 0, 0, 0), Err(DropReason::RstOutOfWindow));
        assert_eq!(c.state, TcpState::SynSent);
    }

    #[test]
    fn client_may_abort_its_syn() {
        let mut c = conn_syn_sent();
        send!(c, C, seg(RST, C_ISN + 1, 0, 0));
        assert_eq!(c.state, TcpState::Close);
    }

    #[test]
    fn syn_with_data_fast_open() {
        let mut c = TcpConn::from_syn(&seg(SYN, C_ISN, 0, 100));
        send!(c, S, seg(SYN | ACK, S_ISN, C_ISN + 101, 0));
        send!(c, C, seg(ACK, C_ISN + 101, S_ISN + 1, 0));
        assert_eq!(c.state, TcpState::Established);
    }
}

mod simultaneous_open {
    use super::*;

    #[test]
    fn syn_both_ways_then_syn_acks_then_acks() {
        let mut c = conn_syn_sent();
        send!(c, S, seg(SYN, S_ISN, 0, 0));
        assert_eq!(c.state, TcpState::SynSent2);
        send!(c, C, seg(SYN | ACK, C_ISN, S_ISN + 1, 0));
        assert_eq!(c.state, TcpState::SynRecv);
        send!(c, S, seg(SYN | ACK, S_ISN, C_ISN + 1, 0), Ok(Step::Ignore));
        send!(c, S, seg(ACK, S_ISN + 1, C_ISN + 1, 0));
        assert_eq!(c.state, TcpState::Established);
        send!(c, C, c_data(0, 10));
        send!(c, S, s_data(0, 10, 10));
    }
}

mod syn_recv {
    use super::*;

    #[test]
    fn client_ack_establishes() {
        conn_established();
    }

    #[test]
    fn client_data_establishes() {
        let mut c = conn_syn_recv();
        send!(c, C, c_data(0, 500));
        assert_eq!(c.state, TcpState::Established);
    }

    #[test]
    fn retransmitted_syn_ack_is_ignored() {
        let mut c = conn_syn_recv();
        send!(c, S, syn_ack(), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::SynRecv);
    }

    #[test]
    fn retransmitted_syn_is_ignored() {
        let mut c = conn_syn_recv();
        send!(c, C, syn(), Ok(Step::Ignore));
    }

    #[test]
    fn ack_of_data_never_sent_is_invalid() {
        let mut c = conn_syn_recv();
        send!(
            c,
            C,
            seg(ACK, C_ISN + 1, S_ISN + 1000, 0),
            Err(DropReason::AckUnsentData)
        );
    }

    #[test]
    fn server_syn_is_invalid() {
        let mut c = conn_syn_recv();
        send!(c, S, seg(SYN, S_ISN, 0, 0), Err(DropReason::UnexpectedSyn));
    }

    #[test]
    fn fin_starts_close() {
        let mut c = conn_syn_recv();
        send!(c, C, seg(FIN | ACK, C_ISN + 1, S_ISN + 1, 0));
        assert_eq!(c.state, TcpState::FinWait);
    }
}

mod established {
    use super::*;

    #[test]
    fn data_flows_both_ways() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 1000));
        send!(c, S, s_data(0, 1400, 1000));
        send!(c, C, seg(ACK, C_ISN + 1001, S_ISN + 1401, 0));
    }

    #[test]
    fn data_beyond_the_window_is_invalid() {
        let mut c = conn_established();
        send!(c, C, c_data(200_000, 100), Err(DropReason::SeqAboveWindow));
    }

    #[test]
    fn ack_for_data_never_sent_is_invalid() {
        let mut c = conn_established();
        send!(c, S, s_data(0, 10, 0));
        send!(
            c,
            C,
            seg(ACK, C_ISN + 1, S_ISN + 5000, 0),
            Err(DropReason::AckUnsentData)
        );
    }

    #[test]
    fn retransmitted_data_is_accepted() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 1000));
        send!(c, C, c_data(0, 1000));
        send!(c, S, s_data(0, 0, 1000));
        send!(c, C, c_data(0, 1000));
    }

    #[test]
    fn very_old_retransmission_is_ignored() {
        let mut c = conn_established();
        // Push the client's end far ahead: 300 kB in 60 kB windows.
        for i in 0..5u32 {
            send!(c, C, c_data(i * 60_000, 60_000));
            send!(c, S, s_data(0, 0, (i + 1) * 60_000));
        }
        send!(c, C, c_data(0, 100), Ok(Step::Ignore));
    }

    #[test]
    fn keepalives_pass() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 10));
        send!(c, S, s_data(0, 0, 10));
        // seq = next - 1, no data and one garbage byte.
        send!(c, C, seg(ACK, C_ISN + 10, S_ISN + 1, 0));
        send!(c, S, s_data(0, 0, 10));
        send!(c, C, seg(ACK, C_ISN + 10, S_ISN + 1, 1));
        send!(c, S, s_data(0, 0, 10));
    }

    #[test]
    fn zero_window_probe_and_window_update() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 1000));
        // The server's buffer is full: window 0.
        send!(c, S, with_win(s_data(0, 0, 1000), 0));
        // Zero-window probe: one byte at the right edge.
        send!(c, C, c_data(1000, 1));
        send!(c, S, with_win(s_data(0, 0, 1000), 0));
        // Window update, then data resumes.
        send!(c, S, with_win(s_data(0, 0, 1000), 65535));
        send!(c, C, c_data(1000, 1400));
    }

    #[test]
    fn window_scaling_allows_large_windows() {
        let mut c = TcpConn::from_syn(&with_scale(syn(), 7));
        send!(c, S, with_scale(syn_ack(), 7));
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
        send!(c, S, s_data(0, 0, 0));
        // Server window 64000 << 7 = 8 MB: 4 MB in flight is fine.
        let mut off = 0;
        while off < 4_000_000 {
            send!(c, C, c_data(off, 64_000));
            off += 64_000;
        }
        send!(c, S, s_data(0, 0, off));
    }

    #[test]
    fn without_scaling_on_both_sides_the_shift_is_ignored() {
        let mut c = TcpConn::from_syn(&with_scale(syn(), 7));
        send!(c, S, syn_ack());
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
        send!(c, C, c_data(0, 64_000));
        send!(c, C, c_data(200_000, 1000), Err(DropReason::SeqAboveWindow));
    }

    #[test]
    fn sack_blocks_count_as_acknowledgments() {
        let mut c = TcpConn::from_syn(&with_scale(syn(), 0));
        send!(c, S, with_scale(syn_ack(), 0));
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
        send!(c, C, c_data(0, 1000));
        send!(c, C, c_data(1000, 1000));
        let mut sack = s_data(0, 0, 0);
        sack.options.sack_right_edge = Some(Seq(C_ISN + 2001));
        send!(c, S, sack);
        sack.options.sack_right_edge = Some(Seq(C_ISN + 9001));
        send!(c, S, sack, Err(DropReason::AckUnsentData));
    }

    #[test]
    fn exact_rst_closes() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 100));
        send!(c, S, seg(RST, S_ISN + 1, 0, 0));
        assert_eq!(c.state, TcpState::Close);
    }

    #[test]
    fn rst_at_the_receivers_ack_closes() {
        let mut c = conn_established();
        send!(c, C, c_data(0, 100));
        send!(c, S, s_data(0, 0, 100));
        // RST from the client with seq = what the server acknowledged.
        send!(c, C, seg(RST, C_ISN + 101, 0, 0));
        assert_eq!(c.state, TcpState::Close);
    }

    #[test]
    fn in_window_rst_passes_without_closing() {
        let mut c = conn_established();
        send!(c, S, seg(RST, S_ISN + 1 + 500, 0, 0), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::Established);
        send!(c, C, c_data(0, 10));
    }

    #[test]
    fn out_of_window_rst_is_dropped() {
        let mut c = conn_established();
        send!(
            c,
            S,
            seg(RST, S_ISN + 10_000_000, 0, 0),
            Err(DropReason::RstOutOfWindow)
        );
        send!(
            c,
            S,
            seg(RST, S_ISN.wrapping_sub(10_000_000), 0, 0),
            Err(DropReason::RstOutOfWindow)
        );
        assert_eq!(c.state, TcpState::Established);
    }

    #[test]
    fn syn_in_established_is_ignored_and_resyncs_on_syn_ack() {
        let mut c = conn_established();
        // The client rebooted and reconnects on the same tuple; the server, out of date,
        // answers the new SYN with a SYN/ACK that acknowledges it.
        send!(c, C, seg(SYN, 900_000, 0, 0), Ok(Step::Ignore));
        send!(c, S, seg(SYN | ACK, 7_000_000, 900_001, 0));
        assert_eq!(c.state, TcpState::SynRecv);
        send!(c, C, seg(ACK, 900_001, 7_000_001, 0));
        assert_eq!(c.state, TcpState::Established);
    }

    #[test]
    fn late_syn_ack_is_ignored() {
        let mut c = conn_established();
        send!(c, S, syn_ack(), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::Established);
    }

    #[test]
    fn urgent_data_is_valid() {
        let mut c = conn_established();
        send!(c, C, seg(ACK | URG | PSH, C_ISN + 1, S_ISN + 1, 1));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let isn = u32::MAX - 100;
        let mut c = TcpConn::from_syn(&seg(SYN, isn, 0, 0));
        send!(c, S, seg(SYN | ACK, S_ISN, isn.wrapping_add(1), 0));
        send!(c, C, seg(ACK, isn.wrapping_add(1), S_ISN + 1, 0));
        send!(c, C, seg(ACK, isn.wrapping_add(1), S_ISN + 1, 1000));
        send!(c, S, seg(ACK, S_ISN + 1, isn.wrapping_add(1001), 0));
        send!(c, C, seg(ACK, isn.wrapping_add(1001), S_ISN + 1, 1000));
    }
}

mod closing {
    use super::*;

    #[test]
    fn client_closes_first() {
        let mut c = conn_time_wait();
        // Retransmitted last ACK.
        send!(c, C, seg(ACK, C_ISN + 102, S_ISN + 2, 0));
        assert_eq!(c.state, TcpState::TimeWait);
    }

    #[test]
    fn server_closes_first() {
        let mut c = conn_established();
        send!(c, S, s_data(0, 300, 0));
        send!(c, S, seg(FIN | ACK, S_ISN + 301, C_ISN + 1, 0));
        assert_eq!(c.state, TcpState::FinWait);
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 302, 0));
        assert_eq!(c.state, TcpState::CloseWait);
        send!(c, C, seg(FIN | ACK, C_ISN + 1, S_ISN + 302, 0));
        assert_eq!(c.state, TcpState::LastAck);
        send!(c, S, seg(ACK, S_ISN + 302, C_ISN + 2, 0));
        assert_eq!(c.state, TcpState::TimeWait);
    }

    #[test]
    fn fin_ack_in_one_segment() {
        // The server acknowledges the client's FIN and sends its own in one segment.
        let mut c = conn_fin_wait();
        send!(c, S, seg(FIN | ACK, S_ISN + 1, C_ISN + 102, 0));
        assert_eq!(c.state, TcpState::LastAck);
        send!(c, C, seg(ACK, C_ISN + 102, S_ISN + 2, 0));
        assert_eq!(c.state, TcpState::TimeWait);
    }

    #[test]
    fn simultaneous_close() {
        let mut c = conn_established();
        send!(c, C, seg(FIN | ACK, C_ISN + 1, S_ISN + 1, 0));
        send!(c, S, seg(FIN | ACK, S_ISN + 1, C_ISN + 1, 0));
        assert_eq!(c.state, TcpState::LastAck);
        send!(c, C, seg(ACK, C_ISN + 2, S_ISN + 2, 0));
        send!(c, S, seg(ACK, S_ISN + 2, C_ISN + 2, 0));
        assert_eq!(c.state, TcpState::TimeWait);
    }

    #[test]
    fn half_close_keeps_the_other_direction_open() {
        let mut c = conn_close_wait();
        let mut off = 0;
        for _ in 0..20 {
            send!(c, S, s_data(off, 1400, 101));
            off += 1400;
            send!(c, C, seg(ACK, C_ISN + 102, S_ISN + 1 + off, 0));
        }
        assert_eq!(c.state, TcpState::CloseWait);
        send!(c, S, seg(FIN | ACK, S_ISN + 1 + off, C_ISN + 102, 0));
        send!(c, C, seg(ACK, C_ISN + 102, S_ISN + 2 + off, 0));
        assert_eq!(c.state, TcpState::TimeWait);
    }

    #[test]
    fn retransmitted_fin_passes() {
        let mut c = conn_fin_wait();
        send!(c, C, seg(FIN | ACK, C_ISN + 101, S_ISN + 1, 0));
        let mut c = conn_last_ack();
        send!(c, S, seg(FIN | ACK, S_ISN + 1, C_ISN + 102, 0));
        assert_eq!(c.state, TcpState::LastAck);
    }

    #[test]
    fn retransmitted_data_below_the_fin_passes() {
        let mut c = conn_fin_wait();
        send!(c, C, c_data(0, 100));
        send!(c, C, c_data(50, 50));
    }

    #[test]
    fn data_beyond_the_fin_is_dropped() {
        let mut c = conn_fin_wait();
        send!(c, C, c_data(101, 10), Err(DropReason::DataAfterFin));
        send!(c, C, c_data(60, 60), Err(DropReason::DataAfterFin));
        let mut c = conn_close_wait();
        send!(c, C, c_data(101, 10), Err(DropReason::DataAfterFin));
    }

    #[test]
    fn data_after_a_full_close_is_dropped() {
        let mut c = conn_time_wait();
        send!(c, C, c_data(101, 10), Err(DropReason::DataAfterClose));
        send!(
            c,
            S,
            seg(ACK | PSH, S_ISN + 2, C_ISN + 102, 10),
            Err(DropReason::DataAfterClose)
        );
    }

    #[test]
    fn new_syn_after_time_wait_reopens() {
        let mut c = conn_time_wait();
        send!(c, C, seg(SYN, C_ISN + 100_000, 0, 0), Ok(Step::Reopen));
        // From the other side as well (the server actively reopening).
        send!(c, S, seg(SYN, 99, 0, 0), Ok(Step::Reopen));
    }
}

mod close {
    use super::*;

    fn conn_reset() -> TcpConn {
        let mut c = conn_established();
        send!(c, C, c_data(0, 100));
        send!(c, C, seg(RST, C_ISN + 101, 0, 0));
        assert_eq!(c.state, TcpState::Close);
        c
    }

    #[test]
    fn data_after_rst_is_dropped() {
        let mut c = conn_reset();
        send!(c, S, s_data(0, 100, 100), Err(DropReason::DataAfterRst));
        send!(c, C, c_data(100, 10), Err(DropReason::DataAfterRst));
        send!(
            c,
            S,
            seg(FIN | ACK, S_ISN + 1, C_ISN + 101, 0),
            Err(DropReason::DataAfterRst)
        );
    }

    #[test]
    fn bare_ack_in_flight_after_rst_passes() {
        let mut c = conn_reset();
        send!(c, S, s_data(0, 0, 100));
        assert_eq!(c.state, TcpState::Close);
    }

    #[test]
    fn retransmitted_rst_passes() {
        let mut c = conn_reset();
        send!(c, C, seg(RST, C_ISN + 101, 0, 0));
    }

    #[test]
    fn new_syn_after_rst_reopens() {
        let mut c = conn_reset();
        send!(c, C, syn(), Ok(Step::Reopen));
    }
}

mod pickup {
    use super::*;

    #[test]
    fn mid_stream_flow_is_adopted_in_both_directions() {
        let first = c_data(5_000_000, 1400);
        let mut c = TcpConn::pickup(&first);
        assert_eq!(c.state, TcpState::Established);
        send!(c, S, s_data(0, 1400, 5_001_400));
        // Unknown window scale: a large burst beyond the seen window still passes.
        let mut off = 5_001_400;
        for _ in 0..200 {
            send!(c, C, c_data(off, 1400));
            off += 1400;
        }
        send!(c, S, s_data(1400, 0, off));
        send!(c, C, seg(FIN | ACK, C_ISN + 1 + off, S_ISN + 1401, 0));
        assert_eq!(c.state, TcpState::FinWait);
    }
}

mod timeouts {
    use super::*;

    #[test]
    fn timeout_follows_state_and_unacked_data() {
        let t = Timeouts::default();
        let mut c = conn_established();
        assert_eq!(c.timeout(&t), 432_000);
        send!(c, C, c_data(0, 10));
        assert_eq!(c.timeout(&t), 300);
        send!(c, S, s_data(0, 0, 10));
        assert_eq!(c.timeout(&t), 432_000);
        assert_eq!(conn_time_wait().timeout(&t), 120);
        assert_eq!(conn_syn_sent().timeout(&t), 120);
        assert_eq!(conn_syn_recv().timeout(&t), 60);
    }
}
