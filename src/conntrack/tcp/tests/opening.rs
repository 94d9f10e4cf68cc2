//! Opening a connection: SYN_SENT, simultaneous open, SYN_RECV, and connections adopted
//! mid-stream.

use super::*;

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
        assert_eq!(c.state, TcpState::SynSent);
    }

    /// suricata-verify bug-3844: the server answers the SYN with a RST without ACK (seq 2222),
    /// the client's next SYN opens the connection. The opener ignores such a RST (RFC 9293
    /// §3.10.7.3) and Linux passes it: it passes, without closing the entry.
    #[test]
    fn rst_without_ack_answering_the_syn_passes_without_closing() {
        let mut c = conn_syn_sent();
        send!(c, S, seg(RST, 2222, 0, 0), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::SynSent);
        send!(c, S, syn_ack());
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
        assert_eq!(c.state, TcpState::Established);
    }

    /// RFC 9293 §3.5.2 half-open recovery, the suricata-verify captures' case Linux passes: a
    /// client whose new SYN meets the server's old half-open connection gets that connection's
    /// ACK and answers it with `RST <SEQ=SEG.ACK>`. The RST must reach the server (it ends the
    /// old connection there, and the client's next SYN opens the new one); it does not close
    /// the entry. Without the ACK before it, a RST at a sequence number the client never used
    /// is still dropped.
    #[test]
    fn client_rst_answering_the_servers_stray_ack_passes_without_closing() {
        let mut c = conn_syn_sent();
        send!(c, C, seg(RST, 300, 0, 0), Err(DropReason::RstOutOfWindow));
        send!(c, S, seg(ACK, 77_000, 300, 0), Ok(Step::Ignore));
        send!(c, C, seg(RST, 300, 0, 0), Ok(Step::Ignore));
        assert_eq!(c.state, TcpState::SynSent);
        // Only the RST answering that ACK: another sequence number is still dropped.
        send!(c, S, seg(ACK, 77_000, 300, 0), Ok(Step::Ignore));
        send!(c, C, seg(RST, 301, 0, 0), Err(DropReason::RstOutOfWindow));
        // The client's retransmitted SYN then opens the connection.
        send!(c, C, syn());
        send!(c, S, syn_ack());
        send!(c, C, seg(ACK, C_ISN + 1, S_ISN + 1, 0));
        assert_eq!(c.state, TcpState::Established);
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
