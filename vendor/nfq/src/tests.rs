//! Unit tests: socket options on real (unbound) sockets, and the parsers and encoders against
//! golden bytes captured from Linux 6.18 with `scripts/capture-netlink` of statewall (an NFQUEUE
//! packet message and ctnetlink messages, in a network namespace, documentation addresses).

use super::*;
use std::convert::TryInto;

/// NFQUEUE packet message from queue 5: a TCP SYN 192.0.2.1:51150 -> 192.0.2.1:7000 sent in a
/// namespace (LOCAL_OUT hook, out device 1, packet mark 0x20, copy range 64).
const NFQ_PACKET_V4: &str = concat!(
    "70000000000300000000000000000000020000050b000100000000010800030008000600000000010800030000000020",
    "40000a004500003cb21f40004006049ac0000201c0000201c7ce1b58cef2866f00000000a002ffd7bfd900000204ffd7",
    "0402080a66f06aab000000000103030a",
);

/// ctnetlink dump message (IPCTNL_MSG_CT_NEW) of an established TCP flow
/// 192.0.2.1:41000 -> 192.0.2.1:7001, connmark 0x20000, window scale 10 both ways. Its
/// attributes are what the kernel nests in NFQA_CT (`ctnetlink_glue_build` calls the same dump
/// functions as `ctnetlink_fill_info`): this kernel lacks CONFIG_NETFILTER_NETLINK_GLUE_CT, so an
/// NFQA_CT from the queue itself could not be captured.
const CT_DUMP_TCP_V4: &str = concat!(
    "d400000000010200010000002360000002000000340001801400018008000100c000020108000200c00002011c000280",
    "050001000600000006000200a0280000060003001b590000340002801400018008000100c000020108000200c0000201",
    "1c0002800500010006000000060002001b59000006000300a0280000080003000000000e080008000002000008000c00",
    "2863007108000b0000000001080007000006977f300004802c0001800500010003000000050002000a00000005000300",
    "0a00000006000400230000000600050023000000",
);

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A receive buffer holding `bytes`, as `recv` leaves it.
fn received(bytes: &[u8]) -> Arc<Vec<u32>> {
    let mut words = vec![0u32; (bytes.len() + 3) / 4];
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr() as *mut u8, bytes.len())
    };
    Arc::new(words)
}

fn parse(bytes: &[u8]) -> (Result<bool>, VecDeque<Message>) {
    let buf = received(bytes);
    let mut out = VecDeque::new();
    let r = unsafe { parse_datagram(&buf, bytes.len(), &mut out) };
    (r, out)
}

/// Appends an attribute to the netlink message `msg` and fixes its length.
fn append_attr(msg: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    msg.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    msg.extend_from_slice(&typ.to_ne_bytes());
    msg.extend_from_slice(payload);
    while msg.len() % 4 != 0 {
        msg.push(0);
    }
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
}

#[test]
fn packet_message_from_the_kernel_is_parsed() {
    let (r, mut out) = parse(&unhex(NFQ_PACKET_V4));
    assert!(!r.unwrap());
    assert_eq!(out.len(), 1);
    let msg = out.pop_front().unwrap();
    assert_eq!(msg.get_queue_num(), 5);
    assert_eq!(msg.get_packet_id(), 1);
    assert_eq!(msg.get_hw_protocol(), 0x0800);
    assert_eq!(msg.get_hook(), 3);
    assert_eq!(msg.get_nfmark(), 0x20);
    assert_eq!(msg.get_outdev(), 1);
    assert_eq!(msg.get_indev(), 0);
    assert_eq!(msg.get_payload().len(), 60);
    assert_eq!(&msg.get_payload()[..2], &[0x45, 0x00]);
    assert_eq!(msg.get_original_len(), 60);
    assert!(msg.get_conntrack().is_none());
}

#[test]
fn conntrack_info_gives_state_mark_status_and_tcp_state() {
    let mut msg = unhex(NFQ_PACKET_V4);
    let ct = unhex(CT_DUMP_TCP_V4);
    append_attr(
        &mut msg,
        NFQA_CT as u16 | libc::NLA_F_NESTED as u16,
        &ct[20..],
    );
    append_attr(
        &mut msg,
        NFQA_CT_INFO as u16,
        &IP_CT_ESTABLISHED.to_be_bytes(),
    );
    let (r, mut out) = parse(&msg);
    assert!(!r.unwrap());
    let msg = out.pop_front().unwrap();
    let ct = msg.get_conntrack().expect("conntrack info");
    assert_eq!(ct.get_state(), conntrack::State::Established);
    assert_eq!(ct.get_mark(), Some(0x20000));
    assert_eq!(ct.get_status(), Some(0xe));
    assert_eq!(ct.get_tcp_state(), Some(3));
    assert_eq!(ct.get_id(), 0x2863_0071);
}

#[test]
fn malformed_datagrams_never_panic() {
    let good = unhex(NFQ_PACKET_V4);
    for len in 0..good.len() {
        let _ = parse(&good[..len]);
    }
    for pos in 0..good.len() {
        for val in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[pos] = val;
            let (_, out) = parse(&bad);
            for msg in out {
                let _ = (
                    msg.get_payload().len(),
                    msg.get_hw_addr(),
                    msg.get_timestamp(),
                );
            }
        }
    }
}

#[test]
fn error_and_done_messages_end_a_request() {
    // NLMSG_ERROR with error 0: an ACK.
    let mut ack = vec![0u8; 36];
    ack[..4].copy_from_slice(&36u32.to_ne_bytes());
    ack[4..6].copy_from_slice(&(NLMSG_ERROR as u16).to_ne_bytes());
    assert!(parse(&ack).0.unwrap());
    ack[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
    assert_eq!(
        parse(&ack).0.unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    // Too short for its error code.
    let mut short = ack[..16].to_vec();
    short[..4].copy_from_slice(&16u32.to_ne_bytes());
    assert_eq!(
        parse(&short).0.unwrap_err().raw_os_error(),
        Some(libc::EBADMSG)
    );
}

#[test]
fn fd_is_the_open_netlink_socket() {
    let queue = Queue::open().unwrap();
    let fd = queue.as_raw_fd();
    assert!(fd >= 0);
    assert_eq!(queue.as_fd().as_raw_fd(), fd);
    let mut domain: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            &mut domain as *mut c_int as _,
            &mut len,
        )
    };
    assert_eq!(r, 0);
    assert_eq!(domain, AF_NETLINK);
}

#[test]
fn recv_buffer_size_is_enlarged_and_reported() {
    let mut queue = Queue::open().unwrap();
    let before = queue.recv_buffer_size().unwrap();
    let after = queue.set_recv_buffer_size(before * 4).unwrap();
    assert_eq!(after, queue.recv_buffer_size().unwrap());
    // SO_RCVBUFFORCE (root) gives the size asked for, doubled for the kernel's bookkeeping;
    // unprivileged SO_RCVBUF is capped by net.core.rmem_max but never shrinks it here.
    assert!(after > before, "{} -> {}", before, after);
}

#[test]
fn recv_timeout_expires_as_would_block() {
    let mut queue = Queue::open().unwrap();
    assert_eq!(
        queue
            .set_recv_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EINVAL)
    );
    queue
        .set_recv_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let start = std::time::Instant::now();
    // Not bound to any queue: nothing ever arrives, so only the timeout can end this.
    let err = queue.recv().unwrap_err();
    assert!(is_timeout(&err), "{:?}", err);
    assert!(start.elapsed() >= Duration::from_millis(25));
    assert!(!is_timeout(&std::io::Error::from_raw_os_error(
        libc::ENOBUFS
    )));
}

/// Encodes the verdict for `msg` as `Queue::verdict` sends it.
fn encoded_verdict(msg: &Message) -> Vec<u8> {
    let mut buf = vec![0u32; 1024];
    let mut nlmsg = unsafe { Nlmsg::new(&mut buf) };
    unsafe {
        put_verdict(&mut nlmsg, msg);
        nlmsg.adjust_len();
    }
    let len = nlmsg.len * 4;
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, len) };
    bytes.to_vec()
}

fn kernel_packet() -> Message {
    parse(&unhex(NFQ_PACKET_V4)).1.pop_front().unwrap()
}

#[test]
fn verdict_is_encoded_as_the_kernel_expects() {
    let mut msg = kernel_packet();
    msg.set_verdict(Verdict::Accept);
    assert_eq!(
        encoded_verdict(&msg),
        unhex(concat!(
            "20000000", "0103", "0100", "00000000",
            "00000000", // len 32, QUEUE|VERDICT, REQUEST
            "00000005", // AF_UNSPEC, v0, queue 5
            "0c000200", "00000001", "00000001", // NFQA_VERDICT_HDR: ACCEPT, id 1
        ))
    );
    msg.set_verdict(Verdict::Queue(7));
    msg.set_nfmark(0x5717);
    assert_eq!(
        encoded_verdict(&msg),
        unhex(concat!(
            "28000000", "0103", "0100", "00000000", "00000000", "00000005", "0c000200", "00070003",
            "00000001", // NF_QUEUE to queue 7
            "08000300", "00005717", // NFQA_MARK
        ))
    );
}

#[test]
fn connmark_rides_on_the_verdict_in_a_nested_nfqa_ct() {
    let mut msg = kernel_packet();
    msg.set_verdict(Verdict::Accept);
    // Bits outside the mask are not sent: the kernel would XOR them into the connmark.
    msg.set_ct_mark(0xffff_ffff, 0x0003_0000);
    assert_eq!(
        encoded_verdict(&msg),
        unhex(concat!(
            "34000000", "0103", "0100", "00000000", "00000000", "00000005", "0c000200", "00000001",
            "00000001", "14000b80", // NFQA_CT | NLA_F_NESTED, 20 bytes
            "08000800", "00030000", // CTA_MARK
            "08001500", "00030000", // CTA_MARK_MASK
        ))
    );
}

/// The captured packet, with packet id `id`.
fn packet_with_id(id: u32) -> Message {
    let mut bytes = unhex(NFQ_PACKET_V4);
    // nlmsghdr (16) + nfgenmsg (4) + NFQA_PACKET_HDR header (4): the packet id comes first.
    bytes[24..28].copy_from_slice(&id.to_be_bytes());
    parse(&bytes).1.pop_front().unwrap()
}

/// A queue whose `recv` handed out packets 1..=n of queue 5; none is sent to the kernel unless
/// a test flushes (the socket is bound to no queue, the kernel answers ENODEV).
fn queue_with(n: u64) -> Queue {
    let mut queue = Queue::open().unwrap();
    queue.set_verdict_batch(1000, None);
    queue.handed_out = n;
    queue
}

/// (message type, verdict, packet id, mark) of each message held back.
fn held(queue: &Queue) -> Vec<(u16, u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let bytes = queue.pending.bytes();
    let mut at = 0;
    while at < bytes.len() {
        let word = |i: usize| u32::from_be_bytes(bytes[at + i..at + i + 4].try_into().unwrap());
        let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let typ = u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
        let mark = if len >= 40 && bytes[at + 34] == 3 {
            Some(word(36))
        } else {
            None
        };
        out.push((typ, word(24), word(28), mark));
        at += len;
    }
    out
}

const VERDICT: u16 = 0x0301;
const BATCH: u16 = 0x0303;

#[test]
fn consecutive_accepts_become_one_batch_verdict() {
    // Each packet judged as it arrives, as a worker does.
    let mut queue = queue_with(0);
    for id in 1..=3 {
        queue.handed_out += 1;
        let mut msg = packet_with_id(id);
        msg.set_verdict(Verdict::Accept);
        queue.queue_verdict(msg).unwrap();
    }
    assert_eq!(queue.pending_verdicts(), 3);
    assert_eq!(
        queue.pending.bytes(),
        &unhex(concat!(
            "20000000", "0303", "0100", "00000000", "00000000", // QUEUE|VERDICT_BATCH
            "00000005", "0c000200", "00000001", "00000003", // ACCEPT up to id 3
        ))[..]
    );
}

#[test]
fn different_verdicts_marks_and_gaps_are_separate_messages() {
    let mut queue = queue_with(6);
    let plan: [(u32, Verdict, Option<u32>); 6] = [
        (1, Verdict::Accept, None),
        (2, Verdict::Accept, Some(0x10)),
        (3, Verdict::Accept, Some(0x10)),
        (4, Verdict::Drop, None),
        (6, Verdict::Accept, None), // 5 never came (e.g. lost to ENOBUFS): no merging over it
        (7, Verdict::Accept, None),
    ];
    for (id, verdict, mark) in plan.iter().copied() {
        let mut msg = packet_with_id(id);
        msg.set_verdict(verdict);
        if let Some(mark) = mark {
            msg.set_nfmark(mark);
        }
        queue.handed_out = queue.verdicts_given + 1;
        queue.queue_verdict(msg).unwrap();
    }
    assert_eq!(
        held(&queue),
        vec![
            (VERDICT, 1, 1, None),
            (BATCH, 1, 3, Some(0x10)),
            (VERDICT, 0, 4, None),
            (BATCH, 1, 7, None),
        ]
    );
}

#[test]
fn no_batch_verdict_while_a_received_packet_has_no_verdict() {
    // Packets 1, 2, 3 received; 1 and 2 judged while 3 is still being looked at.
    let mut queue = queue_with(3);
    for id in [1, 2, 3] {
        let mut msg = packet_with_id(id);
        msg.set_verdict(Verdict::Accept);
        queue.queue_verdict(msg).unwrap();
    }
    // Only the last verdict saw every packet judged: 2..=3 merge, 1 stays alone.
    assert_eq!(
        held(&queue),
        vec![(VERDICT, 1, 1, None), (BATCH, 1, 3, None)]
    );

    // Out of order: 2 before 1 never merges.
    let mut queue = queue_with(2);
    for id in [2, 1] {
        let mut msg = packet_with_id(id);
        msg.set_verdict(Verdict::Accept);
        queue.queue_verdict(msg).unwrap();
    }
    assert_eq!(
        held(&queue),
        vec![(VERDICT, 1, 2, None), (VERDICT, 1, 1, None)]
    );

    // A connection mark or merging turned off keeps one message per packet.
    let mut queue = queue_with(3);
    queue.set_verdict_merge(false);
    for id in [1, 2] {
        let mut msg = packet_with_id(id);
        msg.set_verdict(Verdict::Accept);
        queue.queue_verdict(msg).unwrap();
    }
    queue.set_verdict_merge(true);
    let mut msg = packet_with_id(3);
    msg.set_ct_mark(1, 1);
    queue.queue_verdict(msg).unwrap();
    assert_eq!(held(&queue).len(), 3);
}

#[test]
fn held_verdicts_are_sent_by_count_and_by_age() {
    let mut queue = queue_with(100);
    queue.set_verdict_batch(2, None);
    queue.queue_verdict(packet_with_id(1)).unwrap();
    assert_eq!(queue.pending_verdicts(), 1);
    queue.queue_verdict(packet_with_id(2)).unwrap();
    assert_eq!(queue.pending_verdicts(), 0);

    queue.set_verdict_batch(100, Some(Duration::from_millis(2)));
    queue.queue_verdict(packet_with_id(10)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    queue.queue_verdict(packet_with_id(20)).unwrap();
    assert_eq!(queue.pending_verdicts(), 0);

    queue.queue_verdict(packet_with_id(30)).unwrap();
    queue.flush_verdicts().unwrap();
    assert_eq!(queue.pending_verdicts(), 0);
    assert!(queue.pending.bytes().is_empty());
    // Flushed by count (2 messages), by age (2) and explicitly (1).
    let counts = queue.io_counts();
    assert_eq!((counts.verdict_sends, counts.verdict_messages), (3, 5));
}

#[test]
fn explicit_batch_verdict_is_encoded_with_its_mark() {
    let mut queue = queue_with(0);
    let mut nlmsg_buf = vec![0u32; 64];
    let mut nlmsg = unsafe { Nlmsg::new(&mut nlmsg_buf) };
    unsafe {
        put_batch_verdict(&mut nlmsg, 5, 0x0102_0304, Verdict::Drop, Some(0x5717));
        nlmsg.adjust_len();
    }
    let len = nlmsg.len;
    let bytes = unsafe { std::slice::from_raw_parts(nlmsg_buf.as_ptr() as *const u8, len * 4) };
    assert_eq!(
        bytes,
        &unhex(concat!(
            "28000000", "0303", "0100", "00000000", "00000000", "00000005", "0c000200", "00000000",
            "01020304", // DROP up to id 0x01020304
            "08000300", "00005717", // NFQA_MARK
        ))[..]
    );
    // Sent at once (the kernel answers ENODEV later: no queue is bound).
    queue.verdict_batch(5, 7, Verdict::Accept, None).unwrap();
    assert_eq!(queue.pending_verdicts(), 0);
}

/// Counts the allocations of the current thread (other tests run on other threads).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        std::alloc::System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

/// A queue whose socket is replaced by one end of a datagram socket pair, and the other end,
/// through which a test plays the kernel.
fn queue_on_socketpair() -> (Queue, c_int) {
    let mut queue = Queue::open().unwrap();
    let mut fds = [0 as c_int; 2];
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    unsafe { close(queue.fd) };
    queue.fd = fds[0];
    // As `bind` leaves it: room for a page of metadata and a copy range of 64 bytes.
    queue.bufsize = (4096 + 64 + 3) / 4;
    (queue, fds[1])
}

fn kernel_sends(fd: c_int, datagram: &[u8]) {
    let r = unsafe {
        libc::send(
            fd,
            datagram.as_ptr() as *const libc::c_void,
            datagram.len(),
            0,
        )
    };
    assert_eq!(r as usize, datagram.len());
}

fn packet_bytes(id: u32) -> Vec<u8> {
    let mut bytes = unhex(NFQ_PACKET_V4);
    bytes[24..28].copy_from_slice(&id.to_be_bytes());
    bytes
}

#[test]
fn one_system_call_receives_several_packets() {
    let (mut queue, kernel) = queue_on_socketpair();
    queue.set_recv_batch(8);
    for id in 1..=3 {
        kernel_sends(kernel, &packet_bytes(id));
    }
    let first = queue.recv().unwrap();
    assert_eq!(first.get_packet_id(), 1);
    // The other two came with the same recvmmsg.
    assert_eq!(queue.pending_messages(), 2);
    assert_eq!(queue.recv().unwrap().get_packet_id(), 2);
    assert_eq!(queue.recv().unwrap().get_packet_id(), 3);
    assert_eq!(queue.pending_messages(), 0);
    let counts = queue.io_counts();
    assert_eq!((counts.receives, counts.datagrams), (1, 3));

    // An oversized datagram is reported, the packets around it are kept.
    let mut big = packet_bytes(4);
    big.resize(queue.bufsize * 4 + 100, 0);
    kernel_sends(kernel, &packet_bytes(5));
    kernel_sends(kernel, &big);
    kernel_sends(kernel, &packet_bytes(6));
    let err = queue.recv().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(ENOSPC));
    assert_eq!(queue.recv().unwrap().get_packet_id(), 5);
    assert_eq!(queue.recv().unwrap().get_packet_id(), 6);

    // Nothing more: the receive timeout ends the wait.
    queue
        .set_recv_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    assert!(is_timeout(&queue.recv().unwrap_err()));
    unsafe { close(kernel) };
}

#[test]
fn buffers_are_reused_when_messages_are_dropped_and_not_when_kept() {
    let (mut queue, kernel) = queue_on_socketpair();
    queue.set_recv_batch(4);
    kernel_sends(kernel, &packet_bytes(1));
    let kept = queue.recv().unwrap();
    let first_buffer = Arc::as_ptr(&queue.slots.buffers[0]);
    kernel_sends(kernel, &packet_bytes(2));
    let msg = queue.recv().unwrap();
    // The first buffer is still referred to by `kept`: a new one was needed.
    assert_ne!(Arc::as_ptr(&queue.slots.buffers[0]), first_buffer);
    assert_eq!(kept.get_packet_id(), 1);
    assert_eq!(&kept.get_payload()[..2], &[0x45, 0x00]);
    drop(kept);
    let second_buffer = Arc::as_ptr(&queue.slots.buffers[0]);
    drop(msg);
    kernel_sends(kernel, &packet_bytes(3));
    assert_eq!(queue.recv().unwrap().get_packet_id(), 3);
    assert_eq!(Arc::as_ptr(&queue.slots.buffers[0]), second_buffer);
    unsafe { close(kernel) };
}

#[test]
fn worker_loop_allocates_nothing_per_packet() {
    let (mut queue, kernel) = queue_on_socketpair();
    queue.set_recv_batch(16);
    queue.set_verdict_batch(1000, None);
    let datagrams: Vec<Vec<u8>> = (1..=400).map(packet_bytes).collect();
    // One round is what one recvmmsg brings: recv makes a system call (and flushes) only after.
    let round = |queue: &mut Queue, ids: std::ops::Range<usize>| {
        for d in &datagrams[ids.clone()] {
            kernel_sends(kernel, d);
        }
        for _ in ids {
            let mut msg = queue.recv().unwrap();
            msg.set_verdict(Verdict::Accept);
            if msg.get_packet_id() % 7 == 0 {
                msg.set_nfmark(0x5717);
            }
            queue.queue_verdict(msg).unwrap();
        }
        // What flush_verdicts sends to the kernel (a socket pair would refuse a netlink
        // address): the merged messages are complete.
        assert!(!queue.pending.bytes().is_empty());
        queue.pending.clear();
    };
    // Warm-up: buffers, queues and the verdict buffer reach their size.
    round(&mut queue, 0..16);
    round(&mut queue, 16..32);
    let before = allocations();
    for r in 2..25 {
        round(&mut queue, r * 16..(r + 1) * 16);
    }
    assert_eq!(allocations() - before, 0, "allocations for 368 packets");
    unsafe { close(kernel) };
}

#[test]
fn held_verdicts_wait_while_packets_are_queued_and_go_before_recv_waits() {
    let (mut queue, kernel) = queue_on_socketpair();
    kernel_sends(kernel, &packet_bytes(1));
    kernel_sends(kernel, &packet_bytes(2));
    queue.handed_out = 0;
    let msg = queue.recv().unwrap();
    queue.queue_verdict(msg).unwrap();
    // Packet 2 is already queued: it is received, the verdict stays held.
    assert_eq!(queue.recv().unwrap().get_packet_id(), 2);
    assert_eq!(queue.pending_verdicts(), 1);
    // Nothing queued now: recv sends the held verdicts before it waits. (A socket pair refuses
    // the netlink address of the kernel: the attempt shows as EINVAL, and nothing is held.)
    let err = queue.recv().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(queue.pending_verdicts(), 0);
    unsafe { close(kernel) };
}
