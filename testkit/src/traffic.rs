//! Generators of known traffic, each through one kernel path: a named child
//! process moves a known number of bytes (splice, sendfile, zero-copy,
//! io_uring, sendmmsg, recv without an address, ping, raw and packet
//! sockets), and the generator returns what it did ([`Moved`]) for a test
//! to compare with what leco reported.
//!
//! Every generator spawns its child, runs the transfer to its end, checks
//! the parent's side of it (what this process received or sent), waits for
//! the child and panics, naming the step, if any part failed. Every
//! blocking call on either side has a timeout ([`TIMEOUT`]), so a
//! generator fails rather than hangs.
//!
//! The child never prints and never panics: a failed step makes it report
//! the step (and its errno, or the count it got) to the parent through
//! [`Parent::send`] and exit with the step's own code, which the parent
//! turns back into text.
//!
//! Traffic stays on loopback or inside a network namespace the child made
//! for itself ([`ping_socket_echo`], [`af_packet_frames`]), which goes away
//! with the child.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream,
    UdpSocket,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::{spawn_named, Child, Parent};

/// How long any one blocking call, in the child or in this process, may
/// wait before the generator gives up.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What one generator did, for a test to compare with what leco reported.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The named child's pid.
    pub pid: u32,
    /// Its `comm` (the name given, cut to 15 bytes as the kernel does).
    pub comm: String,
    /// Bytes the child sent, as its send calls returned them (application
    /// bytes: payload for TCP and UDP, the ICMP message for ICMP sockets,
    /// whole frames for packet sockets).
    pub sent: u64,
    /// Bytes the child received, as its receive calls returned them (for a
    /// raw socket these include the IP header).
    pub received: u64,
    /// The other end as leco should name it (port 0 where there is none).
    pub peer: SocketAddr,
    /// The child's local port (0 where there is none).
    pub local_port: u16,
    /// The inode of the network namespace the child made for itself and
    /// moved the bytes in; `None` when it used this process's namespace.
    pub netns: Option<u64>,
}

/// What [`af_packet_frames`] did.
#[derive(Debug, Clone)]
pub struct PacketMoved {
    /// The child and its counts: `sent` is the frames' bytes as passed to
    /// send(2) on the packet socket bound to [`PacketMoved::interface`],
    /// `received` what the child's second packet socket, on the other end
    /// of the veth pair, read; `peer` and `local_port` are the UDP
    /// addresses the frames carry (the packet socket itself has none).
    pub moved: Moved,
    /// The interface the frames were sent on: `lecot0`.
    pub interface: String,
    /// Where the frames' UDP packets go: 10.253.0.2:5000.
    pub dst: SocketAddr,
    /// The inode of the child's network namespace.
    pub netns: u64,
}

/// The child's UDP socket in [`udp_recv_without_address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpFamily {
    /// AF_INET, bound to 127.0.0.1; the parent sends from 127.0.0.1.
    V4,
    /// AF_INET6, bound to ::1; the parent sends from ::1.
    V6,
    /// AF_INET6 bound to `::` with IPV6_V6ONLY off; the parent sends from
    /// an IPv4 socket on 127.0.0.1, so the datagrams arrive as
    /// IPv4-mapped (`::ffff:127.0.0.1`). The peer is reported as plain
    /// IPv4.
    V4Mapped,
}

/// How the child reads its datagrams in [`udp_recv_without_address`]:
/// never with an address, so no `msg_name` reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvHow {
    /// recv(2) with flags 0.
    Recv,
    /// read(2).
    Read,
    /// recvmmsg(2), up to 32 datagrams a call, `msg_name` NULL.
    Recvmmsg,
}

/// The bytes each TCP generator's read or write call moves at most.
const CHUNK: usize = 64 * 1024;
/// A sender sleeps [`PACE`] after every this many datagrams, so that a
/// receiver on the other core keeps up and loopback drops nothing.
const PACE_EVERY: u64 = 64;
const PACE: Duration = Duration::from_micros(50);
/// Packets a child or this process may skip as someone else's (an echo
/// reply to another pinger on the host, say) before giving up.
const MAX_STRAYS: u64 = 10_000;

// ---------------------------------------------------------------------------
// The generators.

/// A burst of UDP, then close at once: the child, named `comm`, sends
/// `total` bytes in datagrams of `datagram` bytes (the last one shorter if
/// need be) on a socket connected to a receiver this process bound on
/// 127.0.0.1 (`v6`: ::1), with send(2) or, if `batched`, sendmmsg(2) of 32
/// datagrams a call; then it closes the socket and exits. This process
/// receives every datagram (its receive buffer holds them all, and the
/// sender is paced), checks that they came from the child's socket and
/// that it got all `total` bytes.
pub fn udp_burst_then_close(
    comm: &str,
    v6: bool,
    total: u64,
    datagram: usize,
    batched: bool,
) -> Moved {
    assert!(
        (1..=65_000).contains(&datagram),
        "udp_burst_then_close: a datagram of 1 to 65,000 bytes, not {datagram}"
    );
    let rx = UdpSocket::bind(lo(v6, 0)).expect("bind the UDP receiver on loopback");
    let to = rx.local_addr().expect("the receiver's address");
    let count = total.div_ceil(datagram as u64);
    grow_rcvbuf(&rx, count.saturating_mul(truesize(datagram)))
        .expect("enlarge the UDP receiver's buffer");
    rx.set_read_timeout(Some(TIMEOUT))
        .expect("set the receiver's timeout");

    let mut run = Run::start("udp_burst_then_close", comm, move |p| {
        let s = UdpSocket::bind(lo(v6, 0)).at(Step::Bind)?;
        s.connect(to).at(Step::Connect)?;
        p.send(u64::from(s.local_addr().at(Step::LocalAddr)?.port()));
        let buf = pattern(datagram);
        let sent = if batched {
            burst_sendmmsg(s.as_raw_fd(), &buf, total)?
        } else {
            burst_send(&s, &buf, total)?
        };
        // The point of this generator: the socket is gone right after its
        // last datagram, before leco's reader may have looked at it.
        drop(s);
        p.send(sent);
        Ok(())
    });
    let local_port = run.recv() as u16;
    let from = SocketAddr::new(to.ip(), local_port);

    let mut buf = vec![0u8; datagram + 1];
    let (mut got, mut datagrams, mut strays) = (0u64, 0u64, 0u64);
    while got < total {
        match rx.recv_from(&mut buf) {
            Ok((n, src)) if src == from => {
                got += n as u64;
                datagrams += 1;
            }
            Ok(_) => {
                strays += 1;
                if strays > MAX_STRAYS {
                    run.fail("receive the child's datagrams", "too many from others");
                }
            }
            Err(e) => run.fail(
                "receive the child's datagrams",
                format!(
                    "{e} after {got} of {total} bytes in {datagrams} of {count} datagrams \
                     (loopback dropped some?)"
                ),
            ),
        }
    }
    let sent = run.recv();
    run.finish();
    assert_eq!(
        (got, datagrams),
        (total, count),
        "udp_burst_then_close: received bytes and datagrams"
    );
    assert_eq!(sent, total, "udp_burst_then_close: the child's own count");
    Moved {
        sent,
        received: 0,
        peer: to,
        local_port,
        netns: None,
        ..run.moved()
    }
}

/// Datagrams received without an address: the child, named `comm`, binds
/// an unconnected UDP socket of `family` and reads `datagrams` datagrams
/// of `size` bytes, which this process sends to it from a socket bound on
/// loopback, with `how` (never recvfrom/recvmsg with an address). The
/// child checks every datagram's size; `peer` is this process's sending
/// address.
pub fn udp_recv_without_address(
    comm: &str,
    family: UdpFamily,
    how: RecvHow,
    datagrams: u32,
    size: usize,
) -> Moved {
    udp_recv(
        "udp_recv_without_address",
        comm,
        family,
        how,
        false,
        datagrams,
        size,
    )
}

/// Datagrams on a connected UDP socket: like [`udp_recv_without_address`]
/// with recv(2), but the child connect()s its socket to this process's
/// sending address first.
pub fn udp_recv_connected(comm: &str, v6: bool, datagrams: u32, size: usize) -> Moved {
    let family = if v6 { UdpFamily::V6 } else { UdpFamily::V4 };
    udp_recv(
        "udp_recv_connected",
        comm,
        family,
        RecvHow::Recv,
        true,
        datagrams,
        size,
    )
}

/// What [`udp_inherited_socket`] did.
#[derive(Debug, Clone)]
pub struct InheritedMoved {
    /// The child that read, and what it read; `peer` is the first sender.
    pub moved: Moved,
    /// Every sender, one datagram each, in the order they sent.
    pub senders: Vec<SocketAddr>,
}

/// A socket one process makes and another reads, as systemd's socket
/// activation does: this process binds a UDP socket on 127.0.0.1 and
/// never sends or reads on it; `senders` sockets of its own send it one
/// datagram of `size` bytes each; only then does the child, named `comm`,
/// inherit it and read the datagrams with recv(2), without addresses. This
/// process closes its copy once the child has exited, which ends the
/// socket (and its flows).
pub fn udp_inherited_socket(comm: &str, senders: u32, size: usize) -> InheritedMoved {
    let (moved, rx) = udp_inherited_socket_kept(comm, senders, size);
    drop(rx);
    moved
}

/// [`udp_inherited_socket`], but the socket is left open, its flows alive
/// (the senders' sockets are closed): closing it is the caller's.
pub fn udp_inherited_socket_kept(
    comm: &str,
    senders: u32,
    size: usize,
) -> (InheritedMoved, UdpSocket) {
    let what = "udp_inherited_socket";
    assert!(
        (1..=65_000).contains(&size),
        "{what}: datagrams of 1 to 65,000 bytes, not {size}"
    );
    let rx = UdpSocket::bind(lo(false, 0)).expect("bind the UDP socket to hand over");
    rx.set_read_timeout(Some(TIMEOUT))
        .expect("set the socket's timeout");
    grow_rcvbuf(&rx, u64::from(senders).saturating_mul(truesize(size)))
        .expect("enlarge the socket's receive buffer");
    let to = rx.local_addr().expect("the socket's address");
    let msg = pattern(size);
    let mut from = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..senders {
        let tx = UdpSocket::bind(lo(false, 0)).expect("bind a UDP sender on loopback");
        let n = tx.send_to(&msg, to).expect("send a datagram to the socket");
        assert_eq!(n, size, "{what}: a whole datagram sent");
        from.push(tx.local_addr().expect("a sender's address"));
        // Open until the end, so that no later sender gets its port.
        kept.push(tx);
    }
    let fd = rx.as_raw_fd();
    let mut run = Run::start(what, comm, move |p| {
        let got = recv_each(fd, RecvHow::Recv, senders, size)?;
        p.send(got);
        Ok(())
    });
    let received = run.recv();
    run.finish();
    assert_eq!(
        received,
        u64::from(senders) * size as u64,
        "{what}: bytes the child received"
    );
    let moved = InheritedMoved {
        moved: Moved {
            sent: 0,
            received,
            peer: from[0],
            local_port: to.port(),
            netns: None,
            ..run.moved()
        },
        senders: from,
    };
    (moved, rx)
}

/// A receiver that falls behind: the child, named `comm`, binds a UDP
/// socket on 127.0.0.1 with a 64 KiB receive buffer and reads nothing
/// until this process has sent it `datagrams` datagrams of `size` bytes,
/// unpaced, so that the full buffer refuses most of them; then it reads
/// what was queued. `received` is what it read, which this function checks
/// is more than nothing and less than was sent.
pub fn udp_overflowing_receiver(comm: &str, datagrams: u32, size: usize) -> Moved {
    let what = "udp_overflowing_receiver";
    assert!(
        (1..=65_000).contains(&size),
        "{what}: datagrams of 1 to 65,000 bytes, not {size}"
    );
    let tx = UdpSocket::bind(lo(false, 0)).expect("bind the UDP sender on loopback");
    let from = tx.local_addr().expect("the sender's address");
    let (go_rx, go_tx) = pipe().expect("pipe2(2) for the go signal");
    let go = go_rx.as_raw_fd();
    let mut run = Run::start(what, comm, move |p| {
        let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0, Step::Socket)?;
        let fd = s.as_raw_fd();
        // The kernel doubles it: 64 KiB.
        set_opt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &32768i32,
            Step::RcvBuf,
        )?;
        sys_addr(fd, lo(false, 0), Step::Bind, libc::bind)?;
        p.send(u64::from(local_port(fd)?));
        wait_readable(go)?;
        let mut buf = vec![0u8; size + 1];
        let mut got = 0u64;
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n < 0 && errno() == libc::EAGAIN {
                break;
            }
            let n = cvt(n, Step::Recv)?;
            if n != size {
                return Err(Fail::got(Step::WrongSize, n as u64));
            }
            got += n as u64;
        }
        p.send(got);
        Ok(())
    });
    let port = run.recv() as u16;
    let msg = pattern(size);
    for _ in 0..datagrams {
        match tx.send_to(&msg, lo(false, port)) {
            Ok(n) if n == size => {}
            Ok(n) => run.fail("send a datagram to the child", format!("only {n} bytes")),
            Err(e) => run.fail("send a datagram to the child", e),
        }
    }
    let mut go_tx = std::fs::File::from(go_tx);
    if let Err(e) = go_tx.write_all(b"g") {
        run.fail("tell the child to read", e);
    }
    let received = run.recv();
    run.finish();
    let sent = u64::from(datagrams) * size as u64;
    assert!(
        received > 0 && received < sent,
        "{what}: the child read {received} of {sent} bytes: a full buffer should have refused \
         some and kept some"
    );
    Moved {
        sent: 0,
        received,
        peer: from,
        local_port: port,
        netns: None,
        ..run.moved()
    }
}

/// A plain TCP download, the baseline: this process serves `total` bytes
/// on a 127.0.0.1 listener and closes; the child, named `comm`, connects
/// and reads them with read(2) until EOF.
pub fn tcp_plain_download(comm: &str, total: u64) -> Moved {
    let listener = tcp_listener();
    let to = listener.local_addr().expect("the listener's address");
    let mut run = Run::start("tcp_plain_download", comm, move |p| {
        let s = tcp_connect(to)?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::read(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match cvt(n, Step::TcpRead)? {
                0 => break,
                n => got += n as u64,
            }
        }
        whole_stream(p, got, total)
    });
    download(serve_download(&mut run, &listener, total), run, to, total)
}

/// A TCP download read only with splice(2): this process serves `total`
/// bytes on a 127.0.0.1 listener and closes; the child, named `comm`,
/// splices the socket into a pipe and the pipe into /dev/null until EOF,
/// never reading the socket otherwise.
pub fn tcp_splice_download(comm: &str, total: u64) -> Moved {
    let listener = tcp_listener();
    let to = listener.local_addr().expect("the listener's address");
    let mut run = Run::start("tcp_splice_download", comm, move |p| {
        let s = tcp_connect(to)?;
        let mut fds = [0; 2];
        // SAFETY: fds is an array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Fail::os(Step::Pipe));
        }
        // SAFETY: both were just made and are ours alone.
        let (pr, pw) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .at(Step::DevNull)?;
        let mut got = 0u64;
        loop {
            // SAFETY: plain fds; NULL offsets are allowed for both a socket
            // and a pipe.
            let n = unsafe {
                libc::splice(
                    s.as_raw_fd(),
                    std::ptr::null_mut(),
                    pw.as_raw_fd(),
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::SPLICE_F_MOVE,
                )
            };
            let n = cvt(n, Step::SpliceIn)?;
            if n == 0 {
                break;
            }
            // Empty the pipe before the next splice, so it never fills.
            let mut left = n;
            while left > 0 {
                // SAFETY: as above.
                let m = unsafe {
                    libc::splice(
                        pr.as_raw_fd(),
                        std::ptr::null_mut(),
                        null.as_raw_fd(),
                        std::ptr::null_mut(),
                        left,
                        libc::SPLICE_F_MOVE,
                    )
                };
                match cvt(m, Step::SpliceOut)? {
                    0 => return Err(Fail::got(Step::SpliceOut, 0)),
                    m => left -= m,
                }
            }
            got += n as u64;
        }
        whole_stream(p, got, total)
    });
    download(serve_download(&mut run, &listener, total), run, to, total)
}

/// A TCP upload with sendfile(2): the child, named `comm`, writes `total`
/// bytes into a memfd (an anonymous temporary file), connects to a
/// 127.0.0.1 listener of this process and sends the file with sendfile(2)
/// alone; this process reads until EOF and checks it got `total` bytes.
pub fn tcp_sendfile_upload(comm: &str, total: u64) -> Moved {
    let listener = tcp_listener();
    let to = listener.local_addr().expect("the listener's address");
    let run = Run::start("tcp_sendfile_upload", comm, move |p| {
        // SAFETY: the name is a NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"leco-sendfile".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Fail::os(Step::Memfd));
        }
        // SAFETY: just made, ours alone.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let chunk = pattern(CHUNK);
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            file.write_all(&chunk[..n]).at(Step::FillFile)?;
            left -= n as u64;
        }
        let s = tcp_connect(to)?;
        let mut offset: libc::off_t = 0;
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(1 << 20) as usize;
            // SAFETY: plain fds and a valid offset.
            let r = unsafe { libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &mut offset, n) };
            match cvt(r, Step::Sendfile)? {
                0 => return Err(Fail::got(Step::Sendfile, sent)),
                n => sent += n as u64,
            }
        }
        drop(s);
        p.send(sent);
        Ok(())
    });
    serve_upload(run, &listener, to, total)
}

/// A TCP upload with MSG_ZEROCOPY: the child, named `comm`, sets
/// SO_ZEROCOPY on a socket connected to this process's 127.0.0.1 listener
/// and sends `total` bytes with send(2, MSG_ZEROCOPY), reading the
/// completions from its error queue (recvmsg(MSG_ERRQUEUE), which returns
/// 0 bytes) as it goes and waiting for the last of them before it closes.
/// On loopback the kernel copies the data anyway (it says so in each
/// completion); the send path is the zero-copy one all the same.
pub fn tcp_zerocopy_send(comm: &str, total: u64) -> Moved {
    let listener = tcp_listener();
    let to = listener.local_addr().expect("the listener's address");
    let run = Run::start("tcp_zerocopy_send", comm, move |p| {
        let s = tcp_connect(to)?;
        let fd = s.as_raw_fd();
        set_opt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            &1i32,
            Step::ZeroCopyOpt,
        )?;
        // Never written while in flight: the kernel may read it until the
        // completion comes.
        let buf = pattern(CHUNK);
        let (mut sent, mut calls, mut done) = (0u64, 0u64, 0u64);
        let mut nobufs = 0u32;
        while sent < total {
            let n = (total - sent).min(CHUNK as u64) as usize;
            // SAFETY: buf is valid for reads of n bytes and outlives the
            // completions, which we wait for below.
            let r = unsafe {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    n,
                    libc::MSG_ZEROCOPY | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 && errno() == libc::ENOBUFS && nobufs < 1_000 {
                // Too many completions unread (optmem): read them, retry.
                nobufs += 1;
                wait_errqueue(fd, Duration::from_millis(100))?;
                drain_zerocopy(fd, &mut done)?;
                continue;
            }
            sent += cvt(r, Step::ZeroCopySend)? as u64;
            calls += 1;
            drain_zerocopy(fd, &mut done)?;
        }
        let deadline = Instant::now() + TIMEOUT;
        while done < calls {
            if Instant::now() > deadline {
                return Err(Fail::got(Step::Completions, done));
            }
            wait_errqueue(fd, Duration::from_millis(100))?;
            drain_zerocopy(fd, &mut done)?;
        }
        drop(s);
        p.send(sent);
        Ok(())
    });
    serve_upload(run, &listener, to, total)
}

/// TCP through io_uring alone: the child, named `comm`, connects to this
/// process's 127.0.0.1 listener and moves `total` bytes with
/// IORING_OP_SEND (`upload`) or IORING_OP_RECV (download, until EOF), one
/// operation at a time, each linked to a timeout. This process reads or
/// serves the bytes and checks the count.
///
/// Errors (rather than panics) when io_uring cannot be used here: setup
/// refused (ENOSYS: no io_uring; EPERM: `kernel.io_uring_disabled`), no
/// probe, or the opcode unsupported (EOPNOTSUPP), so that a test can say
/// so loudly. Any other failure panics as in the other generators.
pub fn tcp_io_uring(comm: &str, total: u64, upload: bool) -> io::Result<Moved> {
    let what = if upload {
        "tcp_io_uring (upload)"
    } else {
        "tcp_io_uring (download)"
    };
    let listener = tcp_listener();
    let to = listener.local_addr().expect("the listener's address");
    let mut run = Run::start(what, comm, move |p| {
        let mut ring = io_uring::IoUring::new(8).at(Step::UringSetup)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .at(Step::UringProbe)?;
        let op = if upload {
            io_uring::opcode::Send::CODE
        } else {
            io_uring::opcode::Recv::CODE
        };
        if !probe.is_supported(op) {
            return Err(Fail::errno(Step::UringProbe, libc::EOPNOTSUPP));
        }
        p.send(0); // ready: the parent may accept
        let s = tcp_connect(to)?;
        let moved = uring_transfer(&mut ring, s.as_raw_fd(), total, upload)?;
        drop(s);
        p.send(moved);
        Ok(())
    });
    match run.recv_report() {
        Ok(_) => {}
        Err(f) if matches!(f.step, Step::UringSetup | Step::UringProbe) => {
            run.finish_failed(f);
            let e = f.into_io();
            return Err(io::Error::new(
                e.kind(),
                format!("io_uring is unavailable here: {}: {e}", f.step.text()),
            ));
        }
        Err(f) => run.fail_reported(f),
    }
    Ok(if upload {
        serve_upload(run, &listener, to, total)
    } else {
        let local_port = serve_download(&mut run, &listener, total);
        download(local_port, run, to, total)
    })
}

/// ICMP echo through a ping socket (SOCK_DGRAM, IPPROTO_ICMP or
/// IPPROTO_ICMPV6): the child, named `comm`, makes its own network
/// namespace (unshare(CLONE_NEWNET)), brings its `lo` up, allows ping
/// sockets there (`net.ipv4.ping_group_range` is per namespace; the host's
/// is left alone) and sends `count` echo requests of `payload` bytes to
/// 127.0.0.1 (`v6`: ::1), reading each reply and checking its type,
/// sequence number and size. `sent` and `received` count the ICMP
/// messages (8-byte header and payload) as sendto(2) and recv(2) returned
/// them; `local_port` is the echo identifier the kernel chose for the
/// socket, which it keeps as the socket's port (getsockname(2) shows it);
/// `netns` is the namespace's inode.
pub fn ping_socket_echo(comm: &str, v6: bool, count: u32, payload: usize) -> Moved {
    assert!(
        payload <= 60_000,
        "ping_socket_echo: at most 60,000 bytes of payload, not {payload}"
    );
    let peer = lo(v6, 0);
    let mut run = Run::start("ping_socket_echo", comm, move |p| {
        own_netns()?;
        bring_up("lo")?;
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
            .at(Step::PingRange)?;
        p.send(netns_inode()?);
        let (domain, proto, request, reply) = if v6 {
            (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128, 129)
        } else {
            (libc::AF_INET, libc::IPPROTO_ICMP, 8, 0)
        };
        let s = socket(domain, libc::SOCK_DGRAM, proto, Step::Socket)?;
        timeouts(s.as_raw_fd())?;
        let (mut sent, mut received) = (0u64, 0u64);
        let mut buf = vec![0u8; 8 + payload + 1];
        for seq in 0..count {
            // The kernel fills in the identifier and the checksum.
            let msg = echo_request(request, 0, seq as u16, payload, false);
            sent += send_to(s.as_raw_fd(), &msg, peer)? as u64;
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let n = cvt(n, Step::Recv)?;
            received += n as u64;
            if n != msg.len() || buf[0] != reply || buf[6..8] != (seq as u16).to_be_bytes() {
                return Err(Fail::got(Step::EchoReply, n as u64));
            }
        }
        p.send(u64::from(local_port(s.as_raw_fd())?));
        p.send(sent);
        p.send(received);
        Ok(())
    });
    let netns = run.recv();
    let local_port = run.recv() as u16;
    let sent = run.recv();
    let received = run.recv();
    run.finish();
    let expected = u64::from(count) * (8 + payload as u64);
    assert_eq!(
        (sent, received),
        (expected, expected),
        "ping_socket_echo: ICMP bytes sent and received"
    );
    Moved {
        sent,
        received,
        peer,
        local_port,
        netns: Some(netns),
        ..run.moved()
    }
}

/// ICMP echo through a raw socket (SOCK_RAW, IPPROTO_ICMP) on the host's
/// loopback (needs CAP_NET_RAW): the child, named `comm`, builds `count`
/// echo requests of `payload` bytes itself (its pid as identifier, the
/// checksum computed), sends each to 127.0.0.1 and reads until it has the
/// reply. ICMP_FILTER keeps everything but echo replies out of its socket;
/// a raw socket still gets a copy of every echo reply on the host, so
/// `received` counts all the bytes recv(2) returned (IP header included),
/// replies to other pingers too, should any come.
pub fn raw_icmp_echo(comm: &str, count: u32, payload: usize) -> Moved {
    assert!(
        payload <= 60_000,
        "raw_icmp_echo: at most 60,000 bytes of payload, not {payload}"
    );
    let peer = lo(false, 0);
    let mut run = Run::start("raw_icmp_echo", comm, move |p| {
        let s = socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
            Step::Socket,
        )?;
        timeouts(s.as_raw_fd())?;
        // struct icmp_filter: a bit set is a type dropped. Keep only type
        // 0, the echo reply (our own requests come in too, on loopback).
        let filter: u32 = !1;
        set_opt(
            s.as_raw_fd(),
            libc::SOL_RAW,
            ICMP_FILTER,
            &filter,
            Step::IcmpFilter,
        )?;
        let id = std::process::id() as u16;
        let (mut sent, mut received, mut strays) = (0u64, 0u64, 0u64);
        let mut buf = vec![0u8; 60 + 8 + payload + 1];
        for seq in 0..count {
            let msg = echo_request(8, id, seq as u16, payload, true);
            sent += send_to(s.as_raw_fd(), &msg, peer)? as u64;
            loop {
                // SAFETY: buf is valid for writes of its length.
                let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let n = cvt(n, Step::Recv)?;
                received += n as u64;
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                let ours = n == ihl + msg.len()
                    && buf.get(ihl) == Some(&0)
                    && buf.get(ihl + 4..ihl + 8) == Some(&msg[4..8]);
                if ours {
                    break;
                }
                strays += 1;
                if strays > MAX_STRAYS {
                    return Err(Fail::got(Step::Strays, strays));
                }
            }
        }
        p.send(sent);
        p.send(received);
        Ok(())
    });
    let sent = run.recv();
    let received = run.recv();
    run.finish();
    let expected = u64::from(count) * (8 + payload as u64);
    assert_eq!(sent, expected, "raw_icmp_echo: ICMP bytes sent");
    assert!(
        received >= u64::from(count) * (20 + 8 + payload as u64),
        "raw_icmp_echo: {received} bytes received, fewer than {count} replies"
    );
    Moved {
        sent,
        received,
        peer,
        local_port: 0,
        netns: None,
        ..run.moved()
    }
}

/// Datagrams of a raw IP protocol (SOCK_RAW, `proto`, e.g. 253, set aside
/// for experiments) on the host's loopback (needs CAP_NET_RAW): the child,
/// named `comm`, sends `count` datagrams of `size` bytes (at least 12: a
/// marker and a sequence number lead each) to 127.0.0.1; this process
/// receives them on its own raw socket of that protocol, picks the child's
/// out by their marker and checks it got every one, whole. The child's
/// socket gets a copy of each too (every raw socket of the protocol does),
/// which it never reads: `received` is 0.
pub fn raw_ip_protocol(comm: &str, proto: u8, count: u32, size: usize) -> Moved {
    assert!(
        (12..=60_000).contains(&size),
        "raw_ip_protocol: datagrams of 12 to 60,000 bytes, not {size}"
    );
    let rx = socket(
        libc::AF_INET,
        libc::SOCK_RAW,
        i32::from(proto),
        Step::Socket,
    )
    .unwrap_or_else(|f| {
        panic!(
            "raw_ip_protocol: open this process's raw socket of protocol {proto}: {}",
            f.into_io()
        )
    });
    set_timeout(rx.as_raw_fd(), libc::SO_RCVTIMEO).expect("set the raw socket's timeout");
    grow_rcvbuf(&rx, u64::from(count).saturating_mul(truesize(20 + size)))
        .expect("enlarge the raw socket's buffer");
    let peer = lo(false, 0);
    // Told apart from other raw_ip_protocol runs, here or in another test.
    let marker = marker();
    let mut run = Run::start("raw_ip_protocol", comm, move |p| {
        let s = socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            i32::from(proto),
            Step::Socket,
        )?;
        timeouts(s.as_raw_fd())?;
        let mut msg = pattern(size);
        msg[..8].copy_from_slice(&marker);
        let mut sent = 0u64;
        for seq in 0..count {
            msg[8..12].copy_from_slice(&seq.to_be_bytes());
            sent += send_to(s.as_raw_fd(), &msg, peer)? as u64;
            pace(u64::from(seq));
        }
        p.send(sent);
        Ok(())
    });
    let mut seen = vec![false; count as usize];
    let (mut got, mut strays) = (0u32, 0u64);
    let mut buf = vec![0u8; 65_536];
    while got < count {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            run.fail(
                "receive the child's datagrams",
                format!("{} after {got} of {count}", io::Error::last_os_error()),
            );
        }
        let packet = &buf[..n as usize];
        let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        let body = packet.get(ihl..).unwrap_or_default();
        let from_lo = packet.get(12..16) == Some(&[127, 0, 0, 1]);
        if from_lo && body.len() == size && body[..8] == marker {
            let seq = u32::from_be_bytes([body[8], body[9], body[10], body[11]]) as usize;
            if let Some(s) = seen.get_mut(seq).filter(|s| !**s) {
                *s = true;
                got += 1;
                continue;
            }
        }
        strays += 1;
        if strays > MAX_STRAYS {
            run.fail("receive the child's datagrams", "too many others");
        }
    }
    let sent = run.recv();
    run.finish();
    assert_eq!(
        sent,
        u64::from(count) * size as u64,
        "raw_ip_protocol: bytes the child sent"
    );
    Moved {
        sent,
        received: 0,
        peer,
        local_port: 0,
        netns: None,
        ..run.moved()
    }
}

/// Ethernet frames through a packet socket (AF_PACKET, SOCK_RAW,
/// ETH_P_ALL): the child, named `comm`, makes its own network namespace,
/// turns IPv6 off there (so the kernel sends nothing of its own on the
/// links), creates the veth pair `lecot0`/`lecot1` over rtnetlink, brings
/// both up, binds a packet socket to `lecot0` and sends `count` frames,
/// each a valid IPv4/UDP packet (checksums computed) from 10.253.0.1:4000
/// to 10.253.0.2:5000 with `payload` bytes of UDP payload (8 to 1,472),
/// addressed to `lecot1`'s MAC. A second packet socket, on `lecot1`,
/// must see each frame arrive, byte for byte.
pub fn af_packet_frames(comm: &str, count: u32, payload: usize) -> PacketMoved {
    assert!(
        (8..=1_472).contains(&payload),
        "af_packet_frames: 8 to 1,472 bytes of UDP payload, not {payload}"
    );
    let src = SocketAddrV4::new(Ipv4Addr::new(10, 253, 0, 1), 4000);
    let dst = SocketAddrV4::new(Ipv4Addr::new(10, 253, 0, 2), 5000);
    let mut run = Run::start("af_packet_frames", comm, move |p| {
        own_netns()?;
        match std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Fail::io(Step::DisableIpv6, &e));
            }
            _ => {}
        }
        create_veth(VETH.0, VETH.1)?;
        bring_up(VETH.0)?;
        bring_up(VETH.1)?;
        p.send(netns_inode()?);
        let (tx_index, tx_mac) = interface(VETH.0)?;
        let (rx_index, rx_mac) = interface(VETH.1)?;
        let rx = packet_socket(rx_index)?;
        grow_rcvbuf(
            &rx,
            u64::from(count).saturating_mul(truesize(14 + 28 + payload)),
        )
        .at(Step::RcvBuf)?;
        let tx = packet_socket(tx_index)?;
        let (mut sent, mut received, mut strays) = (0u64, 0u64, 0u64);
        let mut buf = vec![0u8; 14 + 28 + payload + 1];
        for seq in 0..count {
            let frame = udp_frame(rx_mac, tx_mac, src, dst, seq, payload);
            // SAFETY: frame is valid for reads of its length.
            let n = unsafe { libc::send(tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            let n = cvt(n, Step::Send)?;
            if n != frame.len() {
                return Err(Fail::got(Step::ShortSend, n as u64));
            }
            sent += n as u64;
            loop {
                // SAFETY: buf is valid for writes of its length.
                let n =
                    unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let n = cvt(n, Step::FrameRecv)?;
                received += n as u64;
                if buf[..n] == frame[..] {
                    break;
                }
                strays += 1;
                if strays > MAX_STRAYS {
                    return Err(Fail::got(Step::Strays, strays));
                }
            }
        }
        p.send(sent);
        p.send(received);
        Ok(())
    });
    let netns = run.recv();
    let sent = run.recv();
    let received = run.recv();
    run.finish();
    let expected = u64::from(count) * (14 + 28 + payload as u64);
    assert_eq!(sent, expected, "af_packet_frames: frame bytes sent");
    assert!(
        received >= expected,
        "af_packet_frames: {received} bytes seen on {}, fewer than sent",
        VETH.1
    );
    PacketMoved {
        moved: Moved {
            sent,
            received,
            peer: SocketAddr::V4(dst),
            local_port: src.port(),
            netns: Some(netns),
            ..run.moved()
        },
        interface: VETH.0.to_owned(),
        dst: SocketAddr::V4(dst),
        netns,
    }
}

// ---------------------------------------------------------------------------
// Shared by the generators: the UDP receiver, the TCP ends.

fn udp_recv(
    what: &'static str,
    comm: &str,
    family: UdpFamily,
    how: RecvHow,
    connected: bool,
    datagrams: u32,
    size: usize,
) -> Moved {
    assert!(
        (1..=65_000).contains(&size),
        "{what}: datagrams of 1 to 65,000 bytes, not {size}"
    );
    let v6 = family == UdpFamily::V6;
    let tx = UdpSocket::bind(lo(v6, 0)).expect("bind the UDP sender on loopback");
    let from = tx.local_addr().expect("the sender's address");
    let budget = u64::from(datagrams).saturating_mul(truesize(size));
    let mut run = Run::start(what, comm, move |p| {
        let (domain, addr) = match family {
            UdpFamily::V4 => (libc::AF_INET, lo(false, 0)),
            UdpFamily::V6 => (libc::AF_INET6, lo(true, 0)),
            UdpFamily::V4Mapped => (
                libc::AF_INET6,
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            ),
        };
        let s = socket(domain, libc::SOCK_DGRAM, 0, Step::Socket)?;
        let fd = s.as_raw_fd();
        if family == UdpFamily::V4Mapped {
            set_opt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &0i32,
                Step::V6Only,
            )?;
        }
        timeouts(fd)?;
        grow_rcvbuf(&s, budget).at(Step::RcvBuf)?;
        sys_addr(fd, addr, Step::Bind, libc::bind)?;
        if connected {
            sys_addr(fd, from, Step::Connect, libc::connect)?;
        }
        p.send(u64::from(local_port(fd)?));
        let got = match how {
            RecvHow::Recv | RecvHow::Read => recv_each(fd, how, datagrams, size)?,
            RecvHow::Recvmmsg => recv_batched(fd, datagrams, size)?,
        };
        p.send(got);
        Ok(())
    });
    let port = run.recv() as u16;
    let to = match family {
        UdpFamily::V6 => lo(true, port),
        UdpFamily::V4 | UdpFamily::V4Mapped => lo(false, port),
    };
    let msg = pattern(size);
    for i in 0..u64::from(datagrams) {
        match tx.send_to(&msg, to) {
            Ok(n) if n == size => {}
            Ok(n) => run.fail("send a datagram to the child", format!("only {n} bytes")),
            Err(e) => run.fail("send a datagram to the child", e),
        }
        pace(i);
    }
    let received = run.recv();
    run.finish();
    assert_eq!(
        received,
        u64::from(datagrams) * size as u64,
        "{what}: bytes the child received"
    );
    Moved {
        sent: 0,
        received,
        peer: from,
        local_port: port,
        netns: None,
        ..run.moved()
    }
}

/// Reads `datagrams` datagrams of `size` bytes with recv(2) or read(2).
fn recv_each(fd: RawFd, how: RecvHow, datagrams: u32, size: usize) -> Res<u64> {
    // One byte more than expected: a longer datagram shows as such.
    let mut buf = vec![0u8; size + 1];
    let mut got = 0u64;
    for _ in 0..datagrams {
        let n = if how == RecvHow::Read {
            // SAFETY: buf is valid for writes of its length.
            cvt(
                unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) },
                Step::Read,
            )?
        } else {
            // SAFETY: as above.
            cvt(
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) },
                Step::Recv,
            )?
        };
        if n != size {
            return Err(Fail::got(Step::WrongSize, n as u64));
        }
        got += n as u64;
    }
    Ok(got)
}

/// Reads `datagrams` datagrams of `size` bytes with recvmmsg(2), 32 at
/// most a call, without addresses.
fn recv_batched(fd: RawFd, datagrams: u32, size: usize) -> Res<u64> {
    const BATCH: usize = 32;
    let slot = size + 1;
    let mut bufs = vec![0u8; BATCH * slot];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(slot)
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is valid: no name, no control data.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let (mut left, mut got) = (datagrams as usize, 0u64);
    while left > 0 {
        let vlen = left.min(BATCH);
        // SAFETY: msgs holds vlen headers whose iovecs point into bufs,
        // which outlives the call; no timeout (SO_RCVTIMEO applies).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                vlen as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let n = cvt(n as isize, Step::RecvMmsg)?;
        for m in &msgs[..n] {
            if m.msg_len as usize != size || m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return Err(Fail::got(Step::WrongSize, u64::from(m.msg_len)));
            }
            got += u64::from(m.msg_len);
        }
        left -= n;
    }
    Ok(got)
}

/// Sends `total` bytes in datagrams of `buf.len()` with send(2).
fn burst_send(s: &UdpSocket, buf: &[u8], total: u64) -> Res<u64> {
    let (mut sent, mut i) = (0u64, 0u64);
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        let m = s.send(&buf[..n]).at(Step::Send)?;
        if m != n {
            return Err(Fail::got(Step::ShortSend, m as u64));
        }
        sent += m as u64;
        pace(i);
        i += 1;
    }
    Ok(sent)
}

/// Sends `total` bytes in datagrams of `buf.len()` with sendmmsg(2), 32
/// a call.
fn burst_sendmmsg(fd: RawFd, buf: &[u8], total: u64) -> Res<u64> {
    const BATCH: u64 = 32;
    let size = buf.len() as u64;
    let count = total.div_ceil(size);
    let (mut next, mut sent) = (0u64, 0u64);
    while next < count {
        let batch = (count - next).min(BATCH);
        let mut iovs: Vec<libc::iovec> = (next..next + batch)
            .map(|i| libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: (total - i * size).min(size) as usize,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is valid: no name (the socket
                // is connected), no control data.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs holds `batch` headers whose iovecs point into buf,
        // which the kernel only reads.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_NOSIGNAL,
            )
        };
        let n = cvt(n as isize, Step::SendMmsg)?;
        if n == 0 {
            return Err(Fail::got(Step::SendMmsg, next));
        }
        for (m, iov) in msgs.iter().zip(&iovs).take(n) {
            if m.msg_len as usize != iov.iov_len {
                return Err(Fail::got(Step::ShortSend, u64::from(m.msg_len)));
            }
            sent += u64::from(m.msg_len);
        }
        // The same pause as send(2)'s, once every PACE_EVERY datagrams.
        if (next + n as u64) / PACE_EVERY != next / PACE_EVERY {
            std::thread::sleep(PACE);
        }
        next += n as u64;
    }
    Ok(sent)
}

/// A TCP listener on 127.0.0.1 whose accept(2) times out.
/// A child's download ends: all `total` bytes came, and the parent hears
/// how many.
fn whole_stream(p: &mut Parent, got: u64, total: u64) -> Res<()> {
    if got != total {
        return Err(Fail::got(Step::ShortStream, got));
    }
    p.send(got);
    Ok(())
}

fn tcp_listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener on 127.0.0.1");
    // accept(2) waits no longer than SO_RCVTIMEO.
    set_timeout(l.as_raw_fd(), libc::SO_RCVTIMEO).expect("set the listener's accept timeout");
    l
}

/// The child's connection to `to`, with timeouts.
fn tcp_connect(to: SocketAddr) -> Res<TcpStream> {
    let s = TcpStream::connect_timeout(&to, TIMEOUT).at(Step::Connect)?;
    timeouts(s.as_raw_fd())?;
    Ok(s)
}

/// Accepts the child's connection: the stream and the child's port.
fn accept(run: &mut Run, listener: &TcpListener) -> (TcpStream, u16) {
    let (s, from) = run.ok(listener.accept(), "accept the child's connection");
    run.ok(s.set_read_timeout(Some(TIMEOUT)), "set a read timeout");
    run.ok(s.set_write_timeout(Some(TIMEOUT)), "set a write timeout");
    (s, from.port())
}

/// Accepts the child's connection, writes `total` bytes to it and shuts
/// the sending side (the FIN goes out even if some other child forked
/// meanwhile holds a copy of the socket). The child's port.
fn serve_download(run: &mut Run, listener: &TcpListener, total: u64) -> u16 {
    let (mut s, port) = accept(run, listener);
    let chunk = pattern(CHUNK);
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        if let Err(e) = s.write_all(&chunk[..n]) {
            run.fail(
                "serve the bytes",
                format!("{e} after {} of {total}", total - left),
            );
        }
        left -= n as u64;
    }
    run.ok(s.shutdown(Shutdown::Write), "shut the connection down");
    port
}

/// The end of a download: the child's count, checked.
fn download(local_port: u16, mut run: Run, to: SocketAddr, total: u64) -> Moved {
    let received = run.recv();
    run.finish();
    assert_eq!(received, total, "{}: bytes the child received", run.what);
    Moved {
        sent: 0,
        received,
        peer: to,
        local_port,
        netns: None,
        ..run.moved()
    }
}

/// An upload: accept, read to EOF, compare with the child's count.
fn serve_upload(mut run: Run, listener: &TcpListener, to: SocketAddr, total: u64) -> Moved {
    let (mut s, local_port) = accept(&mut run, listener);
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => run.fail(
                "read the child's upload",
                format!("{e} after {got} of {total} bytes"),
            ),
        }
    }
    let sent = run.recv();
    run.finish();
    assert_eq!(got, total, "{}: bytes this process received", run.what);
    assert_eq!(sent, total, "{}: bytes the child sent", run.what);
    Moved {
        sent,
        received: 0,
        peer: to,
        local_port,
        netns: None,
        ..run.moved()
    }
}

/// Moves `total` bytes (upload) or all until EOF (download) on `fd`
/// through `ring`, one operation at a time, each linked to a timeout.
fn uring_transfer(ring: &mut io_uring::IoUring, fd: RawFd, total: u64, upload: bool) -> Res<u64> {
    use io_uring::{opcode, squeue, types};
    let mut buf = pattern(CHUNK);
    let timeout = types::Timespec::from(TIMEOUT);
    let step = if upload {
        Step::UringSend
    } else {
        Step::UringRecv
    };
    let mut moved = 0u64;
    loop {
        let want = if upload {
            (total - moved).min(CHUNK as u64) as u32
        } else {
            CHUNK as u32
        };
        if want == 0 {
            break;
        }
        let op = if upload {
            opcode::Send::new(types::Fd(fd), buf.as_ptr(), want)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), want).build()
        };
        let ops = [
            op.flags(squeue::Flags::IO_LINK).user_data(1),
            opcode::LinkTimeout::new(&timeout).build().user_data(2),
        ];
        // SAFETY: buf and timeout outlive both operations: their two
        // completions are waited for below before either is touched again.
        if unsafe { ring.submission().push_multiple(&ops) }.is_err() {
            return Err(Fail::errno(Step::UringSubmit, libc::EBUSY));
        }
        let (mut seen, mut result) = (0, None);
        while seen < 2 {
            match ring.submit_and_wait(2 - seen) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::io(Step::UringSubmit, &e)),
            }
            for cqe in ring.completion() {
                seen += 1;
                if cqe.user_data() == 1 {
                    result = Some(cqe.result());
                }
            }
        }
        match result {
            // Cancelled by its linked timeout: it took longer than TIMEOUT.
            Some(r) if r == -libc::ECANCELED => return Err(Fail::errno(step, libc::ETIMEDOUT)),
            Some(r) if r < 0 => return Err(Fail::errno(step, -r)),
            Some(0) if upload => return Err(Fail::got(step, moved)),
            Some(0) => break,
            Some(r) => moved += r as u64,
            None => return Err(Fail::errno(Step::UringSubmit, libc::EIO)),
        }
    }
    if moved != total {
        return Err(Fail::got(Step::ShortStream, moved));
    }
    Ok(moved)
}

/// Reads the zero-copy completions waiting on `fd`'s error queue, adding
/// the number of send calls they complete to `done`.
fn drain_zerocopy(fd: RawFd, done: &mut u64) -> Res<()> {
    loop {
        // u64s: aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: an all-zero msghdr is valid.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: msg points at control, valid for its length.
        let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = errno();
            if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
                return Ok(());
            }
            return Err(Fail::errno(Step::ErrQueue, e));
        }
        // SAFETY: msg was filled by recvmsg; the CMSG macros stay inside
        // msg_controllen.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            // SAFETY: c points at a complete cmsghdr inside control.
            let (level, ty) = unsafe { ((*c).cmsg_level, (*c).cmsg_type) };
            let recverr = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
            if recverr {
                // SAFETY: an IP_RECVERR message carries a sock_extended_err.
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
                if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    // A range of send calls, ee_info to ee_data inclusive.
                    *done += u64::from(ee.ee_data.wrapping_sub(ee.ee_info)) + 1;
                }
            }
            // SAFETY: as above.
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
    }
}

/// Waits at most `limit` for something on `fd`'s error queue.
fn wait_errqueue(fd: RawFd, limit: Duration) -> Res<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: 0, // POLLERR is reported whatever is asked
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as libc::c_int) };
    if r < 0 && errno() != libc::EINTR {
        return Err(Fail::os(Step::ErrQueue));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Namespaces, interfaces and packets.

/// The veth pair [`af_packet_frames`] makes in its namespace.
const VETH: (&str, &str) = ("lecot0", "lecot1");

// From linux/icmp.h, linux/errqueue.h, linux/if_link.h and linux/veth.h:
// the libc crate does not have them all on every target.
const ICMP_FILTER: libc::c_int = 1;
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

/// Moves the calling process (the child) into a new network namespace of
/// its own, which ends with it.
fn own_netns() -> Res<()> {
    // SAFETY: no pointers; the child is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(Fail::os(Step::Unshare));
    }
    Ok(())
}

/// The inode of the calling process's network namespace.
fn netns_inode() -> Res<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .at(Step::Netns)?
        .ino())
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: an all-zero ifreq is valid.
    let mut r: libc::ifreq = unsafe { zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    r
}

/// Sets IFF_UP on the interface `name` (SIOCGIFFLAGS, SIOCSIFFLAGS).
fn bring_up(name: &str) -> Res<()> {
    let step = if name == "lo" {
        Step::LoopbackUp
    } else {
        Step::LinkUp
    };
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0, step)?;
    let mut r = ifreq(name);
    // SAFETY: r is a valid ifreq for these requests.
    if unsafe {
        libc::ioctl(
            s.as_raw_fd(),
            libc::SIOCGIFFLAGS as _,
            &mut r as *mut libc::ifreq,
        )
    } != 0
    {
        return Err(Fail::os(step));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { r.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    if unsafe {
        libc::ioctl(
            s.as_raw_fd(),
            libc::SIOCSIFFLAGS as _,
            &mut r as *mut libc::ifreq,
        )
    } != 0
    {
        return Err(Fail::os(step));
    }
    Ok(())
}

/// An interface's index and MAC address.
fn interface(name: &str) -> Res<(i32, [u8; 6])> {
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM, 0, Step::IfInfo)?;
    let mut r = ifreq(name);
    // SAFETY: r is a valid ifreq for this request.
    if unsafe {
        libc::ioctl(
            s.as_raw_fd(),
            libc::SIOCGIFINDEX as _,
            &mut r as *mut libc::ifreq,
        )
    } != 0
    {
        return Err(Fail::os(Step::IfInfo));
    }
    // SAFETY: SIOCGIFINDEX filled the index member.
    let index = unsafe { r.ifr_ifru.ifru_ifindex };
    // SAFETY: as above.
    if unsafe {
        libc::ioctl(
            s.as_raw_fd(),
            libc::SIOCGIFHWADDR as _,
            &mut r as *mut libc::ifreq,
        )
    } != 0
    {
        return Err(Fail::os(Step::IfInfo));
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let data = unsafe { r.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    Ok((index, mac))
}

/// Appends one netlink attribute, padded to 4 bytes.
fn nla(m: &mut Vec<u8>, ty: u16, data: &[u8]) {
    m.extend(((4 + data.len()) as u16).to_ne_bytes());
    m.extend(ty.to_ne_bytes());
    m.extend(data);
    m.resize(m.len().next_multiple_of(4), 0);
}

/// Opens a nested netlink attribute: its offset, for [`nla_end`].
fn nla_start(m: &mut Vec<u8>, ty: u16) -> usize {
    let at = m.len();
    nla(m, ty, &[]);
    at
}

fn nla_end(m: &mut [u8], at: usize) {
    let len = (m.len() - at) as u16;
    m[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Creates the veth pair `a`/`b` with one RTM_NEWLINK request, as
/// `ip link add a type veth peer name b` would.
fn create_veth(a: &str, b: &str) -> Res<()> {
    let s = socket(
        libc::AF_NETLINK,
        libc::SOCK_RAW,
        libc::NETLINK_ROUTE,
        Step::Netlink,
    )?;
    timeouts(s.as_raw_fd())?;
    let ifinfomsg = [0u8; size_of::<libc::ifinfomsg>()]; // AF_UNSPEC, all 0
    let mut m = vec![0u8; size_of::<libc::nlmsghdr>()];
    m.extend(ifinfomsg);
    nla(&mut m, IFLA_IFNAME, format!("{a}\0").as_bytes());
    let info = nla_start(&mut m, IFLA_LINKINFO);
    nla(&mut m, IFLA_INFO_KIND, b"veth");
    let data = nla_start(&mut m, IFLA_INFO_DATA);
    let peer = nla_start(&mut m, VETH_INFO_PEER);
    m.extend(ifinfomsg);
    nla(&mut m, IFLA_IFNAME, format!("{b}\0").as_bytes());
    nla_end(&mut m, peer);
    nla_end(&mut m, data);
    nla_end(&mut m, info);
    let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(flags as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
                                                   // SAFETY: all-zero is a valid sockaddr_nl: the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: m and kernel are valid for the lengths passed.
    let r = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            m.as_ptr().cast(),
            m.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    cvt(r, Step::VethCreate)?;
    // The answer: an NLMSG_ERROR whose error is 0 (the ack) or -errno.
    let mut answer = [0u8; 4096];
    // SAFETY: answer is valid for writes of its length.
    let n = unsafe { libc::recv(s.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0) };
    let n = cvt(n, Step::VethCreate)?;
    let ty = answer.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = answer
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (n >= 20, ty, error) {
        (true, Some(t), Some(0)) if i32::from(t) == libc::NLMSG_ERROR => Ok(()),
        (true, Some(t), Some(e)) if i32::from(t) == libc::NLMSG_ERROR => {
            Err(Fail::errno(Step::VethCreate, -e))
        }
        _ => Err(Fail::errno(Step::VethCreate, libc::EPROTO)),
    }
}

/// A packet socket (SOCK_RAW, ETH_P_ALL) bound to interface `index`,
/// seeing only frames that arrive there.
fn packet_socket(index: i32) -> Res<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    let s = socket(
        libc::AF_PACKET,
        libc::SOCK_RAW,
        i32::from(all),
        Step::Socket,
    )?;
    timeouts(s.as_raw_fd())?;
    set_opt(
        s.as_raw_fd(),
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &1i32,
        Step::IgnoreOutgoing,
    )?;
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut a: libc::sockaddr_ll = unsafe { zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = all;
    a.sll_ifindex = index;
    // SAFETY: a is a sockaddr_ll of the length passed.
    let r = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&a as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Fail::os(Step::PacketBind));
    }
    Ok(s)
}

/// The Internet checksum of `parts` laid end to end (only the last may be
/// of odd length).
pub(crate) fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for w in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP or ICMPv6 echo request of type `ty`, with `payload` bytes; its
/// checksum computed if `sum` (IPv4 raw sockets leave it to us).
fn echo_request(ty: u8, id: u16, seq: u16, payload: usize, sum: bool) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(pattern(payload));
    if sum {
        let c = checksum(&[&m]);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// An Ethernet frame carrying an IPv4/UDP packet from `src` to `dst` with
/// `payload` bytes: "LECO", the sequence number, then a pattern.
fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    payload: usize,
) -> Vec<u8> {
    let udp_len = (8 + payload) as u16;
    let mut f = Vec::with_capacity(14 + 20 + usize::from(udp_len));
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend(0x0800u16.to_be_bytes()); // IPv4
    f.extend([0x45, 0]); // version 4, 20-byte header; no TOS
    f.extend((20 + udp_len).to_be_bytes());
    f.extend((seq as u16).to_be_bytes()); // identification
    f.extend(0x4000u16.to_be_bytes()); // don't fragment
    f.extend([64, libc::IPPROTO_UDP as u8, 0, 0]); // TTL, protocol, checksum
    f.extend(src.ip().octets());
    f.extend(dst.ip().octets());
    let ip = checksum(&[&f[14..34]]);
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    f.extend(src.port().to_be_bytes());
    f.extend(dst.port().to_be_bytes());
    f.extend(udp_len.to_be_bytes());
    f.extend([0, 0]);
    let mut data = pattern(payload);
    data[..4].copy_from_slice(b"LECO");
    data[4..8].copy_from_slice(&seq.to_be_bytes());
    f.extend(data);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend(src.ip().octets());
    pseudo.extend(dst.ip().octets());
    pseudo.extend([0, libc::IPPROTO_UDP as u8]);
    pseudo.extend(udp_len.to_be_bytes());
    let udp = match checksum(&[&pseudo, &f[34..]]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        c => c,
    };
    f[40..42].copy_from_slice(&udp.to_be_bytes());
    f
}

// ---------------------------------------------------------------------------
// Sockets.

fn lo(v6: bool, port: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    };
    SocketAddr::new(ip, port)
}

/// `len` bytes of a repeating pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Eight bytes unlikely to be another run's: this process, this moment.
fn marker() -> [u8; 8] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&std::process::id().to_be_bytes());
    m[4..].copy_from_slice(&nanos.to_be_bytes());
    m
}

/// What a queued datagram of `len` bytes may cost a receive buffer
/// (the kernel charges whole allocations, rounded up, and the sk_buff).
fn truesize(len: usize) -> u64 {
    2 * len as u64 + 1024
}

/// A short pause every [`PACE_EVERY`] datagrams.
fn pace(i: u64) {
    if i % PACE_EVERY == PACE_EVERY - 1 {
        std::thread::sleep(PACE);
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A pipe (read end, write end), close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just made, ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits up to [`TIMEOUT`] for `fd` to be readable, in the child.
fn wait_readable(fd: RawFd) -> Res<()> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) };
    match n {
        1 => Ok(()),
        0 => Err(Fail::errno(Step::Wait, libc::ETIMEDOUT)),
        _ => Err(Fail::os(Step::Wait)),
    }
}

/// A socket, close-on-exec.
fn socket(domain: i32, ty: i32, proto: i32, step: Step) -> Res<OwnedFd> {
    // SAFETY: no pointers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(Fail::os(step));
    }
    // SAFETY: just made, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_opt<T>(fd: RawFd, level: i32, name: i32, value: &T, step: Step) -> Res<()> {
    // SAFETY: value points at a T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Fail::os(step));
    }
    Ok(())
}

/// Sets the timeout `opt` (SO_RCVTIMEO or SO_SNDTIMEO) to [`TIMEOUT`].
fn set_timeout(fd: RawFd, opt: i32) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    set_opt(fd, libc::SOL_SOCKET, opt, &tv, Step::Timeouts).map_err(Fail::into_io)
}

/// Both timeouts, in the child.
fn timeouts(fd: RawFd) -> Res<()> {
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        set_timeout(fd, opt).at(Step::Timeouts)?;
    }
    Ok(())
}

/// Makes room for `bytes` in the receive buffer: SO_RCVBUFFORCE, past
/// net.core.rmem_max (as root), else SO_RCVBUF up to that limit.
fn grow_rcvbuf(fd: &impl AsRawFd, bytes: u64) -> io::Result<()> {
    // The kernel doubles the value it is given.
    let v = bytes.div_ceil(2).clamp(64 * 1024, i32::MAX as u64 / 2) as i32;
    let fd = fd.as_raw_fd();
    set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &v, Step::RcvBuf)
        .or_else(|_| set_opt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &v, Step::RcvBuf))
        .map_err(Fail::into_io)
}

fn raw_addr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and
            // aligned for it.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Calls bind(2) or connect(2) with `a`.
fn sys_addr(
    fd: RawFd,
    a: SocketAddr,
    step: Step,
    call: unsafe extern "C" fn(i32, *const libc::sockaddr, libc::socklen_t) -> i32,
) -> Res<()> {
    let (ss, len) = raw_addr(a);
    // SAFETY: ss holds an address of length len.
    if unsafe { call(fd, (&ss as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(Fail::os(step));
    }
    Ok(())
}

/// sendto(2) of `msg` to `to`: the bytes sent, which must be all.
fn send_to(fd: RawFd, msg: &[u8], to: SocketAddr) -> Res<usize> {
    let (ss, len) = raw_addr(to);
    // SAFETY: msg and ss are valid for the lengths passed.
    let n = unsafe {
        libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    let n = cvt(n, Step::SendTo)?;
    if n != msg.len() {
        return Err(Fail::got(Step::ShortSend, n as u64));
    }
    Ok(n)
}

/// The port getsockname(2) gives the socket.
fn local_port(fd: RawFd) -> Res<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss is valid for len bytes.
    let r = unsafe {
        libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(Fail::os(Step::LocalAddr));
    }
    let port = match i32::from(ss.ss_family) {
        // SAFETY: the family says which address it holds.
        libc::AF_INET => unsafe {
            (*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()).sin_port
        },
        // SAFETY: as above.
        libc::AF_INET6 => unsafe {
            (*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()).sin6_port
        },
        _ => 0,
    };
    Ok(u16::from_be(port))
}

// ---------------------------------------------------------------------------
// The child's failures and the parent's view of its child.

/// Defines [`Step`], the steps of a child's work, each with its exit code
/// (10 on: 1 is too common, 101 is a panic) and what it was doing.
macro_rules! steps {
    ($($name:ident = $code:literal => $text:literal,)*) => {
        /// A step of a child's work, whose code it exits with when that
        /// step fails.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Step {
            $($name = $code,)*
        }

        impl Step {
            fn text(self) -> &'static str {
                match self {
                    $(Step::$name => $text,)*
                }
            }

            fn from_code(code: u64) -> Option<Step> {
                match code {
                    $($code => Some(Step::$name),)*
                    _ => None,
                }
            }
        }
    };
}

steps! {
    Socket = 10 => "create a socket",
    RcvBuf = 11 => "enlarge a receive buffer (SO_RCVBUFFORCE, SO_RCVBUF)",
    Timeouts = 12 => "set SO_RCVTIMEO and SO_SNDTIMEO",
    V6Only = 13 => "turn IPV6_V6ONLY off",
    Bind = 14 => "bind(2)",
    Connect = 15 => "connect(2)",
    LocalAddr = 16 => "getsockname(2)",
    Send = 17 => "send(2)",
    SendMmsg = 18 => "sendmmsg(2)",
    ShortSend = 19 => "send a whole datagram or frame (the kernel took fewer bytes)",
    Recv = 20 => "recv(2)",
    Read = 21 => "read(2) from the UDP socket",
    RecvMmsg = 22 => "recvmmsg(2)",
    WrongSize = 23 => "receive datagrams of the size sent (one was another size)",
    Pipe = 24 => "pipe2(2)",
    DevNull = 25 => "open /dev/null",
    SpliceIn = 26 => "splice(2) from the socket into the pipe",
    SpliceOut = 27 => "splice(2) from the pipe into /dev/null",
    ShortStream = 28 => "move every byte before EOF (the stream ended early)",
    Memfd = 29 => "memfd_create(2) for the file to send",
    FillFile = 30 => "write the file to send",
    Sendfile = 31 => "sendfile(2)",
    ZeroCopyOpt = 32 => "set SO_ZEROCOPY",
    ZeroCopySend = 33 => "send(2) with MSG_ZEROCOPY",
    ErrQueue = 34 => "read zero-copy completions (recvmsg MSG_ERRQUEUE, poll)",
    Completions = 35 => "get every zero-copy completion within the timeout",
    UringSetup = 36 => "io_uring_setup(2)",
    UringProbe = 37 => "find IORING_OP_SEND and IORING_OP_RECV (IORING_REGISTER_PROBE)",
    UringSubmit = 38 => "submit to io_uring and wait for the completions",
    UringSend = 39 => "IORING_OP_SEND",
    UringRecv = 40 => "IORING_OP_RECV",
    Unshare = 41 => "unshare(CLONE_NEWNET)",
    LoopbackUp = 42 => "bring lo up in its network namespace",
    PingRange = 43 => "write net.ipv4.ping_group_range in its network namespace",
    Netns = 44 => "stat /proc/self/ns/net",
    SendTo = 45 => "sendto(2)",
    EchoReply = 46 => "read its echo reply (wrong size, type or sequence number)",
    IcmpFilter = 47 => "set ICMP_FILTER",
    Strays = 48 => "find its own packets among others (too many others)",
    DisableIpv6 = 49 => "turn IPv6 off in its network namespace",
    Netlink = 50 => "open a route netlink socket",
    VethCreate = 51 => "create the veth pair lecot0/lecot1 (RTM_NEWLINK)",
    IfInfo = 52 => "read an interface's index and MAC address",
    LinkUp = 53 => "bring the veth pair up",
    PacketBind = 54 => "bind a packet socket to its interface",
    IgnoreOutgoing = 55 => "set PACKET_IGNORE_OUTGOING",
    FrameRecv = 56 => "receive its frame on lecot1",
    TcpRead = 57 => "read(2) from the TCP socket",
    Wait = 58 => "wait for this process to finish sending (poll(2) on a pipe)",
}

/// What the child reports besides its step: the errno of a failed call,
/// or the count it had when a check failed.
#[derive(Debug, Clone, Copy)]
enum Detail {
    Errno(i32),
    Got(u64),
}

/// A failed step of the child's work.
#[derive(Debug, Clone, Copy)]
struct Fail {
    step: Step,
    detail: Detail,
}

type Res<T> = Result<T, Fail>;

// A report, as one number on the child's pipe: bit 63 marks it (no count,
// port or inode the children send comes near), bit 62 says a count
// follows rather than an errno, bits 48 to 55 hold the step.
const REPORT: u64 = 1 << 63;
const REPORT_COUNT: u64 = 1 << 62;
const REPORT_VALUE: u64 = (1 << 48) - 1;

impl Fail {
    fn errno(step: Step, e: i32) -> Fail {
        Fail {
            step,
            detail: Detail::Errno(e),
        }
    }

    /// The call that just failed, by errno.
    fn os(step: Step) -> Fail {
        Fail::errno(step, errno())
    }

    fn io(step: Step, e: &io::Error) -> Fail {
        Fail::errno(step, e.raw_os_error().unwrap_or(libc::EIO))
    }

    fn got(step: Step, n: u64) -> Fail {
        Fail {
            step,
            detail: Detail::Got(n),
        }
    }

    /// The errno as an io::Error, for this process's own calls.
    fn into_io(self) -> io::Error {
        match self.detail {
            Detail::Errno(e) => io::Error::from_raw_os_error(e),
            Detail::Got(_) => io::Error::other(self.to_string()),
        }
    }

    fn encode(self) -> u64 {
        let (kind, value) = match self.detail {
            Detail::Errno(e) => (0, e as u64),
            Detail::Got(n) => (REPORT_COUNT, n),
        };
        REPORT | kind | (self.step as u64) << 48 | (value & REPORT_VALUE)
    }

    fn decode(v: u64) -> Option<Fail> {
        if v & REPORT == 0 {
            return None;
        }
        let step = Step::from_code((v >> 48) & 0xff)?;
        let value = v & REPORT_VALUE;
        let detail = if v & REPORT_COUNT != 0 {
            Detail::Got(value)
        } else {
            Detail::Errno(value as i32)
        };
        Some(Fail { step, detail })
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({})", self.step as i32, self.step.text())?;
        match self.detail {
            Detail::Errno(e) => write!(f, ": {}", io::Error::from_raw_os_error(e)),
            Detail::Got(n) => write!(f, ", at {n}"),
        }
    }
}

/// `.at(step)`: an io::Result as the child's step result.
trait At<T> {
    fn at(self, step: Step) -> Res<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, step: Step) -> Res<T> {
        self.map_err(|e| Fail::io(step, &e))
    }
}

/// A syscall's return value as a count, or its errno.
fn cvt(r: isize, step: Step) -> Res<usize> {
    if r < 0 {
        return Err(Fail::os(step));
    }
    Ok(r as usize)
}

/// A generator's child as the parent sees it: its reports read, its exit
/// waited for, any failure on either side turned into a panic that says
/// what each side was doing.
#[derive(Debug)]
struct Run {
    what: &'static str,
    comm: String,
    pid: u32,
    child: Option<Child>,
}

impl Run {
    /// Forks the child `comm` running `work`: exit code 0 if it succeeds;
    /// if it fails, its report on the pipe, then the step's code.
    fn start(what: &'static str, comm: &str, work: impl FnOnce(&mut Parent) -> Res<()>) -> Run {
        let child = spawn_named(comm, |p| match work(p) {
            Ok(()) => 0,
            Err(f) => {
                p.send(f.encode());
                f.step as i32
            }
        });
        // What prctl(PR_SET_NAME) keeps of the name.
        let cut = &comm.as_bytes()[..comm.len().min(15)];
        Run {
            what,
            comm: String::from_utf8_lossy(cut).into_owned(),
            pid: child.pid(),
            child: Some(child),
        }
    }

    /// A [`Moved`] with the child's pid and comm, the rest empty.
    fn moved(&self) -> Moved {
        Moved {
            pid: self.pid,
            comm: self.comm.clone(),
            sent: 0,
            received: 0,
            peer: lo(false, 0),
            local_port: 0,
            netns: None,
        }
    }

    /// The next number from the child, or its failure report.
    fn recv_report(&mut self) -> Result<u64, Fail> {
        let v = self
            .child
            .as_mut()
            .expect("the child, not yet waited for")
            .recv();
        Fail::decode(v).map_or(Ok(v), Err)
    }

    /// The next number from the child; panics if it reports a failure.
    fn recv(&mut self) -> u64 {
        match self.recv_report() {
            Ok(v) => v,
            Err(f) => self.fail_reported(f),
        }
    }

    /// Panics with the failure the child reported, once it has exited.
    fn fail_reported(&mut self, f: Fail) -> ! {
        let (code, status) = self.settle(TIMEOUT, Some(f));
        let end = match code {
            Some(code) => format!("exit code {code}"),
            None => status,
        };
        panic!(
            "traffic::{}: the child {:?} (pid {}) failed at {f} ({end})",
            self.what, self.comm, self.pid
        );
    }

    /// Panics: this process failed `doing` something, with `err`; and
    /// says how the child ended, which is often the cause.
    fn fail(&mut self, doing: &str, err: impl fmt::Display) -> ! {
        let (_, status) = self.settle(Duration::from_secs(2), None);
        panic!(
            "traffic::{}: this process failed to {doing}: {err}; the child {:?} (pid {}) {status}",
            self.what, self.comm, self.pid
        );
    }

    /// `r`'s value, or [`Run::fail`].
    fn ok<T, E: fmt::Display>(&mut self, r: Result<T, E>, doing: &str) -> T {
        r.unwrap_or_else(|e| self.fail(doing, e))
    }

    /// Waits for the child, which must exit 0; panics saying how it
    /// failed otherwise.
    fn finish(&mut self) {
        let (code, status) = self.settle(TIMEOUT * 3, None);
        if code != Some(0) {
            panic!(
                "traffic::{}: the child {:?} (pid {}) {status}",
                self.what, self.comm, self.pid
            );
        }
    }

    /// Waits for a child whose failure report `f` this process has read
    /// and handles itself.
    fn finish_failed(&mut self, f: Fail) {
        let _ = self.settle(TIMEOUT, Some(f));
    }

    /// Lets the child end (killing it if it is still running after
    /// `limit`), reaps it and says how it ended: its exit code (`None` if
    /// killed) and words with the failure it reported (`known`, or read
    /// from its pipe now) if it failed a step.
    fn settle(&mut self, limit: Duration, known: Option<Fail>) -> (Option<i32>, String) {
        let Some(mut child) = self.child.take() else {
            return (None, "was already waited for".to_owned());
        };
        let deadline = Instant::now() + limit;
        let mut status = ended(self.pid);
        while status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            status = ended(self.pid);
        }
        let Some(exit) = status else {
            drop(child); // kills and reaps it
            return (
                None,
                format!("was still running after {limit:?} and was killed"),
            );
        };
        let report = match known {
            Some(f) => Some(f),
            // A child that exits with a step's code has written its report
            // before exiting, so these reads find it and do not block (the
            // caller passes a report it has already read as `known`).
            None if exit.is_some_and(|c| Step::from_code(c as u64).is_some()) => {
                std::iter::from_fn(|| Some(child.recv()))
                    .take(64)
                    .find_map(Fail::decode)
            }
            None => None,
        };
        let code = child.wait();
        let words = match (code, report) {
            (0, _) => "exited 0".to_owned(),
            (_, Some(f)) => format!("failed at {f} (exit code {code})"),
            (101, None) => "panicked (a bug in leco_testkit::traffic)".to_owned(),
            (c, None) if c > 128 => format!("was killed by signal {}", c - 128),
            (c, None) => format!("exited with code {c}"),
        };
        (Some(code), words)
    }
}

/// How `pid` ended, if it has (its exit code, or `None` if a signal
/// ended it), without reaping it: waitid(WNOWAIT) leaves it to
/// [`Child::wait`].
fn ended(pid: u32) -> Option<Option<i32>> {
    // SAFETY: an all-zero siginfo_t is valid.
    let mut info: libc::siginfo_t = unsafe { zeroed() };
    // SAFETY: waiting, without reaping, for our own child into `info`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled info (si_pid 0: the child is still running).
    if r != 0 || unsafe { info.si_pid() } == 0 {
        return None;
    }
    // SAFETY: as above; si_status is the exit code when si_code says so.
    Some((info.si_code == libc::CLD_EXITED).then(|| unsafe { info.si_status() }))
}
