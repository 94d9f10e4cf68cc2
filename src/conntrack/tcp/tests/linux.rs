//! Where statewall once was stricter than Linux's `tcp_in_window` without a reason (issue 15,
//! items 4 and 5): segments beyond the data seen (a hole in what the gateway saw), segments
//! past the receiver's advertised window, and SYNs reusing the tuple of a half-closed
//! connection, with the ignored SYN's options kept for the resynchronisation.

use super::*;

#[test]
fn a_segment_beyond_the_data_seen_moves_the_senders_end() {
    // The gateway missed some of the server's segments: its next bare ACK (or data) starts
    // beyond what was seen. The client then acknowledges all of it; Linux moves on.
    for (len, gap) in [(0, 733), (0, 1), (100, 5000), (1, 20_000)] {
        let mut c = conn_established();
        send!(c, S, s_data(0, 500, 0));
        send!(c, S, s_data(500 + gap, len, 0));
        let acked = S_ISN + 1 + 500 + gap + len;
        send!(c, C, seg(ACK, C_ISN + 1, acked, 0));
        send!(c, C, seg(ACK | PSH, C_ISN + 1, acked, 369));
        send!(c, S, seg(ACK, acked, C_ISN + 370, 0));
    }
}

/// A connection whose client advertises 1000 bytes from its SYN on.
fn small_window() -> TcpConn {
    let mut c = TcpConn::from_syn(&with_win(syn(), 1000));
    send!(c, S, syn_ack());
    send!(c, C, with_win(seg(ACK, C_ISN + 1, S_ISN + 1, 0), 1000));
    c
}

#[test]
fn bytes_past_the_advertised_window_pass_and_are_remembered() {
    // The client advertises 1000 bytes; the server sends more (some stacks do): a segment
    // starting beyond the window. Linux lets it pass when the overshoot fits in the
    // receiver's largest window, and moves the sender's end, so the client's ACK of those
    // bytes is valid.
    for (first, second) in [(1000u32, 500u32), (1000, 1), (999, 250), (1000, 499)] {
        let mut c = small_window();
        send!(c, S, s_data(0, first, 0));
        // Starts at the window's edge: valid, and the window is taken to have grown.
        send!(c, S, s_data(first, 500, 0));
        let off = first + 500;
        send!(c, S, s_data(off, second, 0), Ok(Step::Ignore));
        let acked = S_ISN + 1 + off + second;
        send!(c, C, with_win(seg(ACK, C_ISN + 1, acked, 0), 1000));
        send!(c, S, s_data(off + second, 100, 0));
    }
    // Far beyond every window: still invalid.
    let mut c = small_window();
    send!(c, S, s_data(0, 1000, 0));
    send!(c, S, s_data(5000, 100, 0), Err(DropReason::SeqAboveWindow));
}

/// A client-first close brought to `state`, on a connection of the standard fixtures.
fn half_closed(state: TcpState) -> TcpConn {
    match state {
        TcpState::FinWait => conn_fin_wait(),
        TcpState::CloseWait => conn_close_wait(),
        TcpState::LastAck => conn_last_ack(),
        _ => unreachable!("not a half-closed state"),
    }
}

#[test]
fn port_reuse_on_a_half_closed_connection_resynchronises() {
    // A new SYN on the tuple of a connection in FIN_WAIT, CLOSE_WAIT or LAST_ACK, with any
    // ISN (below or above the old stream, across the wrap), window scaling and SACK: Linux
    // ignores it and resynchronises on the SYN/ACK that answers it, keeping the SYN's window
    // scale and SACK-permitted.
    let states = [TcpState::FinWait, TcpState::CloseWait, TcpState::LastAck];
    let isns = [
        0u32,
        500,
        1101,
        1102,
        77_777,
        2_000_000_000,
        3_000_000_000,
        u32::MAX - 3,
    ];
    for state in states {
        for isn in isns {
            let mut c = half_closed(state);
            let mut new_syn = with_scale(seg(SYN, isn, 0, 0), 7);
            new_syn.options.mss = Some(1460);
            send!(c, C, new_syn, Ok(Step::Ignore));
            assert_eq!(c.state, state);
            let sisn = 700_000;
            send!(
                c,
                S,
                with_scale(seg(SYN | ACK, sisn, isn.wrapping_add(1), 0), 7)
            );
            assert_eq!(c.state, TcpState::SynRecv, "{state} isn {isn}");
            let c_next = isn.wrapping_add(1);
            send!(c, C, with_win(seg(ACK, c_next, sisn + 1, 0), 512));
            assert_eq!(c.state, TcpState::Established);
            send!(c, S, with_win(seg(ACK | PSH, sisn + 1, c_next, 1400), 512));
            send!(c, C, with_win(seg(ACK, c_next, sisn + 1401, 0), 512));
            // 60 000 bytes on: within 512 << 7, beyond 512.
            send!(
                c,
                S,
                with_win(seg(ACK | PSH, sisn + 61_401, c_next, 1000), 512)
            );
        }
    }
}

#[test]
fn the_ignored_syns_sack_permission_is_kept() {
    // SACK blocks count as acknowledgments towards a side that offered SACK: after the
    // resynchronisation, a server SACK block beyond what the client sent acknowledges data
    // never sent, as it would have on a connection followed from its first SYN.
    let mut c = conn_fin_wait();
    send!(
        c,
        C,
        with_scale(seg(SYN, 90_000, 0, 0), 2),
        Ok(Step::Ignore)
    );
    send!(c, S, with_scale(seg(SYN | ACK, 40_000, 90_001, 0), 2));
    send!(c, C, seg(ACK | PSH, 90_001, 40_001, 3000));
    let mut sacked = seg(ACK, 40_001, 91_001, 0);
    sacked.options.sack_right_edge = Some(Seq(93_001));
    send!(c, S, sacked);
    sacked.options.sack_right_edge = Some(Seq(95_001));
    send!(c, S, sacked, Err(DropReason::AckUnsentData));
}

#[test]
fn a_syn_from_the_server_on_a_half_closed_connection_stays_invalid() {
    let mut c = conn_close_wait();
    send!(c, S, seg(SYN, 1, 0, 0), Err(DropReason::UnexpectedSyn));
}
