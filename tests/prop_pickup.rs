//! Property test of blind pickup (issue 15, "Pickup done right"): while mid-stream segments
//! are adopted after a restart, random segments on random tuples — ACKs, data, FINs, RSTs,
//! SYNs and SYN/ACKs with random numbers, and real handshakes on the same tuples after them
//! (the pickup attack) — never get a packet of a flow the rules refuse through.

use std::sync::Arc;

use proptest::prelude::*;
use statewall::engine::{Engine, EngineConfig};
use statewall::testing::{Pair, Side, ACK, FIN, PSH, RST, SYN};
use statewall::{PacketMeta, Timestamp};

/// The only service the rules allow: the server's port 8080.
const ALLOWED: u16 = 8080;
const CLIENT_PORTS: [u16; 4] = [8080, 40555, 40556, 22];
const SERVER_PORTS: [u16; 4] = [8080, 8082, 22, 443];

#[derive(Clone, Debug)]
enum Step {
    /// One segment with arbitrary numbers.
    Segment {
        from_client: bool,
        tuple: (usize, usize),
        flags: u8,
        seq: u32,
        ack: u32,
        len: usize,
    },
    /// SYN, SYN/ACK, ACK and a data segment, numbered right.
    Handshake { tuple: (usize, usize), isn: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    let tuple = (0..CLIENT_PORTS.len(), 0..SERVER_PORTS.len());
    let flags = prop_oneof![
        Just(ACK),
        Just(ACK | PSH),
        Just(FIN | ACK),
        Just(RST),
        Just(RST | ACK),
        Just(SYN),
        Just(SYN | ACK),
    ];
    prop_oneof![
        3 => (any::<bool>(), tuple.clone(), flags, any::<u32>(), any::<u32>(), 0usize..1400)
            .prop_map(|(from_client, tuple, flags, seq, ack, len)| Step::Segment {
                from_client,
                tuple,
                flags,
                seq,
                ack,
                len,
            }),
        1 => (tuple, any::<u32>()).prop_map(|(tuple, isn)| Step::Handshake { tuple, isn }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pickup_never_admits_what_the_rules_refuse(
        ipv6 in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let pair = if ipv6 { Pair::V6 } else { Pair::V4 };
        let e = Engine::new(EngineConfig::default());
        let rules = format!("policy drop\nallow tcp to {} port {ALLOWED}\n", pair.server);
        let loaded = statewall::rules::load_str("t.rules", &rules).expect("rules");
        e.set_policy(Arc::new(loaded.policy));
        e.set_pickup_until(Some(Timestamp::from_secs(3600)));
        let mut ms = 1000;
        let mut send = |bytes: Vec<u8>, sport: u16, what: &str| -> Result<(), TestCaseError> {
            ms += 1;
            let d = e.process(&bytes, &PacketMeta::default(), Timestamp::from_millis(ms));
            prop_assert!(
                !d.accepted() || sport == ALLOWED,
                "{what} of a flow to server port {sport} accepted"
            );
            Ok(())
        };
        for s in steps {
            match s {
                Step::Segment { from_client, tuple, flags, seq, ack, len } => {
                    let (c, sp) = (CLIENT_PORTS[tuple.0], SERVER_PORTS[tuple.1]);
                    let side = if from_client { Side::Client } else { Side::Server };
                    let pkt = pair.ports(c, sp).tcp(side, flags, seq, ack).payload(len).build();
                    send(pkt, sp, "segment")?;
                }
                Step::Handshake { tuple, isn } => {
                    let (c, sp) = (CLIENT_PORTS[tuple.0], SERVER_PORTS[tuple.1]);
                    let t = pair.ports(c, sp);
                    let server_isn = isn.rotate_left(16) ^ 0x5a5a_5a5a;
                    let (a, b) = (isn.wrapping_add(1), server_isn.wrapping_add(1));
                    send(t.tcp(Side::Client, SYN, isn, 0).build(), sp, "SYN")?;
                    send(t.tcp(Side::Server, SYN | ACK, server_isn, a).build(), sp, "SYN/ACK")?;
                    send(t.tcp(Side::Client, ACK, a, b).build(), sp, "ACK")?;
                    send(t.tcp(Side::Client, ACK | PSH, a, b).payload(100).build(), sp, "data")?;
                }
            }
        }
    }
}
