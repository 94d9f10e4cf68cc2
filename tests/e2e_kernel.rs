//! Kernel interface tests (feature `e2e`, root): the patched `nfq` queue library and the
//! ctnetlink module against the real kernel, in a network namespace of its own per test
//! (documentation addresses on its loopback; deleted at the end, also on failure).
//!
//! Real packets go through the namespace's OUTPUT hook to `-j NFQUEUE`; the test answers them
//! with batched verdicts and checks they arrive, sets a connmark bit through the verdict and
//! reads it back with `conntrack` and ctnetlink, watches events, changes a mark and deletes an
//! entry through ctnetlink; it also checks the receive timeout of an idle queue and the size
//! of an enlarged receive buffer.
#![cfg(feature = "e2e")]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nfq::{Queue, Verdict};
use statewall::io::ctnetlink::{
    CtError, CtEvents, Ctnetlink, Entry, Event, EventGroups, MarkFilter, Tuple, L4,
};

const ADDR4: &str = "192.0.2.1";
const ADDR6: &str = "2001:db8::1";
/// The connmark bit the tests set (the "admitted" bit of statewall's default layout).
const BIT: u32 = 0x0001_0000;

/// A network namespace this thread works in until dropped.
struct Netns {
    name: String,
    home: File,
    children: Vec<Child>,
}

impl Netns {
    fn new() -> Netns {
        let uid = Command::new("id").arg("-u").output().expect("run id");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "needs root"
        );
        for tool in ["ip", "iptables", "ip6tables", "conntrack", "python3"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .expect("run sh");
            assert!(found.success(), "{tool} is missing: run scripts/setup");
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "swk{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let home = File::open("/proc/thread-self/ns/net").expect("own netns");
        run(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            home,
            children: Vec::new(),
        };
        ns.ok(&format!(
            "ip link set lo up && ip addr add {ADDR4}/32 dev lo && \
             ip addr add {ADDR6}/128 dev lo nodad"
        ));
        let target = File::open(format!("/run/netns/{}", ns.name)).expect("open netns");
        enter(&target);
        ns
    }

    fn sh(&self, script: &str) -> Output {
        Command::new("timeout")
            .args([
                "-k", "2", "20", "ip", "netns", "exec", &self.name, "sh", "-c",
            ])
            .arg(script)
            .output()
            .expect("run ip netns exec")
    }

    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `script` in the namespace; its stdout is collected by [`Netns::finish`].
    fn spawn(&mut self, script: &str) -> usize {
        let child = Command::new("timeout")
            .args([
                "-k", "2", "30", "ip", "netns", "exec", &self.name, "sh", "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        self.children.push(child);
        self.children.len() - 1
    }

    fn finish(&mut self, which: usize) -> String {
        let child = std::mem::replace(
            &mut self.children[which],
            Command::new("true").spawn().expect("spawn true"),
        );
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "background command failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The kernel's counters of queue `num`: (waiting, queue dropped, user dropped, last id).
    fn queue_counters(&self, num: u16) -> (u64, u64, u64, u64) {
        let text = self.ok("cat /proc/net/netfilter/nfnetlink_queue");
        for line in text.lines() {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if f.len() >= 8 && f[0] == u64::from(num) {
                return (f[2], f[5], f[6], f[7]);
            }
        }
        panic!("queue {num} not in /proc/net/netfilter/nfnetlink_queue:\n{text}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        enter(&self.home);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Moves this thread into the network namespace `ns` (netlink sockets opened afterwards belong
/// to it, and so do the children it spawns).
fn enter(ns: &File) {
    // SAFETY: setns only reads the descriptor; it changes this thread's namespace.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

fn run(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("run");
    assert!(st.success(), "{args:?} failed");
}

/// A UDP receiver on ADDR4:PORT that prints how many datagrams it got (stops at `want` or
/// after `idle` seconds without one). Its receive buffer holds a whole burst.
fn udp_receiver(port: u16, want: usize, idle: f32) -> String {
    format!(
        "python3 -c 'import socket,sys\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, 33, 16<<20)\n\
         s.bind((\"{ADDR4}\",{port})); s.settimeout({idle})\n\
         n=0\n\
         try:\n  while n<{want}: s.recv(2048); n+=1\n\
         except socket.timeout: pass\n\
         print(n)'"
    )
}

/// Sends `count` datagrams from ADDR4:SPORT to ADDR4:DPORT (one flow). Queued packets keep
/// their socket's send buffer busy until their verdict, so it is made large enough for all.
fn udp_sender(sport: u16, dport: u16, count: usize) -> String {
    format!(
        "python3 -c 'import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, 32, 16<<20)\n\
         s.bind((\"{ADDR4}\",{sport}))\n\
         [s.sendto(b\"x\"*64,(\"{ADDR4}\",{dport})) for _ in range({count})]'"
    )
}

fn open_queue(num: u16) -> Queue {
    let mut q = Queue::open().expect("open queue socket");
    q.bind(num).expect("bind queue");
    q.set_copy_range(num, 128).expect("copy range");
    q.set_queue_max_len(num, 4096).expect("queue length");
    q
}

fn udp_tuple(sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: ADDR4.parse().unwrap(),
        dst: ADDR4.parse().unwrap(),
        l4: L4::Udp {
            src_port: sport,
            dst_port: dport,
        },
    }
}

fn find(entries: &[Entry], t: &Tuple) -> Option<Entry> {
    entries.iter().find(|e| e.original == *t).cloned()
}

/// Polls `cond` until it holds or `secs` pass.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

#[test]
fn batched_receive_and_verdicts_pass_real_packets_and_mark_the_connection() {
    let mut ns = Netns::new();
    const Q: u16 = 11;
    const N: usize = 500;
    ns.ok(&format!(
        "iptables -A OUTPUT -p udp -d {ADDR4} -m multiport --dports 7100,7101 \
           -j NFQUEUE --queue-num {Q} && \
         iptables -t mangle -A POSTROUTING -p udp -j CONNMARK --save-mark \
           --nfmask {BIT:#x} --ctmask {BIT:#x}"
    ));
    let mut q = open_queue(Q);
    let size = q.set_recv_buffer_size(4 << 20).expect("receive buffer");
    assert!(size >= 4 << 20, "receive buffer {size} < 4 MiB");
    assert_eq!(q.recv_buffer_size().unwrap(), size);
    q.set_recv_batch(16);
    q.set_verdict_batch(32, Some(Duration::from_millis(5)));
    q.set_recv_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    // All packets wait in the queue before the first receive, so receives take several.
    let receiver = ns.spawn(&udp_receiver(7100, N, 5.0));
    std::thread::sleep(Duration::from_millis(300));
    ns.ok(&udp_sender(41100, 7100, N));
    assert!(eventually(10, || ns.queue_counters(Q).0 == N as u64));

    let (mut seen, mut several) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < N && Instant::now() < deadline {
        match q.recv() {
            Ok(mut msg) => {
                seen += 1;
                if q.pending_messages() > 0 {
                    several += 1;
                }
                msg.set_verdict(Verdict::Accept);
                msg.set_nfmark(BIT);
                q.queue_verdict(msg).expect("queue verdict");
            }
            Err(e) if nfq::is_timeout(&e) => q.flush_verdicts().expect("flush"),
            Err(e) => panic!("recv: {e}"),
        }
    }
    q.flush_verdicts().expect("flush");
    assert_eq!(seen, N);
    assert!(
        several > N / 2,
        "only {several} receives found more waiting"
    );
    assert_eq!(
        ns.finish(receiver).trim(),
        N.to_string(),
        "datagrams through"
    );
    let (waiting, dropped, user_dropped, last_id) = ns.queue_counters(Q);
    assert_eq!((waiting, dropped, user_dropped), (0, 0, 0));
    assert_eq!(last_id, N as u64);

    // The packet mark of the verdicts was saved into the connmark: both tools see it.
    let cli = ns.ok(&format!(
        "conntrack -L -p udp --sport 41100 --dport 7100 --mark {BIT:#x}/{BIT:#x} 2>/dev/null"
    ));
    assert_eq!(cli.lines().count(), 1, "conntrack -L: {cli}");
    let mut ct = Ctnetlink::open().expect("ctnetlink");
    ct.set_timeout(Some(Duration::from_secs(5))).unwrap();
    let marked = ct
        .dump(Some(MarkFilter {
            value: BIT,
            mask: BIT,
        }))
        .expect("dump");
    let e = find(&marked, &udp_tuple(41100, 7100)).expect("marked flow in the dump");
    assert_eq!(e.mark.map(|m| m & BIT), Some(BIT));

    // An explicit batch verdict: 20 packets, one message.
    let receiver = ns.spawn(&udp_receiver(7100, 20, 5.0));
    std::thread::sleep(Duration::from_millis(300));
    ns.ok(&udp_sender(41102, 7100, 20));
    assert!(eventually(10, || ns.queue_counters(Q).0 == 20));
    let mut last = 0;
    for _ in 0..20 {
        let msg = q.recv().expect("recv");
        last = msg.get_packet_id();
    }
    q.verdict_batch(Q, last, Verdict::Accept, None)
        .expect("batch verdict");
    assert_eq!(ns.finish(receiver).trim(), "20");
    assert_eq!(ns.queue_counters(Q).0, 0);

    // The connmark through NFQA_CT works only with the kernel's conntrack glue: the library
    // says whether it is there, and the kernel's behaviour must agree with it.
    let glue = q.conntrack_glue_available(Q).expect("glue probe");
    eprintln!("conntrack glue (NFQA_CT): {glue}");
    let receiver = ns.spawn(&udp_receiver(7101, 1, 5.0));
    std::thread::sleep(Duration::from_millis(300));
    ns.ok(&udp_sender(41101, 7101, 1));
    let mut msg = q.recv().expect("recv");
    msg.set_verdict(Verdict::Accept);
    msg.set_ct_mark(0x0002_0000, 0x0002_0000);
    q.verdict(msg).expect("verdict");
    assert_eq!(ns.finish(receiver).trim(), "1");
    let all = ct.dump(None).expect("dump");
    let e = find(&all, &udp_tuple(41101, 7101)).expect("flow in the dump");
    let applied = e.mark.unwrap_or(0) & 0x0002_0000 != 0;
    assert_eq!(
        applied, glue,
        "NFQA_CT connmark applied = {applied}, glue reported = {glue}"
    );
}

#[test]
fn ctnetlink_sees_events_changes_marks_and_deletes_entries() {
    let ns = Netns::new();
    // Conntrack runs in a namespace only once a rule needs it.
    ns.ok(
        "iptables -A OUTPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT && \
         ip6tables -A OUTPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT",
    );
    let mut events = CtEvents::open(EventGroups {
        new: true,
        update: false,
        destroy: true,
    })
    .expect("event socket");
    events
        .set_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(events.set_recv_buffer_size(1 << 20).unwrap() > 0);
    let mut ct = Ctnetlink::open().expect("ctnetlink");
    ct.set_timeout(Some(Duration::from_secs(5))).unwrap();

    // Two flows, IPv4 and IPv6 (no listener: conntrack tracks them anyway).
    ns.ok(&udp_sender(41200, 7200, 1));
    ns.ok(&format!(
        "python3 -c 'import socket\n\
         s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.bind((\"{ADDR6}\",41201)); s.sendto(b\"x\",(\"{ADDR6}\",7201))'"
    ));
    let v4 = udp_tuple(41200, 7200);
    let mut got = Vec::new();
    assert!(
        eventually(5, || {
            let _ = events.recv(&mut got).expect("events");
            got.iter().filter(|e| matches!(e, Event::New(_))).count() >= 2
        }),
        "new events: {got:?}"
    );
    assert!(got
        .iter()
        .any(|e| matches!(e, Event::New(x) if x.original == v4)));
    assert!(got.iter().any(
        |e| matches!(e, Event::New(x) if x.original.is_ipv6() && x.original.l4 == L4::Udp { src_port: 41201, dst_port: 7201 })
    ));

    let all = ct.dump(None).expect("dump");
    let e = find(&all, &v4).expect("IPv4 flow in the dump");
    assert_eq!(e.mark, Some(0));
    assert!(e.timeout.is_some());
    assert!(all.iter().any(|e| e.original.is_ipv6()));

    // Set the bit, then clear it (taking a flow off the fast path), other bits untouched.
    ct.set_mark(&v4, 0x0100_0000 | BIT, 0x0100_0000 | BIT)
        .expect("set mark");
    let cli = ns.ok("conntrack -L -p udp --sport 41200 2>/dev/null");
    assert!(
        cli.contains(&format!("mark={}", 0x0100_0000 | BIT)),
        "conntrack -L: {cli}"
    );
    ct.set_mark(&v4, 0, BIT).expect("clear bit");
    let e = find(&ct.dump(None).unwrap(), &v4).unwrap();
    assert_eq!(e.mark, Some(0x0100_0000));
    let only_bit = ct
        .dump(Some(MarkFilter {
            value: BIT,
            mask: BIT,
        }))
        .unwrap();
    assert!(find(&only_bit, &v4).is_none());

    // Delete: a destroy event, gone from the table, a second delete finds nothing.
    ct.delete(&v4, e.id).expect("delete");
    let mut got = Vec::new();
    assert!(
        eventually(5, || {
            let _ = events.recv(&mut got).expect("events");
            got.iter()
                .any(|ev| matches!(ev, Event::Destroy(x) if x.original == v4))
        }),
        "destroy events: {got:?}"
    );
    assert!(find(&ct.dump(None).unwrap(), &v4).is_none());
    assert!(matches!(ct.delete(&v4, None), Err(CtError::NotFound)));
    assert!(matches!(ct.set_mark(&v4, BIT, BIT), Err(CtError::NotFound)));
    drop(ns);
}

#[test]
fn idle_queue_wakes_up_on_its_receive_timeout() {
    let _ns = Netns::new();
    let mut q = open_queue(12);
    q.set_recv_batch(8);
    q.set_recv_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for _ in 0..3 {
        let start = Instant::now();
        let err = q.recv().expect_err("nothing is queued");
        assert!(nfq::is_timeout(&err), "{err}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
    }
}
