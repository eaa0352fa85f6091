//! Traffic patterns that once broke leco's bookkeeping (issue 16, "Hold
//! under abuse"), made on loopback by two named children so that a test can
//! tell their flows from everyone else's on a shared machine.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::{spawn_named, Child};

/// A server child and a client child talking over 127.0.0.1.
#[derive(Debug)]
pub struct Pair {
    /// The accepting side.
    pub server: Child,
    /// The connecting side.
    pub client: Child,
}

impl Pair {
    /// Waits for both children; their exit codes, server first (0: all
    /// went as the pattern means).
    pub fn wait(self) -> (i32, i32) {
        let server = self.server.wait();
        (server, self.client.wait())
    }
}

/// Starts a server child named `name` on a fresh 127.0.0.1 port running
/// `serve`, and returns it with that port.
fn server(name: &str, serve: impl FnOnce(&TcpListener) -> i32) -> (Child, u16) {
    let mut child = spawn_named(name, |p| {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            return 1;
        };
        p.send(u64::from(l.local_addr().map(|a| a.port()).unwrap_or(0)));
        serve(&l)
    });
    let port = child.recv() as u16;
    (child, port)
}

/// The stale keep-alive, `times` over: the server child accepts each
/// connection and closes it at once; the client child waits for that
/// close (the FIN), then sends a request on the dead connection, as an HTTP
/// client reusing an idle connection does. The peer answers with a reset,
/// which closes the client's socket inside that very write.
pub fn stale_keep_alive(server_name: &str, client_name: &str, times: usize) -> Pair {
    let (server, port) = server(server_name, |l| {
        for _ in 0..times {
            if l.accept().is_err() {
                return 2;
            }
        }
        0
    });
    let client = spawn_named(client_name, move |_| {
        for _ in 0..times {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return 2;
            };
            if !matches!(s.read(&mut [0u8; 1]), Ok(0)) {
                return 3;
            }
            if s.write(b"GET / HTTP/1.1\r\n\r\n").is_err() {
                return 4;
            }
        }
        0
    });
    Pair { server, client }
}

/// `n` connections open at the same time: the client child connects them
/// all, then (with `write_each`) writes one byte on each, which the server
/// child reads, then closes them all; the server closes its ends on EOF.
/// Both hold `n` sockets at once, so `n` must stay below their descriptor
/// limit (`ulimit -n`).
pub fn held_connections(server_name: &str, client_name: &str, n: usize, write_each: bool) -> Pair {
    let (server, port) = server(server_name, |l| {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => return 2,
            }
        }
        if write_each
            && held
                .iter_mut()
                .any(|s| s.read_exact(&mut [0u8; 1]).is_err())
        {
            return 3;
        }
        let mut rest = Vec::new();
        if held.iter_mut().any(|s| s.read_to_end(&mut rest).is_err()) {
            return 4;
        }
        0
    });
    let client = spawn_named(client_name, move |_| {
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => held.push(s),
                Err(_) => return 2,
            }
        }
        if write_each && held.iter_mut().any(|s| s.write_all(b"x").is_err()) {
            return 3;
        }
        0
    });
    Pair { server, client }
}
