//! A queue worker's per-packet work ([`Judge::judge`]: the engine's decision, its actions, the
//! verdict and its mark) allocates nothing for packets of known flows, counted by a global
//! allocator that counts the allocations of the current thread. (The queue side — `recvmmsg`
//! into reused buffers, held verdicts — is asserted the same way in `vendor/nfq`.)
//!
//! The allocator needs `unsafe impl GlobalAlloc`, which the library forbids: hence a test
//! crate of its own.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use statewall::engine::{Engine, EngineConfig};
use statewall::io::actions::ActionHandler;
use statewall::io::queue::{Judge, QueueCounters, Queued};
use statewall::marks::ConnMarks;
use statewall::testing::{Pair, Side, ACK, PSH, SYN};

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local `Cell` (no
// allocation, no lock), skipped while the thread-local is being torn down.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        std::alloc::System.realloc(ptr, layout, size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

fn judge() -> (Judge, Arc<Engine>) {
    let engine = Arc::new(Engine::new(EngineConfig::default()));
    let judge = Judge::new(
        0,
        Arc::clone(&engine),
        Arc::new(QueueCounters::default()),
        Arc::new(ActionHandler::new(
            Some(0x5717),
            None,
            Default::default(),
            false,
        )),
        Instant::now(),
        Some(ConnMarks::default()),
    );
    (judge, engine)
}

fn queued(payload: &[u8]) -> Queued<'_> {
    Queued {
        payload,
        indev: 1,
        outdev: 1,
        wire_len: payload.len(),
        mark: 0,
        hw_src: Some(&[2, 0, 0, 0, 0, 1]),
        hw_protocol: 0x0800,
    }
}

#[test]
fn packets_of_known_flows_allocate_nothing() {
    let (mut j, engine) = judge();
    for pair in Pair::BOTH {
        let (c, s) = (1000u32, 5000u32);
        // Opening the flows allocates (table entries, the interface names); not counted.
        for p in [
            pair.tcp(Side::Client, SYN, c, 0).window(64240).build(),
            pair.tcp(Side::Server, SYN | ACK, s, c + 1)
                .window(65160)
                .build(),
            pair.tcp(Side::Client, ACK, c + 1, s + 1)
                .window(502)
                .build(),
            pair.udp(Side::Client).payload(64).build(),
            pair.udp(Side::Server).payload(64).build(),
        ] {
            assert!(j.judge(&queued(&p)).accept, "{:?}", engine.stats().drops);
        }
        let data: Vec<Vec<u8>> = (0..64u32)
            .flat_map(|i| {
                [
                    pair.tcp(Side::Client, ACK | PSH, c + 1 + i * 100, s + 1)
                        .window(502)
                        .payload(100)
                        .build(),
                    pair.tcp(Side::Server, ACK, s + 1, c + 1 + (i + 1) * 100)
                        .window(509)
                        .build(),
                    pair.udp(Side::Client).payload(64).build(),
                    pair.udp(Side::Server).payload(64).build(),
                ]
            })
            .collect();
        let before = allocations();
        for (i, p) in data.iter().enumerate() {
            let out = j.judge(&queued(p));
            assert!(out.accept, "packet {i} dropped: {:?}", engine.stats().drops);
            assert_eq!(out.mark, Some(ConnMarks::default().admitted()));
        }
        assert_eq!(
            allocations() - before,
            0,
            "{} packets of known flows ({:?})",
            data.len(),
            pair.client
        );
    }
}
