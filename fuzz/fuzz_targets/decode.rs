//! `Packet::decode` on arbitrary bytes with an arbitrary claimed wire length.
//!
//! Input: one flag byte (bit 0: a wire length is given), two bytes of wire length (LE), then
//! the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statewall::{Packet, PacketMeta};

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_first_chunk::<3>() else {
        return;
    };
    let wire_len = (head[0] & 1 == 1).then(|| usize::from(u16::from_le_bytes([head[1], head[2]])));
    let meta = PacketMeta {
        wire_len,
        ..PacketMeta::default()
    };
    if let Ok(pkt) = Packet::decode(bytes, &meta) {
        // Touch the result so nothing is optimised away.
        std::hint::black_box(format!("{pkt:?}"));
    }
});
