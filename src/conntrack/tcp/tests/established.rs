//! ESTABLISHED: data both ways, the window check, RSTs, out-of-order handshake segments.

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
