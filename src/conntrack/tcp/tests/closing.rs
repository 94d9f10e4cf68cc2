//! Closing: FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, and CLOSE after a RST.

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
