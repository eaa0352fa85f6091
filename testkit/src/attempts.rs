//! Attempts that do not go through, each made by a named child process
//! (inside a test's network namespace or scratch cgroup when given), for a
//! test to compare with what leco reports as `blocked` or `failed`: what
//! the program saw ([`Attempt::errno`]) and who it was.
//!
//! Like [`crate::traffic`], the child never prints: it reports numbers to
//! the parent and exits with a code naming the step that failed.

use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::netns::Netns;
use crate::{spawn_named, Child, Parent, ScratchCgroup};

/// What one attempt's child did.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The child's pid.
    pub pid: u32,
    /// Its `comm`.
    pub comm: String,
    /// The errno the program saw last; 0 when no answer came before it gave
    /// up.
    pub errno: i32,
    /// How many of its tries failed (sends that returned an error; packets
    /// sent for a flood).
    pub failed: u32,
}

/// Exit codes of a child: the step that failed.
const ENTER_NETNS: i32 = 10;
const ENTER_CGROUP: i32 = 11;
const SOCKET: i32 = 12;
const SEND: i32 = 13;

/// Where the child runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place<'a> {
    /// A network namespace to enter, else this process's.
    pub netns: Option<&'a Netns>,
    /// A cgroup to enter, else this process's.
    pub cgroup: Option<&'a ScratchCgroup>,
}

impl Place<'_> {
    fn enter(&self) -> Result<(), i32> {
        if let Some(ns) = self.netns {
            ns.enter().map_err(|_| ENTER_NETNS)?;
        }
        if let Some(cg) = self.cgroup {
            cg.enter().map_err(|_| ENTER_CGROUP)?;
        }
        Ok(())
    }
}

/// A TCP connect(2) to `to` that gives up after `give_up`: the errno it
/// failed with (ECONNREFUSED, EHOSTUNREACH, EPERM, ...), or 0 if nothing
/// answered in time. `failed` is 1 unless it connected.
pub fn tcp_connect(comm: &str, at: Place<'_>, to: SocketAddr, give_up: Duration) -> Attempt {
    let child = spawn_named(comm, |p| {
        if let Err(code) = at.enter() {
            return code;
        }
        let errno = match TcpStream::connect_timeout(&to, give_up) {
            Ok(_) => -1,
            // A timeout has no errno of its own: nothing answered.
            Err(e) => e.raw_os_error().unwrap_or(0),
        };
        p.send(errno as u64);
        0
    });
    finish(child, comm, "tcp_connect", |c| {
        let errno = c.try_recv()? as i64 as i32;
        Some((errno.max(0), u32::from(errno >= 0)))
    })
}

/// `count` UDP datagrams of 32 bytes sent to `to` with sendto(2), one every
/// `gap`: the errno of the last that failed, and how many failed.
pub fn udp_sends(comm: &str, at: Place<'_>, to: SocketAddr, count: u32, gap: Duration) -> Attempt {
    let child = spawn_named(comm, |p| {
        if let Err(code) = at.enter() {
            return code;
        }
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("address")
        } else {
            "[::]:0".parse().expect("address")
        };
        let Ok(s) = UdpSocket::bind(any) else {
            return SOCKET;
        };
        let (mut failed, mut errno) = (0u64, 0u64);
        for _ in 0..count {
            if let Err(e) = s.send_to(&[7u8; 32], to) {
                failed += 1;
                errno = e.raw_os_error().unwrap_or(0) as u64;
            }
            std::thread::sleep(gap);
        }
        p.send(errno);
        p.send(failed);
        0
    });
    finish(child, comm, "udp_sends", |c| {
        let errno = c.try_recv()? as i32;
        Some((errno, c.try_recv()? as u32))
    })
}

/// `count` TCP SYNs from `from` (an address of the child's namespace, port
/// included) to `to`, sent as fast as a raw socket takes them: a port scan
/// or a client hammering a blocked service, without the sockets.
pub fn syn_flood(
    comm: &str,
    at: Place<'_>,
    from: SocketAddrV4,
    to: SocketAddrV4,
    count: u32,
) -> Attempt {
    let child = spawn_named(comm, |p: &mut Parent| {
        if let Err(code) = at.enter() {
            return code;
        }
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
        if fd < 0 {
            return SOCKET;
        }
        // SAFETY: fd was just created and is owned here alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let syn = syn_segment(from, to);
        let dst = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(to.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        let mut sent = 0u64;
        for _ in 0..count {
            // SAFETY: syn and dst are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    syn.as_ptr().cast(),
                    syn.len(),
                    0,
                    (&dst as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n != syn.len() as isize {
                return SEND;
            }
            sent += 1;
        }
        p.send(sent);
        0
    });
    finish(child, comm, "syn_flood", |c| {
        Some((0, c.try_recv()? as u32))
    })
}

/// A TCP header with SYN set and its checksum, no options.
fn syn_segment(from: SocketAddrV4, to: SocketAddrV4) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&from.port().to_be_bytes());
    h[2..4].copy_from_slice(&to.port().to_be_bytes());
    h[4..8].copy_from_slice(&ISN.to_be_bytes());
    h[12] = 5 << 4; // data offset: 20 bytes
    h[13] = 0x02; // SYN
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&from.ip().octets());
    pseudo[4..8].copy_from_slice(&to.ip().octets());
    pseudo[8..].copy_from_slice(&[0, libc::IPPROTO_TCP as u8, 0, 20]);
    let sum = crate::traffic::checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// The flood's initial sequence number: it reads as what it is in a
/// capture.
const ISN: u32 = 0x1ec0_0001;

/// Reads the child's report with `read`, waits for it and panics, naming
/// the step, if it failed.
fn finish(
    mut child: Child,
    comm: &str,
    what: &str,
    read: impl FnOnce(&mut Child) -> Option<(i32, u32)>,
) -> Attempt {
    let pid = child.pid();
    let report = read(&mut child);
    let code = child.wait();
    let step = match code {
        0 => None,
        ENTER_NETNS => Some("entering its network namespace"),
        ENTER_CGROUP => Some("entering its cgroup"),
        SOCKET => Some("making its socket"),
        SEND => Some("sending"),
        _ => Some("an unknown step"),
    };
    if let Some(step) = step {
        panic!("{what}: the child {comm} (pid {pid}) failed {step} (exit code {code})");
    }
    let Some((errno, failed)) = report else {
        panic!("{what}: the child {comm} (pid {pid}) exited without its report");
    };
    Attempt {
        pid,
        comm: comm.chars().take(15).collect(),
        errno,
        failed,
    }
}
