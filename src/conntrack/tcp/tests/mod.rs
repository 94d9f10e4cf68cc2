//! State machine tests, grouped by state (`opening`, `established`, `closing`; flag checks and
//! timeouts here), built from fixtures (`conn_established()`) and segment templates. The client (original direction) starts at ISN 1000, the server at 5000.

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

mod closing;
mod established;
mod linux;
mod opening;

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
