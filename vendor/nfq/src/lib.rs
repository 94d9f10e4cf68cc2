//! nfq - NetFilter queue for Rust
//!
//! `nfq` is Rust library for performing userspace handling of packets queued by the kernel packet
//! packet filter chains.
//!
//! # License
//! In contrast to `libnetfilter_queue` which is licensed under GPL 2.0, which will require all
//! binaries using that library to be bound by GPL, `nfq` is dual-licensed under MIT/Apache-2.0.
//! `nfq` achieves this by communicates with kernel via NETLINK sockets directly.
//!
//! # Example
//!
//! Here is an example which accepts all packets.
//! ```no_run
//! use nfq::{Queue, Verdict};
//!
//! fn main() -> std::io::Result<()> {
//!    let mut queue = Queue::open()?;
//!    queue.bind(0)?;
//!    loop {
//!        let mut msg = queue.recv()?;
//!        msg.set_verdict(Verdict::Accept);
//!        queue.verdict(msg)?;
//!    }
//!    Ok(())
//! }
//! ```

mod binding;

use binding::*;
use libc::{
    bind, c_int, c_uint, close, nlattr, nlmsgerr, nlmsghdr, recv, sendto, setsockopt, sockaddr_nl,
    socket, sysconf, _SC_PAGE_SIZE, AF_NETLINK, AF_UNSPEC, EINTR, ENOSPC, MSG_DONTWAIT, MSG_TRUNC,
    NETLINK_NETFILTER, NETLINK_NO_ENOBUFS, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP_INTR,
    NLM_F_REQUEST, PF_NETLINK, SOCK_RAW, SOL_NETLINK,
};
use std::collections::VecDeque;
use std::io::Result;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const NLMSG_HDRLEN: usize = nfq_align(std::mem::size_of::<nlmsghdr>());

fn be16_to_cpu(x: u16) -> u16 {
    u16::from_ne_bytes(x.to_be_bytes())
}
fn be32_to_cpu(x: u32) -> u32 {
    u32::from_ne_bytes(x.to_be_bytes())
}
fn be64_to_cpu(x: u64) -> u64 {
    u64::from_ne_bytes(x.to_be_bytes())
}

/// Netlink messages pad to a 4 byte alignment between sections.
const fn nfq_align(len: usize) -> usize {
    (len + 3) & !3
}

/// Decision made on a specific packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Discard the packet
    Drop,
    /// Accept the packet, continue iterations
    Accept,
    /// Inject the packet into a different queue
    Queue(u16),
    /// Iterate the same cycle once more
    Repeat,
    /// Accept the packet, but don't continue iterations
    Stop,
}

// Messages are expected to be 32-bit aligned, so we take a [u32] as buffer instead [u8].
unsafe fn nfq_hdr_put(nlmsg: &mut Nlmsg, typ: u16, queue_num: u16, ack: bool) {
    let nlh = nlmsg.as_hdr();
    (*nlh).nlmsg_type = ((NFNL_SUBSYS_QUEUE as u16) << 8) | typ;
    (*nlh).nlmsg_flags = (NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 }) as u16;
    let nfg: *mut nfgenmsg = nlmsg.extra_header();
    (*nfg).nfgen_family = AF_UNSPEC as u8;
    (*nfg).version = NFNETLINK_V0 as u8;
    (*nfg).res_id = be16_to_cpu(queue_num);
}

/// Helper functions for parsing `nlattr`. We do this ourselves instead of using libmnl to avoid
/// unnecessary function calls.
mod nla {
    #[inline]
    pub unsafe fn get_type(attr: *const libc::nlattr) -> u16 {
        (*attr).nla_type & (libc::NLA_TYPE_MASK as u16)
    }
    #[inline]
    pub unsafe fn get_payload_len(attr: *const libc::nlattr) -> usize {
        (*attr).nla_len as usize - std::mem::size_of::<libc::nlattr>()
    }
    /// Returned value is only 32-bit aligned.
    #[inline]
    pub unsafe fn get_payload<T>(attr: *const libc::nlattr) -> *const T {
        (attr as usize + std::mem::size_of::<libc::nlattr>()) as _
    }
    /// Get u32 from payload and convert it to native endian
    #[inline]
    pub unsafe fn get_u32(attr: *const libc::nlattr) -> u32 {
        super::be32_to_cpu(*get_payload(attr))
    }
}

struct AttrStream<'a> {
    buf: &'a [u32],
}

impl<'a> Iterator for AttrStream<'a> {
    type Item = *const nlattr;

    fn next(&mut self) -> Option<Self::Item> {
        let buf_left = self.buf.len() * 4;

        // Not enough space for an attribute header
        if buf_left < std::mem::size_of::<libc::nlattr>() {
            return None;
        }

        let attr = self.buf.as_ptr() as *const nlattr;
        let nla_len = unsafe { (*attr).nla_len } as usize;

        // A truncated attribute, or one too short for its own header (which would never advance),
        // ends the stream: the rest of the message cannot be trusted.
        if buf_left < nla_len || nla_len < std::mem::size_of::<libc::nlattr>() {
            self.buf = &[];
            return None;
        }

        self.buf = &self.buf[(nla_len + 3) / 4..];
        Some(attr)
    }
}

struct Nlmsg<'a> {
    buf: &'a mut [u32],
    len: usize,
}

impl<'a> Nlmsg<'a> {
    unsafe fn new(buf: &'a mut [u32]) -> Self {
        // First clear all of the header
        let hdrlen = (std::mem::size_of::<nlmsghdr>() + 3) / 4;
        std::ptr::write_bytes(buf.as_mut_ptr(), 0, hdrlen);
        Self { buf, len: hdrlen }
    }

    /// Allocate and zero for an extra header
    fn extra_header<T>(&mut self) -> *mut T {
        let len = (std::mem::size_of::<T>() + 3) / 4;
        let ptr = unsafe { self.buf.as_mut_ptr().add(self.len) };
        self.len += len;
        assert!(self.len <= self.buf.len());
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        ptr as _
    }

    /// Put an attribute
    fn put_raw(&mut self, typ: u16, len: usize) -> *mut u32 {
        let nla_len = len + std::mem::size_of::<nlattr>();
        let attr: *mut nlattr = unsafe { self.buf.as_mut_ptr().add(self.len) as _ };
        self.len += (nla_len + 3) / 4;
        assert!(self.len <= self.buf.len());
        unsafe {
            (*attr).nla_type = typ;
            (*attr).nla_len = nla_len as _;
            nla::get_payload::<u32>(attr) as *mut u32
        }
    }

    /// Put a slice of arbitary data. This is safe as it copies its memory representation only.
    fn put_slice<T>(&mut self, typ: u16, value: &[T]) {
        let ptr = self.put_raw(typ, value.len() * std::mem::size_of::<T>());
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), ptr as _, value.len()) };
    }

    /// Put an u32 attribute, convert to big endian
    fn put_nested_u32s(&mut self, typ: u16, attrs: &[(u16, u32)]) {
        let ptr = self.put_raw(typ | libc::NLA_F_NESTED as u16, attrs.len() * 8);
        for (i, &(typ, data)) in attrs.iter().enumerate() {
            unsafe {
                let attr = ptr.add(i * 2) as *mut nlattr;
                (*attr).nla_type = typ;
                (*attr).nla_len = 8;
                *ptr.add(i * 2 + 1) = be32_to_cpu(data);
            }
        }
    }

    /// Put an u32 attribute, convert to big endian
    fn put_u32(&mut self, typ: u16, data: u32) {
        let ptr = self.put_raw(typ, 4);
        unsafe { *ptr = be32_to_cpu(data) };
    }

    fn as_hdr(&mut self) -> *mut nlmsghdr {
        self.buf.as_mut_ptr() as _
    }

    unsafe fn adjust_len(&mut self) {
        let hdr = self.as_hdr();
        (*hdr).nlmsg_len = (self.len * 4) as _;
    }
}

#[derive(Debug)]
enum PayloadState {
    Unmodified,
    Modified,
    Owned(Vec<u8>),
}

/// A network packet with associated metadata.
#[derive(Debug)]
pub struct Message {
    // This is here for lifetime requirements, but we're not using it directly.
    #[allow(dead_code)]
    buffer: Arc<Vec<u32>>,
    id: u16,
    nfmark: u32,
    nfmark_dirty: bool,
    indev: u32,
    outdev: u32,
    physindev: u32,
    physoutdev: u32,
    orig_len: u32,
    skbinfo: u32,
    secctx: *const libc::c_char,
    uid: Option<u32>,
    gid: Option<u32>,
    timestamp: *const nfqnl_msg_packet_timestamp,
    hwaddr: *const nfqnl_msg_packet_hw,
    hdr: *const nfqnl_msg_packet_hdr,
    // conntrack data
    ct: Option<Conntrack>,
    // The actual lifetime is 'buffer
    payload: &'static mut [u8],
    payload_state: PayloadState,
    verdict: Verdict,
    // (mark, mask) of the connection mark to set with the verdict
    ct_mark: Option<(u32, u32)>,
}

unsafe impl Send for Message {}
unsafe impl Sync for Message {}

impl Message {
    /// Get the queue number.
    #[inline]
    pub fn get_queue_num(&self) -> u16 {
        self.id
    }

    /// Get the nfmark (fwmark) of the packet.
    #[inline]
    pub fn get_nfmark(&self) -> u32 {
        self.nfmark
    }

    /// Set the associated nfmark (fwmark) of the packet.
    #[inline]
    pub fn set_nfmark(&mut self, mark: u32) {
        self.nfmark = mark;
        self.nfmark_dirty = true;
    }

    /// Get the interface index of the interface the packet arrived on. If the packet is locally
    /// generated, or the input interface is no longer known (e.g. `POSTROUTING` chain), 0 is
    /// returned.
    #[inline]
    pub fn get_indev(&self) -> u32 {
        self.indev
    }

    /// Get the interface index of the bridge port the packet arrived on. If the packet is locally
    /// generated, or the input interface is no longer known (e.g. `POSTROUTING` chain), 0 is
    /// returned.
    #[inline]
    pub fn get_physindev(&self) -> u32 {
        self.physindev
    }

    /// Get the interface index of the interface the packet is to be transmitted from. If the
    /// packet is locally destinated, or the output interface is unknown (e.g. `PREROUTING` chain),
    /// 0 is returned.
    #[inline]
    pub fn get_outdev(&self) -> u32 {
        self.outdev
    }

    /// Get the interface index of the bridge port the packet is to be transmitted from. If the
    /// packet is locally destinated, or the output interface is unknown (e.g. `PREROUTING` chain),
    /// 0 is returned.
    #[inline]
    pub fn get_physoutdev(&self) -> u32 {
        self.physoutdev
    }

    /// Get the original length of the packet.
    #[inline]
    pub fn get_original_len(&self) -> usize {
        if self.orig_len == 0 {
            self.payload.len()
        } else {
            self.orig_len as usize
        }
    }

    /// Check if the packet is GSO-offloaded.
    #[inline]
    pub fn is_seg_offloaded(&self) -> bool {
        self.skbinfo & NFQA_SKB_GSO != 0
    }

    /// Check if the checksums are ready, e.g. due to offload.
    #[inline]
    pub fn is_checksum_ready(&self) -> bool {
        self.skbinfo & NFQA_SKB_CSUMNOTREADY == 0
    }

    /// Get the security context string of the local process sending the packet. If not applicable,
    /// `None` is returned.
    pub fn get_security_context(&self) -> Option<&str> {
        if self.secctx.is_null() {
            return None;
        }
        unsafe { std::ffi::CStr::from_ptr(self.secctx).to_str().ok() }
    }

    /// Get the UID of the local process sending the packet. If not applicable, `None` is returned.
    #[inline]
    pub fn get_uid(&self) -> Option<u32> {
        self.uid
    }

    /// Get the GID of the local process sending the packet. If not applicable, `None` is returned.
    #[inline]
    pub fn get_gid(&self) -> Option<u32> {
        self.gid
    }

    /// Get the timestamp of the packet.
    pub fn get_timestamp(&self) -> Option<SystemTime> {
        if self.timestamp.is_null() {
            return None;
        }
        unsafe {
            let duration = Duration::from_secs(be64_to_cpu((*self.timestamp).sec))
                + Duration::from_micros(be64_to_cpu((*self.timestamp).usec));
            Some(SystemTime::UNIX_EPOCH + duration)
        }
    }

    /// Get the hardware address associated with the packet. For Ethernet packets, the hardware
    /// address returned will be the MAC address of the packet source host, if any.
    pub fn get_hw_addr(&self) -> Option<&[u8]> {
        if self.hwaddr.is_null() {
            return None;
        }
        unsafe {
            let len = be16_to_cpu((*self.hwaddr).hw_addrlen) as usize;
            Some(&(&(*self.hwaddr).hw_addr)[..len])
        }
    }

    /// Get the packet ID that netfilter uses to track the packet.
    #[inline]
    pub fn get_packet_id(&self) -> u32 {
        unsafe { be32_to_cpu((*self.hdr).packet_id) }
    }

    /// Get the link layer protocol number, e.g. the EtherType field on Ethernet links.
    #[inline]
    pub fn get_hw_protocol(&self) -> u16 {
        be16_to_cpu(unsafe { (*self.hdr).hw_protocol })
    }

    /// Get the netfilter hook number that handles this packet.
    #[inline]
    pub fn get_hook(&self) -> u8 {
        unsafe { (*self.hdr).hook }
    }

    /// Get the content of the payload.
    #[inline]
    pub fn get_payload(&self) -> &[u8] {
        match self.payload_state {
            PayloadState::Unmodified | PayloadState::Modified => self.payload,
            PayloadState::Owned(ref vec) => &vec,
        }
    }

    /// Get the content of the payload in mutable state. If the final verdict is not
    /// `Verdict::Drop`, the change be committed to the kernel.
    ///
    /// *Note*: Once the method is called, the payload will be written back regardles whether
    /// the underlying storage is actually modified, therefore it is not optimal performance-wise.
    #[inline]
    pub fn get_payload_mut(&mut self) -> &mut [u8] {
        match self.payload_state {
            PayloadState::Unmodified => {
                self.payload_state = PayloadState::Modified;
                self.payload
            }
            PayloadState::Modified => self.payload,
            PayloadState::Owned(ref mut vec) => vec,
        }
    }

    /// Set the content of the payload. If the final verdict is not `Verdict::Drop`, the updated
    /// payload will be committed to the kernel.
    #[inline]
    pub fn set_payload(&mut self, payload: impl Into<Vec<u8>>) {
        self.payload_state = PayloadState::Owned(payload.into());
    }

    /// Get the current verdict.
    #[inline]
    pub fn get_verdict(&self) -> Verdict {
        self.verdict
    }

    /// Set the current verdict.
    #[inline]
    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.verdict = verdict;
    }

    /// Set the bits `mask` of the connection's mark (connmark) to those of `mark`, with the
    /// verdict: the kernel computes `(connmark & !mask) | (mark & mask)` (an `NFQA_CT` attribute
    /// holding `CTA_MARK` and `CTA_MARK_MASK`, handled by `ctnetlink_glue_parse`).
    ///
    /// The kernel applies it only if it has the conntrack glue (`nf_conntrack_netlink` loaded,
    /// built with `CONFIG_NETFILTER_NETLINK_GLUE_CT`) and the packet has a conntrack entry;
    /// otherwise it ignores the attribute without an error. [`Queue::set_recv_conntrack`]
    /// failing with `EOPNOTSUPP` tells in advance that the glue is missing. The packet mark is
    /// not changed (see [`set_nfmark`](#method.set_nfmark)).
    #[inline]
    pub fn set_ct_mark(&mut self, mark: u32, mask: u32) {
        self.ct_mark = Some((mark & mask, mask));
    }

    /// Get the associated conntrack information.
    #[inline]
    #[cfg_attr(not(feature = "ct"), doc(hidden))]
    pub fn get_conntrack(&self) -> Option<&Conntrack> {
        self.ct.as_ref()
    }
}

/// Conntrack information associated with the message
#[cfg_attr(not(feature = "ct"), doc(hidden))]
#[derive(Debug, Default, Clone)]
pub struct Conntrack {
    state: u32,
    id: u32,
    mark: Option<u32>,
    status: Option<u32>,
    tcp_state: Option<u8>,
}

#[cfg_attr(not(feature = "ct"), doc(hidden))]
pub mod conntrack {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum State {
        Established,
        Related,
        New,
        EstablishedReply,
        RelatedReply,
        NewReply,
        #[doc(hidden)]
        Invalid,
    }
}

impl Conntrack {
    /// Get the conntrack ID.
    #[inline]
    pub fn get_id(&self) -> u32 {
        self.id
    }

    /// Get the connection mark (connmark, `CTA_MARK`), if the kernel sent it.
    #[inline]
    pub fn get_mark(&self) -> Option<u32> {
        self.mark
    }

    /// Get the connection's status bits (`CTA_STATUS`: `IPS_SEEN_REPLY`, `IPS_ASSURED`, ...),
    /// if the kernel sent them.
    #[inline]
    pub fn get_status(&self) -> Option<u32> {
        self.status
    }

    /// Get the TCP state of the connection as conntrack tracks it
    /// (`CTA_PROTOINFO_TCP_STATE`: `TCP_CONNTRACK_ESTABLISHED` is 3), for TCP connections.
    #[inline]
    pub fn get_tcp_state(&self) -> Option<u8> {
        self.tcp_state
    }

    /// Get the connection state
    #[inline]
    pub fn get_state(&self) -> conntrack::State {
        use conntrack::State;
        match self.state {
            IP_CT_ESTABLISHED => State::Established,
            IP_CT_RELATED => State::Related,
            IP_CT_NEW => State::New,
            IP_CT_ESTABLISHED_REPLY => State::EstablishedReply,
            IP_CT_RELATED_REPLY => State::RelatedReply,
            IP_CT_NEW_REPLY => State::NewReply,
            _ => State::Invalid,
        }
    }
}

/// Iterate over the attributes nested in `attr`.
unsafe fn nested(attr: *const nlattr) -> AttrStream<'static> {
    AttrStream {
        buf: std::slice::from_raw_parts(
            nla::get_payload(attr),
            (nla::get_payload_len(attr) + 3) / 4,
        ),
    }
}

unsafe fn parse_ct_attr(attr: *const nlattr, ct: &mut Conntrack) {
    let typ = nla::get_type(attr) as c_uint;
    let is_u32 = nla::get_payload_len(attr) >= 4;
    // There are many more types, they just aren't handled yet.
    match typ {
        CTA_ID if is_u32 => ct.id = nla::get_u32(attr),
        CTA_MARK if is_u32 => ct.mark = Some(nla::get_u32(attr)),
        CTA_STATUS if is_u32 => ct.status = Some(nla::get_u32(attr)),
        CTA_PROTOINFO => {
            for info in nested(attr) {
                if nla::get_type(info) as c_uint != CTA_PROTOINFO_TCP {
                    continue;
                }
                for tcp in nested(info) {
                    if nla::get_type(tcp) as c_uint == CTA_PROTOINFO_TCP_STATE
                        && nla::get_payload_len(tcp) >= 1
                    {
                        ct.tcp_state = Some(*nla::get_payload::<u8>(tcp));
                    }
                }
            }
        }
        _ => (),
    }
}

unsafe fn parse_attr(attr: *const nlattr, message: &mut Message) {
    let typ = nla::get_type(attr) as c_uint;
    let len = nla::get_payload_len(attr);
    // Attributes too short for their type are ignored rather than read past their end.
    let is_u32 = len >= 4;
    match typ {
        NFQA_MARK if is_u32 => message.nfmark = nla::get_u32(attr),
        NFQA_IFINDEX_INDEV if is_u32 => message.indev = nla::get_u32(attr),
        NFQA_IFINDEX_OUTDEV if is_u32 => message.outdev = nla::get_u32(attr),
        NFQA_IFINDEX_PHYSINDEV if is_u32 => message.physindev = nla::get_u32(attr),
        NFQA_IFINDEX_PHYSOUTDEV if is_u32 => message.physoutdev = nla::get_u32(attr),
        NFQA_HWADDR if len >= std::mem::size_of::<nfqnl_msg_packet_hw>() => {
            message.hwaddr = nla::get_payload(attr);
        }
        NFQA_CAP_LEN if is_u32 => message.orig_len = nla::get_u32(attr),
        NFQA_SKB_INFO if is_u32 => message.skbinfo = nla::get_u32(attr),
        // The kernel sends it NUL-terminated; anything else is not read as a C string.
        NFQA_SECCTX if len > 0 && *nla::get_payload::<u8>(attr).add(len - 1) == 0 => {
            message.secctx = nla::get_payload(attr)
        }
        NFQA_UID if is_u32 => message.uid = Some(nla::get_u32(attr)),
        NFQA_GID if is_u32 => message.gid = Some(nla::get_u32(attr)),
        NFQA_TIMESTAMP if len >= std::mem::size_of::<nfqnl_msg_packet_timestamp>() => {
            message.timestamp = nla::get_payload(attr);
        }
        NFQA_PACKET_HDR if len >= std::mem::size_of::<nfqnl_msg_packet_hdr>() => {
            message.hdr = nla::get_payload(attr);
        }
        NFQA_PAYLOAD => {
            let len = nla::get_payload_len(attr);
            // We actually own this message (even though the buffer is shared via a Arc, we know
            // that no other messages are overlapping, so it's safe to mutate it)
            let payload = nla::get_payload::<u8>(attr) as *mut u8;
            message.payload =
                std::slice::from_raw_parts_mut(payload as *const u8 as *mut u8, len as usize);
        }
        NFQA_CT => {
            let ct = message.ct.get_or_insert_with(Conntrack::default);
            for attr in nested(attr) {
                parse_ct_attr(attr, ct);
            }
        }
        NFQA_CT_INFO if is_u32 => {
            message.ct.get_or_insert_with(Conntrack::default).state = nla::get_u32(attr);
        }
        _ => (),
    }
}

const NFGEN_HDRLEN: usize = nfq_align(std::mem::size_of::<nfgenmsg>());

/// Parse one NFQNL_MSG_PACKET message of `buffer`. `None` if it is malformed (too short, or
/// without a packet header).
unsafe fn parse_msg(nlh: *const nlmsghdr, buffer: &Arc<Vec<u32>>) -> Option<Message> {
    let nfgenmsg = (nlh as usize + NLMSG_HDRLEN) as *const nfgenmsg;
    let attr_start = (nfgenmsg as usize + NFGEN_HDRLEN) as *const u32;
    let attr_len = ((*nlh).nlmsg_len as usize).checked_sub(NLMSG_HDRLEN + NFGEN_HDRLEN)?;

    let mut message = Message {
        buffer: Arc::clone(buffer),
        id: be16_to_cpu((*nfgenmsg).res_id),
        hdr: std::ptr::null(),
        nfmark: 0,
        nfmark_dirty: false,
        indev: 0,
        outdev: 0,
        physindev: 0,
        physoutdev: 0,
        orig_len: 0,
        skbinfo: 0,
        uid: None,
        gid: None,
        secctx: std::ptr::null(),
        timestamp: std::ptr::null(),
        hwaddr: std::ptr::null(),
        ct: None,
        payload: &mut [],
        payload_state: PayloadState::Unmodified,
        verdict: Verdict::Accept,
        ct_mark: None,
    };

    for attr in (AttrStream {
        buf: std::slice::from_raw_parts(attr_start, (attr_len + 3) / 4),
    }) {
        parse_attr(attr, &mut message);
    }

    if message.hdr.is_null() {
        return None;
    }
    Some(message)
}

/// Walk the netlink messages of one datagram of `size` bytes received into `buffer`; packets go
/// to `out`. `Ok(true)` when the datagram ends a request (an ACK or `NLMSG_DONE`), an error for
/// an error message from the kernel (packets before it are kept in `out`).
unsafe fn parse_datagram(
    buffer: &Arc<Vec<u32>>,
    mut size: usize,
    out: &mut VecDeque<Message>,
) -> Result<bool> {
    const PACKET: c_int = ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET) as c_int;
    size = std::cmp::min(size, buffer.len() * 4);
    let mut nlh = buffer.as_ptr() as *const nlmsghdr;
    loop {
        if size < NLMSG_HDRLEN {
            break;
        }
        let nlmsg_len = (*nlh).nlmsg_len as usize;
        if size < nlmsg_len || nlmsg_len < NLMSG_HDRLEN {
            break;
        }

        if (*nlh).nlmsg_flags & NLM_F_DUMP_INTR as u16 != 0 {
            return Err(std::io::Error::from_raw_os_error(EINTR));
        }

        let nlmsg_type = (*nlh).nlmsg_type as c_int;
        match nlmsg_type {
            NLMSG_ERROR => {
                if nlmsg_len < NLMSG_HDRLEN + std::mem::size_of::<nlmsgerr>() {
                    return Err(std::io::Error::from_raw_os_error(libc::EBADMSG));
                }
                let err = (nlh as usize + NLMSG_HDRLEN) as *const nlmsgerr;
                let errno = (*err).error.abs();
                if errno == 0 {
                    return Ok(true);
                }
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            NLMSG_DONE => return Ok(true),
            PACKET => out.extend(parse_msg(nlh, buffer)),
            _ => (),
        }

        let aligned_len = nfq_align(nlmsg_len);
        nlh = (nlh as usize + aligned_len) as *const nlmsghdr;
        size = match size.checked_sub(aligned_len) {
            Some(v) => v,
            None => break,
        }
    }

    Ok(false)
}

/// A NetFilter queue.
pub struct Queue {
    /// NetLink socket
    fd: libc::c_int,
    /// Flag to send for recv operation. Decides whether or not the operation blocks until there is
    /// message from the kernel.
    recv_flag: libc::c_int,
    bufsize: usize,
    /// In order to support out-of-order verdict and batch recv, we need to carefully manage the
    /// lifetime of buffer, so that buffer is never freed before all messages are dropped.
    /// We use Arc for this case, and keep an extra copy here, so that if all messages are handled
    /// before call to `recv`, we can re-use the buffer.
    buffer: Arc<Vec<u32>>,
    /// We can receive multiple messages from kernel in a single recv, so we keep a queue
    /// internally before everything is consumed.
    queue: VecDeque<Message>,
    /// Message buffer reused across verdict calls
    verdict_buffer: Option<Box<[u32; (8192 + 0x10000) / 4]>>,
    /// Verdicts held back by `queue_verdict`
    pending: PendingVerdicts,
    /// Datagrams received per system call, and their buffers
    recv_batch: usize,
    slots: RecvSlots,
    /// Messages returned by `recv`, and verdicts given for them, to know when merging
    /// verdicts into an NFQNL_MSG_VERDICT_BATCH cannot cover a packet still without verdict.
    handed_out: u64,
    verdicts_given: u64,
    /// System calls made, for measurements
    counts: IoCounts,
}

/// How many system calls a [`Queue`] made, to measure what batching saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Receive system calls (`recv` or `recvmmsg`), including those that found nothing.
    pub receives: u64,
    /// Datagrams those receives returned.
    pub datagrams: u64,
    /// `sendto` calls that carried verdicts.
    pub verdict_sends: u64,
    /// Verdict messages sent (an `NFQNL_MSG_VERDICT_BATCH` counts as one).
    pub verdict_messages: u64,
}

/// Most datagrams [`Queue::set_recv_batch`] lets one system call receive.
pub const RECV_BATCH_MAX: usize = 64;

/// Buffers and headers for `recvmmsg`. Each buffer is reused as soon as no `Message` refers to it.
struct RecvSlots {
    buffers: Vec<Arc<Vec<u32>>>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// The raw pointers in `hdrs` and `iovs` are written before each `recvmmsg` and only used by it.
unsafe impl Send for RecvSlots {}
unsafe impl Sync for RecvSlots {}

/// Verdict messages held back by [`Queue::queue_verdict`], sent back to back in one `sendto`.
struct PendingVerdicts {
    buf: Vec<u32>,
    /// Words of `buf` in use
    len: usize,
    /// Verdicts (packets) held
    count: usize,
    /// Messages in `buf`
    messages: u64,
    /// When the oldest held verdict was queued (only measured with a `max_delay`)
    since: Option<Instant>,
    /// The last message of `buf`, if later verdicts may extend it into a batch verdict
    run: Option<VerdictRun>,
    max_count: usize,
    max_delay: Option<Duration>,
    merge: bool,
}

/// A verdict message that covers the packets of `queue_num` up to `last_id`, all with the same
/// verdict and packet mark.
struct VerdictRun {
    /// Word offset of the message in `PendingVerdicts::buf`
    at: usize,
    queue_num: u16,
    last_id: u32,
    verdict: u32,
    mark: Option<u32>,
}

/// Word offset, in a verdict message written by `put_verdict`, of the packet id of its
/// `NFQA_VERDICT_HDR` (after the netlink header, the nfgenmsg, the attribute header and the
/// verdict word).
const VERDICT_ID_WORD: usize = (NLMSG_HDRLEN + NFGEN_HDRLEN) / 4 + 2;
/// Bytes of held-back verdicts above which they are sent before adding more (well below the
/// socket's default send buffer).
const PENDING_MAX_BYTES: usize = 128 * 1024;

impl PendingVerdicts {
    fn new() -> Self {
        PendingVerdicts {
            buf: Vec::new(),
            len: 0,
            count: 0,
            messages: 0,
            since: None,
            run: None,
            max_count: 64,
            max_delay: None,
            merge: true,
        }
    }

    /// Make room for `bytes` more bytes of messages.
    fn reserve(&mut self, bytes: usize) {
        let words = self.len + (bytes + 3) / 4;
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
        self.messages = 0;
        self.since = None;
        self.run = None;
    }

    /// Append a verdict message for `msg`. `extend` allows growing the last message into a batch
    /// verdict when `msg` continues its run.
    fn push(&mut self, msg: &Message, extend: bool) {
        let mergeable = self.merge
            && msg.ct_mark.is_none()
            && matches!(msg.payload_state, PayloadState::Unmodified);
        let id = msg.get_packet_id();
        let verdict = verdict_code(msg.verdict);
        let mark = if msg.nfmark_dirty {
            Some(msg.nfmark)
        } else {
            None
        };
        if self.count == 0 && self.max_delay.is_some() {
            self.since = Some(Instant::now());
        }
        self.count += 1;
        if let Some(run) = self.run.as_mut() {
            if mergeable
                && extend
                && run.queue_num == msg.id
                && run.last_id.wrapping_add(1) == id
                && run.verdict == verdict
                && run.mark == mark
            {
                // The same message now says: this verdict for every packet up to `id`.
                unsafe {
                    let base = self.buf.as_mut_ptr().add(run.at);
                    (*(base as *mut nlmsghdr)).nlmsg_type =
                        ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH) as u16;
                    *base.add(VERDICT_ID_WORD) = be32_to_cpu(id);
                }
                run.last_id = id;
                return;
            }
        }
        // Headers, verdict header, mark, NFQA_CT with two attributes, payload.
        let payload = match msg.payload_state {
            PayloadState::Unmodified => 0,
            _ => msg.get_payload().len(),
        };
        self.reserve(NLMSG_HDRLEN + NFGEN_HDRLEN + 12 + 8 + 20 + 4 + payload);
        let at = self.len;
        let len = unsafe {
            let mut nlmsg = Nlmsg::new(&mut self.buf[at..]);
            put_verdict(&mut nlmsg, msg);
            nlmsg.adjust_len();
            nlmsg.len
        };
        self.len += len;
        self.messages += 1;
        self.run = if mergeable {
            Some(VerdictRun {
                at,
                queue_num: msg.id,
                last_id: id,
                verdict,
                mark,
            })
        } else {
            None
        };
    }

    fn due(&self) -> bool {
        self.count >= self.max_count
            || self.len * 4 >= PENDING_MAX_BYTES
            || match (self.max_delay, self.since) {
                (Some(delay), Some(since)) => since.elapsed() >= delay,
                _ => false,
            }
    }

    fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.len * 4) }
    }
}

impl Queue {
    /// Open a NetFilter socket and queue connection.
    pub fn open() -> std::io::Result<Queue> {
        let fd = unsafe { socket(PF_NETLINK, SOCK_RAW, NETLINK_NETFILTER) };
        if fd == -1 {
            return Err(std::io::Error::last_os_error());
        }

        let metadata_size = std::cmp::min(unsafe { sysconf(_SC_PAGE_SIZE) as usize }, 8192);

        let mut queue = Queue {
            fd,
            recv_flag: 0,
            bufsize: metadata_size,
            buffer: Arc::new(Vec::with_capacity(metadata_size)),
            queue: VecDeque::new(),
            verdict_buffer: Some(Box::new(unsafe { std::mem::zeroed() })),
            pending: PendingVerdicts::new(),
            recv_batch: 1,
            slots: RecvSlots {
                buffers: Vec::new(),
                hdrs: Vec::new(),
                iovs: Vec::new(),
            },
            handed_out: 0,
            verdicts_given: 0,
            counts: IoCounts::default(),
        };

        let mut addr: sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = AF_NETLINK as _;
        if unsafe {
            bind(
                fd,
                &addr as *const sockaddr_nl as _,
                std::mem::size_of_val(&addr) as _,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }

        queue.set_recv_enobufs(false)?;
        Ok(queue)
    }

    /// Change whether ENOBUFS should be received by the application if the kernel queue is full.
    /// As user-space usually cannot do any special about this, [`open`](#method.open) will turn
    /// this off by default.
    ///
    /// When enabled, the [`recv`](#method.recv) after the socket's receive buffer overflowed
    /// returns an error with `raw_os_error() == Some(libc::ENOBUFS)` once (packets were lost);
    /// the following calls receive normally. See also
    /// [`set_recv_buffer_size`](#method.set_recv_buffer_size).
    pub fn set_recv_enobufs(&mut self, enable: bool) -> std::io::Result<()> {
        let val = (!enable) as c_int;
        if unsafe {
            setsockopt(
                self.fd,
                SOL_NETLINK,
                NETLINK_NO_ENOBUFS,
                &val as *const c_int as _,
                std::mem::size_of_val(&val) as _,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Set the size of the socket's receive buffer, which holds the packets the kernel has queued
    /// to this socket and that [`recv`](#method.recv) has not read yet. When it is full the
    /// kernel cannot deliver more packets: they are dropped (counted as "user dropped" in
    /// `/proc/net/netfilter/nfnetlink_queue`), or accepted if fail open is enabled.
    ///
    /// Uses `SO_RCVBUFFORCE`, which needs `CAP_NET_ADMIN` and may exceed `net.core.rmem_max`;
    /// when that is not permitted, falls back to `SO_RCVBUF`, which the kernel caps at
    /// `net.core.rmem_max`. Returns the effective size as the kernel reports it
    /// (`SO_RCVBUF`, which counts the kernel's bookkeeping and so is about twice `size`).
    pub fn set_recv_buffer_size(&mut self, size: usize) -> Result<usize> {
        let val = std::cmp::min(size, (c_int::MAX / 2) as usize) as c_int;
        let set = |opt: c_int| unsafe {
            setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                opt,
                &val as *const c_int as _,
                std::mem::size_of_val(&val) as _,
            )
        };
        if set(libc::SO_RCVBUFFORCE) < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EPERM) {
                return Err(err);
            }
            if set(libc::SO_RCVBUF) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        self.recv_buffer_size()
    }

    /// Get the size of the socket's receive buffer as the kernel reports it (`SO_RCVBUF`).
    pub fn recv_buffer_size(&self) -> Result<usize> {
        let mut val: c_int = 0;
        let mut len = std::mem::size_of_val(&val) as libc::socklen_t;
        if unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &mut val as *mut c_int as _,
                &mut len,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(val as usize)
    }

    /// Set a timeout for receiving (`SO_RCVTIMEO`), so that a thread blocked in
    /// [`recv`](#method.recv) on an idle queue wakes up regularly (e.g. to report that it is
    /// alive). When it expires, `recv` returns an error of kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock) (`EAGAIN`), as std's sockets do on Unix;
    /// [`is_timeout`] tells it from real errors. `None` waits forever (the default); a zero
    /// duration is rejected with `EINVAL`, as in std.
    pub fn set_recv_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let tv = match timeout {
            Some(d) if d == Duration::ZERO => {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL))
            }
            Some(d) => libc::timeval {
                tv_sec: std::cmp::min(d.as_secs(), libc::time_t::MAX as u64) as libc::time_t,
                // At least 1 µs, so that a duration below a microsecond does not mean "forever".
                tv_usec: std::cmp::max(d.subsec_micros(), u32::from(d.as_secs() == 0))
                    as libc::suseconds_t,
            },
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        if unsafe {
            setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as _,
                std::mem::size_of_val(&tv) as _,
            )
        } < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    unsafe fn send_nlmsg(&self, mut nlh: Nlmsg) -> std::io::Result<()> {
        nlh.adjust_len();
        let nlh = nlh.as_hdr();
        self.send_bytes(nlh as *const u8, (*nlh).nlmsg_len as usize)
    }

    /// Send `len` bytes at `data`, one or several netlink messages, to the kernel.
    unsafe fn send_bytes(&self, data: *const u8, len: usize) -> std::io::Result<()> {
        let mut addr: sockaddr_nl = std::mem::zeroed();
        addr.nl_family = AF_NETLINK as _;
        if sendto(
            self.fd,
            data as _,
            len as _,
            0,
            &addr as *const sockaddr_nl as _,
            std::mem::size_of_val(&addr) as _,
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Bind to a specific queue number.
    ///
    /// This method will set the copy range to 65535 by default. It can be changed by using
    /// [`set_copy_range`](#method.set_copy_range).
    pub fn bind(&mut self, queue_num: u16) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            let command = nfqnl_msg_config_cmd {
                command: NFQNL_CFG_CMD_BIND as u8,
                pf: 0,
                _pad: 0,
            };
            nlmsg.put_slice(NFQA_CFG_CMD as u16, std::slice::from_ref(&command));
            self.send_nlmsg(nlmsg)?;
            self.recv_error()?;
        }
        self.set_copy_range(queue_num, 65535)
    }

    /// Set whether the kernel should drop or accept a packet if the queue is full.
    pub fn set_fail_open(&mut self, queue_num: u16, enabled: bool) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(
                NFQA_CFG_FLAGS as u16,
                if enabled { NFQA_CFG_F_FAIL_OPEN } else { 0 },
            );
            nlmsg.put_u32(NFQA_CFG_MASK as u16, NFQA_CFG_F_FAIL_OPEN);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Set whether we should receive GSO-enabled and partial checksum packets.
    pub fn set_recv_gso(&mut self, queue_num: u16, enabled: bool) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(
                NFQA_CFG_FLAGS as u16,
                if enabled { NFQA_CFG_F_GSO } else { 0 },
            );
            nlmsg.put_u32(NFQA_CFG_MASK as u16, NFQA_CFG_F_GSO);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Set whether we should receive UID/GID along with packets.
    pub fn set_recv_uid_gid(&mut self, queue_num: u16, enabled: bool) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(
                NFQA_CFG_FLAGS as u16,
                if enabled { NFQA_CFG_F_UID_GID } else { 0 },
            );
            nlmsg.put_u32(NFQA_CFG_MASK as u16, NFQA_CFG_F_UID_GID);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Set whether we should receive security context strings along with packets.
    pub fn set_recv_security_context(&mut self, queue_num: u16, enabled: bool) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(
                NFQA_CFG_FLAGS as u16,
                if enabled { NFQA_CFG_F_SECCTX } else { 0 },
            );
            nlmsg.put_u32(NFQA_CFG_MASK as u16, NFQA_CFG_F_SECCTX);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Set whether we should receive connteack information along with packets.
    #[cfg_attr(not(feature = "ct"), doc(hidden))]
    pub fn set_recv_conntrack(&mut self, queue_num: u16, enabled: bool) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(
                NFQA_CFG_FLAGS as u16,
                if enabled { NFQA_CFG_F_CONNTRACK } else { 0 },
            );
            nlmsg.put_u32(NFQA_CFG_MASK as u16, NFQA_CFG_F_CONNTRACK);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Whether the kernel has the conntrack glue this crate's conntrack features need
    /// (`CONFIG_NETFILTER_NETLINK_GLUE_CT` with `nf_conntrack_netlink` loaded): without it,
    /// [`Message::set_ct_mark`] is ignored silently and no conntrack information comes with the
    /// packets. Asks the kernel by turning [`set_recv_conntrack`](#method.set_recv_conntrack) on
    /// (which may load the module) and leaves it off; call it before turning it on.
    pub fn conntrack_glue_available(&mut self, queue_num: u16) -> Result<bool> {
        match self.set_recv_conntrack(queue_num, true) {
            Ok(()) => {
                self.set_recv_conntrack(queue_num, false)?;
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Set copy range. Packet larger than the specified range will be truncated. If the range
    /// given is 0, only metadata will be copied.
    ///
    /// To get the original length of truncated packet, use
    /// [`Message::get_original_len`](struct.Message.html#method.get_original_len).
    pub fn set_copy_range(&mut self, queue_num: u16, range: u16) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            let params = nfqnl_msg_config_params {
                copy_range: be32_to_cpu(range as u32),
                copy_mode: if range == 0 {
                    NFQNL_COPY_META
                } else {
                    NFQNL_COPY_PACKET
                } as u8,
            };
            nlmsg.put_slice(NFQA_CFG_PARAMS as u16, std::slice::from_ref(&params));
            self.send_nlmsg(nlmsg)?;
            self.recv_error()?;
        }

        // This value corresponds to kernel's NLMSG_GOODSIZE or libmnl's MNL_SOCKET_BUFFER_SIZE
        let metadata_size = std::cmp::min(unsafe { sysconf(_SC_PAGE_SIZE) as usize }, 8192);

        self.bufsize = (metadata_size + range as usize + 3) / 4;
        self.buffer = Arc::new(Vec::with_capacity(self.bufsize));
        Ok(())
    }

    /// Set the maximum kernel queue length. If the application cannot [`recv`](#method.recv) fast
    /// enough, newly queued packet will be dropped (or accepted if fail open is enabled).
    pub fn set_queue_max_len(&mut self, queue_num: u16, len: u32) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            nlmsg.put_u32(NFQA_CFG_QUEUE_MAXLEN as u16, len);
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    /// Set whether the recv function blocks or not
    pub fn set_nonblocking(&mut self, nonblocking: bool) {
        self.recv_flag = if nonblocking { MSG_DONTWAIT } else { 0 };
    }

    /// Unbind from a specific queue number.
    pub fn unbind(&mut self, queue_num: u16) -> Result<()> {
        unsafe {
            let mut buf = [0u32; 8192 / 4];
            let mut nlmsg = Nlmsg::new(&mut buf);
            nfq_hdr_put(&mut nlmsg, NFQNL_MSG_CONFIG as u16, queue_num, true);
            let command = nfqnl_msg_config_cmd {
                command: NFQNL_CFG_CMD_UNBIND as u8,
                pf: 0,
                _pad: 0,
            };
            nlmsg.put_slice(NFQA_CFG_CMD as u16, std::slice::from_ref(&command));
            self.send_nlmsg(nlmsg)?;
            self.recv_error()
        }
    }

    // Receive one datagram and queue the packets it holds. If Ok(true) is returned it means we
    // got an ACK.
    fn recv_nlmsg(&mut self, flags: c_int) -> Result<bool> {
        let buf = match Arc::get_mut(&mut self.buffer) {
            Some(v) => v,
            None => {
                self.buffer = Arc::new(Vec::with_capacity(self.bufsize));
                Arc::get_mut(&mut self.buffer).unwrap()
            }
        };
        let buf_size = buf.capacity();
        unsafe { buf.set_len(buf_size) }

        let size = unsafe {
            recv(
                self.fd,
                buf.as_mut_ptr() as _,
                buf_size * 4,
                flags | MSG_TRUNC,
            )
        };
        self.counts.receives += 1;
        if size < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.counts.datagrams += 1;

        // As we pass in MSG_TRUNC, if we receive a larger size it means the message is trucated
        let size = size as usize;
        if size > buf_size * 4 {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }

        unsafe { parse_datagram(&self.buffer, size, &mut self.queue) }
    }

    // Receive the next error message. Returns Ok only if errno is 0 (which is a response to a
    // message with F_ACK set). Packets received meanwhile are kept for `recv`.
    fn recv_error(&mut self) -> Result<()> {
        while !self.recv_nlmsg(self.recv_flag)? {}
        Ok(())
    }

    /// Receive a packet from the queue.
    ///
    /// Before it waits for the kernel, it sends the verdicts held back by
    /// [`queue_verdict`](#method.queue_verdict), so that no packet waits for the next one:
    /// while verdicts are held, it first looks without waiting (`MSG_DONTWAIT`) whether packets
    /// are already queued, and sends the verdicts only when none are.
    pub fn recv(&mut self) -> Result<Message> {
        // We have processed all messages in previous recv batch, do next iteration
        while self.queue.is_empty() {
            if self.pending.count > 0 {
                match self.receive(self.recv_flag | MSG_DONTWAIT) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.flush_verdicts()?
                    }
                    Err(e) => return Err(e),
                }
            }
            self.receive(self.recv_flag)?;
        }

        let msg = self.queue.pop_front().unwrap();
        self.handed_out += 1;
        Ok(msg)
    }

    /// Set how many datagrams (one packet each) [`recv`](#method.recv) may take from the socket
    /// with one system call (`recvmmsg`, waiting for the first only): `recv` returns the others
    /// from memory afterwards (see [`pending_messages`](#method.pending_messages)). 1, the
    /// default, keeps one `recv` per packet; at most [`RECV_BATCH_MAX`].
    ///
    /// Each datagram has a buffer of a page plus the copy range, reused once the `Message`s
    /// received into it are dropped: a worker that gives each message its verdict before the
    /// next system call allocates nothing per packet.
    pub fn set_recv_batch(&mut self, max: usize) {
        self.recv_batch = max.clamp(1, RECV_BATCH_MAX);
    }

    // Receive one datagram, or up to `recv_batch` with recvmmsg, and queue their packets.
    fn receive(&mut self, flags: c_int) -> Result<()> {
        if self.recv_batch > 1 {
            self.recv_many(flags)
        } else {
            self.recv_nlmsg(flags).map(|_| ())
        }
    }

    // Receive up to `recv_batch` datagrams with one system call and queue their packets. A
    // datagram that did not fit or an error message from the kernel is reported after the
    // packets of the others are queued.
    fn recv_many(&mut self, flags: c_int) -> Result<()> {
        let n = self.recv_batch;
        let words = self.bufsize;
        let slots = &mut self.slots;
        // An all-zero mmsghdr/iovec is a valid (empty) value.
        slots.hdrs.resize(n, unsafe { std::mem::zeroed() });
        slots.iovs.resize(n, unsafe { std::mem::zeroed() });
        for i in 0..n {
            if slots.buffers.len() <= i {
                slots.buffers.push(Arc::new(vec![0u32; words]));
            }
            let reusable = match Arc::get_mut(&mut slots.buffers[i]) {
                Some(buf) => buf.len() == words,
                None => false,
            };
            if !reusable {
                // Still referred to by a message the caller keeps, or sized for another copy
                // range.
                slots.buffers[i] = Arc::new(vec![0u32; words]);
            }
            // Unique now: `get_mut` succeeded above or the Arc was just made.
            let (data, len) = match Arc::get_mut(&mut slots.buffers[i]) {
                Some(buf) => (buf.as_mut_ptr(), words * 4),
                None => (std::ptr::null_mut(), 0),
            };
            slots.iovs[i] = libc::iovec {
                iov_base: data as *mut libc::c_void,
                iov_len: len,
            };
            let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_iov = &mut slots.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            slots.hdrs[i] = hdr;
        }
        let got = unsafe {
            libc::recvmmsg(
                self.fd,
                slots.hdrs.as_mut_ptr(),
                n as c_uint,
                flags | libc::MSG_WAITFORONE | MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        self.counts.receives += 1;
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.counts.datagrams += got as u64;
        let mut first_err = None;
        for i in 0..got as usize {
            let size = slots.hdrs[i].msg_len as usize;
            // As we pass in MSG_TRUNC, a larger size means the datagram was truncated
            if size > words * 4 || slots.hdrs[i].msg_hdr.msg_flags & MSG_TRUNC != 0 {
                first_err.get_or_insert(std::io::Error::from_raw_os_error(ENOSPC));
                continue;
            }
            if let Err(e) = unsafe { parse_datagram(&slots.buffers[i], size, &mut self.queue) } {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Set how [`queue_verdict`](#method.queue_verdict) holds verdicts back: they are sent
    /// once `max_count` are held (1 sends each at once), once the oldest has waited `max_delay`
    /// (checked when a verdict is queued; `None`: no time limit), before
    /// [`recv`](#method.recv) waits for the kernel, and by
    /// [`flush_verdicts`](#method.flush_verdicts). The default is 64 and no time limit.
    pub fn set_verdict_batch(&mut self, max_count: usize, max_delay: Option<Duration>) {
        self.pending.max_count = std::cmp::max(max_count, 1);
        self.pending.max_delay = max_delay;
        let words = std::cmp::min(self.pending.max_count, 1024) * 16;
        if self.pending.buf.len() < words {
            self.pending.buf.resize(words, 0);
        }
    }

    /// Set whether held-back verdicts for consecutive packets of one queue with the same verdict
    /// and packet mark (and no connection mark nor new payload) are sent as one
    /// `NFQNL_MSG_VERDICT_BATCH` message instead of one message each (default: enabled).
    ///
    /// A batch verdict applies to every packet of the queue up to its id that is still waiting,
    /// so runs are merged only while every message returned by [`recv`](#method.recv) has been
    /// given a verdict: a message dropped without a verdict stops merging for the life of the
    /// `Queue`, as does a packet verdicted out of order.
    pub fn set_verdict_merge(&mut self, enabled: bool) {
        self.pending.merge = enabled;
        self.pending.run = None;
    }

    /// Give `msg` its verdict, but hold it back to send it with others in one system call (see
    /// [`set_verdict_batch`](#method.set_verdict_batch)); sends the held verdicts when a limit is
    /// reached. The verdicts are sent in the order they were given.
    ///
    /// On error the held verdicts are discarded: their packets stay in the kernel queue until the
    /// queue is unbound or the socket closed (the kernel then drops them), as with a failed
    /// [`verdict`](#method.verdict).
    pub fn queue_verdict(&mut self, msg: Message) -> Result<()> {
        self.verdicts_given += 1;
        let extend = self.verdicts_given == self.handed_out;
        self.pending.push(&msg, extend);
        drop(msg);
        if self.pending.due() {
            return self.flush_verdicts();
        }
        Ok(())
    }

    /// Send every verdict held back by [`queue_verdict`](#method.queue_verdict), in one
    /// `sendto`.
    pub fn flush_verdicts(&mut self) -> Result<()> {
        if self.pending.len == 0 {
            self.pending.clear();
            return Ok(());
        }
        let bytes = self.pending.bytes();
        let ret = unsafe { self.send_bytes(bytes.as_ptr(), bytes.len()) };
        self.counts.verdict_sends += 1;
        self.counts.verdict_messages += self.pending.messages;
        self.pending.clear();
        ret
    }

    /// How many system calls this queue made so far.
    pub fn io_counts(&self) -> IoCounts {
        self.counts
    }

    /// Number of verdicts held back by [`queue_verdict`](#method.queue_verdict).
    pub fn pending_verdicts(&self) -> usize {
        self.pending.count
    }

    /// Number of packets already received and not yet returned by [`recv`](#method.recv),
    /// which returns them without a system call.
    pub fn pending_messages(&self) -> usize {
        self.queue.len()
    }

    /// Give `verdict` (and the packet mark `mark`, if any) to every packet of `queue_num` up to
    /// `max_id` still waiting for a verdict (`NFQNL_MSG_VERDICT_BATCH`), after the verdicts held
    /// back, in the same system call. The `Message`s of those packets must then be dropped
    /// without a verdict; doing so stops the merging of [`queue_verdict`](#method.queue_verdict).
    pub fn verdict_batch(
        &mut self,
        queue_num: u16,
        max_id: u32,
        verdict: Verdict,
        mark: Option<u32>,
    ) -> Result<()> {
        let pending = &mut self.pending;
        pending.reserve(NLMSG_HDRLEN + NFGEN_HDRLEN + 12 + 8);
        let at = pending.len;
        unsafe {
            let mut nlmsg = Nlmsg::new(&mut pending.buf[at..]);
            put_batch_verdict(&mut nlmsg, queue_num, max_id, verdict, mark);
            nlmsg.adjust_len();
            pending.len += nlmsg.len;
        }
        pending.count += 1;
        pending.messages += 1;
        pending.run = None;
        self.flush_verdicts()
    }

    /// Verdict a message.
    pub fn verdict(&mut self, msg: Message) -> Result<()> {
        self.verdicts_given += 1;
        unsafe {
            let mut buffer = self.verdict_buffer.take().unwrap();
            let mut nlmsg = Nlmsg::new(&mut buffer[..]);
            put_verdict(&mut nlmsg, &msg);
            let ret = self.send_nlmsg(nlmsg);
            self.verdict_buffer = Some(buffer);
            self.counts.verdict_sends += 1;
            self.counts.verdict_messages += 1;
            ret
        }
    }
}

/// Fill `nlmsg` with an NFQNL_MSG_VERDICT_BATCH message.
unsafe fn put_batch_verdict(
    nlmsg: &mut Nlmsg,
    queue_num: u16,
    max_id: u32,
    verdict: Verdict,
    mark: Option<u32>,
) {
    nfq_hdr_put(nlmsg, NFQNL_MSG_VERDICT_BATCH as u16, queue_num, false);
    let vh = nfqnl_msg_verdict_hdr {
        verdict: be32_to_cpu(verdict_code(verdict)),
        id: be32_to_cpu(max_id),
    };
    nlmsg.put_slice(NFQA_VERDICT_HDR as u16, std::slice::from_ref(&vh));
    if let Some(mark) = mark {
        nlmsg.put_u32(NFQA_MARK as u16, mark);
    }
}

/// The verdict word of `NFQA_VERDICT_HDR` (host order).
fn verdict_code(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Drop => 0,
        Verdict::Accept => 1,
        Verdict::Queue(num) => (num as u32) << 16 | 3,
        Verdict::Repeat => 4,
        Verdict::Stop => 5,
    }
}

/// Fill `nlmsg` with the NFQNL_MSG_VERDICT message for `msg`. `nlmsg` must have room for the
/// headers, the attributes and the payload (`8192 + 0x10000` bytes do).
unsafe fn put_verdict(nlmsg: &mut Nlmsg, msg: &Message) {
    nfq_hdr_put(nlmsg, NFQNL_MSG_VERDICT as u16, msg.id, false);
    let vh = nfqnl_msg_verdict_hdr {
        verdict: be32_to_cpu(verdict_code(msg.verdict)),
        id: (*msg.hdr).packet_id,
    };
    nlmsg.put_slice(NFQA_VERDICT_HDR as u16, std::slice::from_ref(&vh));
    if msg.nfmark_dirty {
        nlmsg.put_u32(NFQA_MARK as u16, msg.nfmark);
    }
    if let Some((mark, mask)) = msg.ct_mark {
        nlmsg.put_nested_u32s(
            NFQA_CT as u16,
            &[(CTA_MARK as u16, mark), (CTA_MARK_MASK as u16, mask)],
        );
    }
    if let PayloadState::Unmodified = msg.payload_state {
    } else if msg.verdict != Verdict::Drop {
        let payload = msg.get_payload();
        nlmsg.put_slice(NFQA_PAYLOAD as u16, payload);
    }
}

/// Whether `err`, returned by [`Queue::recv`], means that the receive timeout set with
/// [`Queue::set_recv_timeout`] expired (or, in non-blocking mode, that nothing was queued) rather
/// than a real error.
pub fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

impl AsRawFd for Queue {
    /// The netlink socket, e.g. to wait for it with `poll`/`epoll` next to other file descriptors.
    /// Reading from it or writing to it directly bypasses the messages `Queue` keeps.
    #[inline]
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl AsFd for Queue {
    #[inline]
    fn as_fd(&self) -> BorrowedFd<'_> {
        // The socket stays open as long as `self` lives: `Drop` closes it.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // Best effort: the kernel drops the packets still queued when the socket closes.
        let _ = self.flush_verdicts();
        unsafe { close(self.fd) };
    }
}

fn _assert_send_and_sync() {
    fn check<T: Send + Sync>() {}

    check::<Message>();
    check::<Queue>();
}

#[cfg(test)]
mod tests;
