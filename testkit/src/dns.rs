//! A DNS server and client for tests, inside a network namespace the test
//! made: [`Responder`] answers A, AAAA and CNAME queries from a fixed zone
//! over UDP and TCP on port 53 of the namespace's 127.0.0.1, with chosen
//! TTLs; [`resolve`] is a program's own stub resolver (plain queries, as a
//! program that bypasses the system's resolver sends them); [`Sink`]
//! accepts every TCP connection in the namespace, to any of its addresses.
//! Written plainly (no name compression), independently of the service's
//! reader, so that one checks the other.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns;

/// One record of a zone.
#[derive(Debug, Clone)]
pub enum Rec {
    /// An IPv4 address, with its TTL.
    A(Ipv4Addr, u32),
    /// An IPv6 address, with its TTL.
    Aaaa(Ipv6Addr, u32),
    /// Another name, with its TTL.
    Cname(String, u32),
}

/// Names and their records.
pub type Zone = Vec<(String, Rec)>;

/// A query's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    /// IPv4 addresses.
    A = 1,
    /// IPv6 addresses.
    Aaaa = 28,
}

/// How a query goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// One datagram each way.
    Udp,
    /// A TCP connection, length-prefixed messages.
    Tcp,
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The name at `at` (uncompressed) and the offset after it.
fn read_name(m: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = usize::from(*m.get(at)?);
        if len == 0 {
            return Some((name, at + 1));
        }
        if len & 0xc0 != 0 {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(m.get(at + 1..at + 1 + len)?).ok()?);
        at += 1 + len;
    }
}

/// The query for `name` of type `qtype`, id `id`.
pub fn query(id: u16, name: &str, qtype: Qtype) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    put_name(&mut q, name);
    q.extend_from_slice(&(qtype as u16).to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// The response of `zone` to `q`: the CNAME chain from the name asked
/// for, then its records of the type asked; NXDOMAIN for a name it lacks.
fn respond(zone: &Zone, q: &[u8]) -> Option<Vec<u8>> {
    let (asked, end) = read_name(q, 12)?;
    let qtype = u16::from_be_bytes([*q.get(end)?, *q.get(end + 1)?]);
    let mut answers = Vec::new();
    let mut name = asked.to_ascii_lowercase();
    for _ in 0..8 {
        let mut next = None;
        for (owner, rec) in zone.iter().filter(|(o, _)| o.eq_ignore_ascii_case(&name)) {
            match rec {
                Rec::Cname(to, _) => next = Some(to.clone()),
                Rec::A(_, _) if qtype == Qtype::A as u16 => {}
                Rec::Aaaa(_, _) if qtype == Qtype::Aaaa as u16 => {}
                _ => continue,
            }
            answers.push((owner.clone(), rec.clone()));
        }
        match next {
            Some(n) => name = n,
            None => break,
        }
    }
    let mut r = q[..2].to_vec();
    let rcode = if answers.is_empty() { 3 } else { 0 };
    r.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1]);
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end + 4]);
    for (owner, rec) in answers {
        put_name(&mut r, &owner);
        let (rtype, ttl, data) = match rec {
            Rec::A(a, ttl) => (1u16, ttl, a.octets().to_vec()),
            Rec::Aaaa(a, ttl) => (28, ttl, a.octets().to_vec()),
            Rec::Cname(to, ttl) => {
                let mut d = Vec::new();
                put_name(&mut d, &to);
                (5, ttl, d)
            }
        };
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&[0, 1]);
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(data.len() as u16).to_be_bytes());
        r.extend_from_slice(&data);
    }
    Some(r)
}

/// The addresses in response `r` (its A and AAAA records).
fn addresses(r: &[u8]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let Some((_, mut at)) = read_name(r, 12) else {
        return out;
    };
    at += 4;
    let count = r.get(6..8).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
    for _ in 0..count {
        let Some((_, end)) = read_name(r, at) else {
            break;
        };
        let Some(h) = r.get(end..end + 10) else {
            break;
        };
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[8], h[9]]));
        let Some(data) = r.get(end + 10..end + 10 + len) else {
            break;
        };
        match (rtype, len) {
            (1, 4) => out.push(IpAddr::from(<[u8; 4]>::try_from(data).expect("4 bytes"))),
            (28, 16) => out.push(IpAddr::from(<[u8; 16]>::try_from(data).expect("16 bytes"))),
            _ => {}
        }
        at = end + 10 + len;
    }
    out
}

/// Asks `server` for `name`'s addresses of type `qtype`, as a program's own
/// stub resolver does: the addresses answered (none for NXDOMAIN).
pub fn resolve(server: SocketAddr, name: &str, qtype: Qtype, via: Via) -> io::Result<Vec<IpAddr>> {
    let q = query(0x5eed, name, qtype);
    let timeout = Some(Duration::from_secs(5));
    let r = match via {
        Via::Udp => {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            s.set_read_timeout(timeout)?;
            s.send_to(&q, server)?;
            let mut buf = vec![0u8; 4096];
            let n = s.recv(&mut buf)?;
            buf.truncate(n);
            buf
        }
        Via::Tcp => {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            s.set_read_timeout(timeout)?;
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            s.write_all(&framed)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf)?;
            buf
        }
    };
    Ok(addresses(&r))
}

/// Threads of a test server inside a namespace, stopped when dropped.
#[derive(Debug)]
struct Server {
    stop: Arc<AtomicBool>,
    wake: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    ns: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked threads, from inside their namespace.
        let wake = self.wake.clone();
        let ns = self.ns.clone();
        let _ = std::thread::spawn(move || {
            if netns::join(&ns).is_ok() {
                for a in wake {
                    let _ =
                        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|s| s.send_to(b"", a));
                    let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
                }
            }
        })
        .join();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A DNS server on 127.0.0.1:53 of a namespace, UDP and TCP.
#[derive(Debug)]
pub struct Responder {
    _server: Server,
}

impl Responder {
    /// Starts answering from `zone` in namespace `ns` (its name).
    pub fn start(ns: &str, zone: Zone) -> Responder {
        Responder::start_on(ns, zone, None)
    }

    /// As [`Responder::start`], its UDP answers sent from CPU `cpu` at a
    /// real-time priority: from a CPU of its own, an answer can reach the
    /// asking socket before the asker's send call has returned.
    pub fn start_pinned(ns: &str, zone: Zone, cpu: usize) -> Responder {
        Responder::start_on(ns, zone, Some(cpu))
    }

    fn start_on(ns: &str, zone: Zone, cpu: Option<usize>) -> Responder {
        let zone = Arc::new(zone);
        let stop = Arc::new(AtomicBool::new(false));
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        let (ready_tx, ready) = mpsc::channel::<io::Result<()>>();
        let mut threads = Vec::new();
        for via in [Via::Udp, Via::Tcp] {
            let (zone, stop, ready_tx, name) =
                (zone.clone(), stop.clone(), ready_tx.clone(), ns.to_owned());
            threads.push(std::thread::spawn(move || {
                if let Err(e) = netns::join(&name) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                match via {
                    Via::Udp => {
                        if let Some(cpu) = cpu {
                            if let Err(e) =
                                crate::pin_to_cpu(cpu).and_then(|()| crate::make_realtime())
                            {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                        let s = match UdpSocket::bind(addr) {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        let mut buf = [0u8; 1500];
                        while !stop.load(Ordering::SeqCst) {
                            let Ok((n, from)) = s.recv_from(&mut buf) else {
                                continue;
                            };
                            if let Some(r) = respond(&zone, &buf[..n]) {
                                let _ = s.send_to(&r, from);
                            }
                        }
                    }
                    Via::Tcp => {
                        let l = match TcpListener::bind(addr) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        };
                        let _ = ready_tx.send(Ok(()));
                        for c in l.incoming() {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let Ok(mut c) = c else {
                                continue;
                            };
                            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                            let mut len = [0u8; 2];
                            if c.read_exact(&mut len).is_err() {
                                continue;
                            }
                            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if c.read_exact(&mut q).is_err() {
                                continue;
                            }
                            if let Some(r) = respond(&zone, &q) {
                                let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                                framed.extend_from_slice(&r);
                                let _ = c.write_all(&framed);
                            }
                        }
                    }
                }
            }));
        }
        for _ in 0..2 {
            ready
                .recv_timeout(Duration::from_secs(10))
                .expect("the DNS responder's threads started")
                .unwrap_or_else(|e| panic!("DNS responder in {ns}: {e}"));
        }
        Responder {
            _server: Server {
                stop,
                wake: vec![addr],
                threads,
                ns: ns.to_owned(),
            },
        }
    }
}

/// Accepts every TCP connection to port [`Sink::port`] of any address of a
/// namespace (IPv4 and IPv6) and holds it open until dropped.
#[derive(Debug)]
pub struct Sink {
    port: u16,
    _server: Server,
}

impl Sink {
    /// Starts accepting in namespace `ns`.
    pub fn start(ns: &str) -> Sink {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = mpsc::channel::<io::Result<u16>>();
        let (stop2, name) = (stop.clone(), ns.to_owned());
        let thread = std::thread::spawn(move || {
            if let Err(e) = netns::join(&name) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            // Dual-stack: IPv4 peers arrive IPv4-mapped.
            let l = match TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(l.local_addr().map(|a| a.port()));
            let mut held = Vec::new();
            for c in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = c {
                    held.push(c);
                }
            }
        });
        let port = ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the sink's thread started")
            .unwrap_or_else(|e| panic!("TCP sink in {ns}: {e}"));
        Sink {
            port,
            _server: Server {
                stop,
                wake: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
                threads: vec![thread],
                ns: ns.to_owned(),
            },
        }
    }

    /// The port it accepts on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_answers_chains_and_nothing_for_unknown_names() {
        let zone: Zone = vec![
            ("www.t".into(), Rec::Cname("edge.t".into(), 60)),
            ("edge.t".into(), Rec::A(Ipv4Addr::new(192, 0, 2, 1), 5)),
            ("edge.t".into(), Rec::Aaaa(Ipv6Addr::LOCALHOST, 5)),
        ];
        let r = respond(&zone, &query(7, "WWW.t", Qtype::A)).expect("a response");
        assert_eq!(addresses(&r), [IpAddr::from([192, 0, 2, 1])]);
        assert_eq!(&r[..2], &7u16.to_be_bytes());
        let r6 = respond(&zone, &query(7, "www.t", Qtype::Aaaa)).expect("a response");
        assert_eq!(addresses(&r6), [IpAddr::from(Ipv6Addr::LOCALHOST)]);
        let nx = respond(&zone, &query(7, "nope.t", Qtype::A)).expect("a response");
        assert_eq!(nx[3] & 0xf, 3);
        assert!(addresses(&nx).is_empty());
    }
}
