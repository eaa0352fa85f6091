//! systemd-resolved's own account of the lookups it answers (`name_source`
//! `resolved`): its monitor interface (varlink, `io.systemd.Resolve.Monitor`
//! on a root-only socket) reports every lookup made through it, cache hits
//! included, with the name asked for and the addresses answered. Programs
//! that ask resolved over D-Bus or varlink (nss-resolve) send nothing on the
//! wire that leco could read; this is where their names come from.
//!
//! Who connects: `--standalone` (root) connects itself, and again after
//! resolved restarts. The unit's unprivileged `run` cannot, so the root
//! `load` step subscribes and hands the connection over in systemd's
//! descriptor store ([`FDSTORE_NAME`]); when resolved restarts, that
//! connection ends, and `run` exits to be started again (status 75: systemd
//! restarts it, `load` subscribes anew, the kernel's state is kept). Pins
//! cannot carry a connection: `run --pin` follows resolved only if it may
//! connect itself.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Where resolved listens.
pub const MONITOR_SOCKET: &str = "/run/systemd/resolve/io.systemd.Resolve.Monitor";

/// The name `load` stores the subscribed connection under.
pub const FDSTORE_NAME: &str = "leco-resolved";

/// The name `load` stores resolved's cache (a memfd of `DumpCache`'s
/// reply) under, for `run` to start warm.
pub const CACHE_FDSTORE_NAME: &str = "leco-resolved-cache";

/// Asks for resolved's cache: what it looked up before leco started.
/// systemd 254 and later; older ones answer MethodNotFound.
pub const DUMP_CACHE: &[u8] = b"{\"method\":\"io.systemd.Resolve.Monitor.DumpCache\"}\0";

/// A cache dump longer than this is not read (a few thousand names).
const DUMP_MAX: usize = 4 << 20;

/// The subscription, as sent (varlink messages end in a NUL byte).
pub const SUBSCRIBE: &[u8] =
    b"{\"method\":\"io.systemd.Resolve.Monitor.SubscribeQueryResults\",\"more\":true}\0";

/// A message longer than this ends the connection: resolved's are a few
/// KiB, and nothing it sends may make the service grow.
const MESSAGE_MAX: usize = 1 << 20;

/// Waits between attempts to connect, doubling up to the last.
const BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// A lookup resolved answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The name asked for, lower case, without the final dot.
    pub name: String,
    /// The addresses answered, each with its TTL in seconds (0 if not
    /// told).
    pub addrs: Vec<(IpAddr, u32)>,
}

/// What the follower tells the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// Following resolved, whose sockets are in this cgroup: the answers
    /// they receive on the wire are resolved's to tell, as it does below.
    Following { cgroup_id: Option<u64> },
    /// A lookup.
    Lookup(Lookup),
    /// No longer following: the wire is again the only source.
    Lost,
}

/// One message from resolved, read.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A lookup that found addresses.
    Lookup(Lookup),
    /// Anything else: the first reply, a failed lookup, one without
    /// addresses.
    Other,
}

/// Why a message is not one to read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("resolved refused the subscription: {0}")]
    Refused(String),
}

/// Reads one message (without its NUL).
pub fn parse(message: &[u8]) -> Result<Reply, ReplyError> {
    let v: Value = serde_json::from_slice(message)?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(ReplyError::Refused(e.to_owned()));
    }
    let p = &v["parameters"];
    if p["state"] != "success" {
        return Ok(Reply::Other);
    }
    let Some(asked) = p["question"]
        .as_array()
        .and_then(|q| q.first())
        .and_then(|k| k["name"].as_str())
    else {
        return Ok(Reply::Other);
    };
    let addrs: Vec<(IpAddr, u32)> = p["answer"]
        .as_array()
        .map(|answers| {
            answers
                .iter()
                .filter_map(|a| {
                    let addr = address(&a["rr"])?;
                    let ttl = a["raw"].as_str().and_then(raw_ttl).unwrap_or(0);
                    Some((addr, ttl))
                })
                .collect()
        })
        .unwrap_or_default();
    if addrs.is_empty() {
        return Ok(Reply::Other);
    }
    Ok(Reply::Lookup(Lookup {
        name: asked.trim_end_matches('.').to_ascii_lowercase(),
        addrs,
    }))
}

/// The address of an A or AAAA record (`address`: its bytes as numbers).
fn address(rr: &Value) -> Option<IpAddr> {
    let bytes: Vec<u8> = rr["address"]
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect::<Option<_>>()?;
    match (rr["key"]["type"].as_u64(), bytes.len()) {
        (Some(1), 4) => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        (Some(28), 16) => {
            let b: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The TTL of a record in wire form (base64): after its owner name, type
/// and class.
fn raw_ttl(b64: &str) -> Option<u32> {
    let wire = base64_decode(b64)?;
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            at += 2;
            break;
        }
        at += 1 + len;
    }
    let ttl = wire.get(at + 4..at + 8)?;
    Some(u32::from_be_bytes(ttl.try_into().ok()?))
}

/// Standard base64 with padding, as resolved writes it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

/// The names in resolved's cache (a `DumpCache` reply): each address by
/// the name it was asked by, a CNAME chain followed back to its start.
pub fn parse_cache(message: &[u8]) -> Result<Vec<Lookup>, ReplyError> {
    let v: Value = serde_json::from_slice(message)?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(ReplyError::Refused(e.to_owned()));
    }
    let mut aliased: std::collections::HashMap<String, String> = Default::default();
    let mut found: Vec<(String, IpAddr, u32)> = Vec::new();
    let lower = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    let entries = v["parameters"]["dump"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|scope| scope["cache"].as_array().into_iter().flatten());
    for entry in entries {
        for r in entry["rrs"].as_array().into_iter().flatten() {
            let rr = &r["rr"];
            let Some(owner) = rr["key"]["name"].as_str().map(lower) else {
                continue;
            };
            if rr["key"]["type"] == 5 {
                if let Some(target) = rr["name"].as_str() {
                    aliased.insert(lower(target), owner);
                }
            } else if let Some(addr) = address(rr) {
                let ttl = r["raw"].as_str().and_then(raw_ttl).unwrap_or(0);
                found.push((owner, addr, ttl));
            }
        }
    }
    let mut by_name: std::collections::BTreeMap<String, Vec<(IpAddr, u32)>> = Default::default();
    for (owner, addr, ttl) in found {
        let mut name = owner;
        // Bounded: a loop of aliases ends too.
        for _ in 0..8 {
            match aliased.get(&name) {
                Some(from) => name = from.clone(),
                None => break,
            }
        }
        by_name.entry(name).or_default().push((addr, ttl));
    }
    Ok(by_name
        .into_iter()
        .map(|(name, addrs)| Lookup { name, addrs })
        .collect())
}

/// Asks resolved at `path` for its cache, blocking: the reply's bytes.
pub fn dump_cache_blocking(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let mut c = StdUnixStream::connect(path)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(DUMP_CACHE)?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = c.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no reply"));
        }
        reply.extend_from_slice(&chunk[..n]);
        if let Some(end) = reply.iter().position(|&b| b == 0) {
            reply.truncate(end);
            return Ok(reply);
        }
        if reply.len() > DUMP_MAX {
            return Err(io::Error::other(format!("a reply past {DUMP_MAX} bytes")));
        }
    }
}

/// Where the follower's connection comes from.
#[derive(Debug)]
pub enum Start {
    /// Connect to this socket (again after each loss), subscribe, then ask
    /// for its cache.
    Connect(PathBuf),
    /// A connection `load` subscribed, from systemd's descriptor store,
    /// and the cache it dumped, if it could; after the connection ends,
    /// connect to [`MONITOR_SOCKET`] if allowed.
    Stored(StdUnixStream, Option<Vec<u8>>),
}

/// How following ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The monitor is gone, or this process may not follow resolved.
    Unheard,
    /// The connection `load` made ended, resolved is back, and only root
    /// may connect: a new `load` must subscribe again.
    NeedsRoot,
}

/// Follows resolved from `start`, telling `tx`, until the monitor goes or
/// only a new subscription by root would do.
pub async fn follow(start: Start, tx: mpsc::Sender<News>) -> Ended {
    let path = match &start {
        Start::Connect(p) => p.clone(),
        Start::Stored(..) => PathBuf::from(MONITOR_SOCKET),
    };
    let (mut stored, mut dumped) = match start {
        Start::Stored(s, dump) => (Some(s), dump),
        Start::Connect(_) => (None, None),
    };
    let had_stored = stored.is_some();
    let mut attempt = 0usize;
    let mut told_waiting = false;
    loop {
        let conn = match stored.take() {
            Some(s) => s
                .set_nonblocking(true)
                .and_then(|()| UnixStream::from_std(s)),
            None => {
                // Subscribed first: nothing looked up meanwhile is missed.
                let c = subscribe(&path).await;
                if c.is_ok() {
                    dumped = dump_cache(&path).await;
                }
                c
            }
        };
        match conn {
            Ok(c) => {
                attempt = 0;
                told_waiting = false;
                let cgroup = peer_cgroup(&c);
                let cgroup_id = cgroup.as_ref().ok().copied();
                if tx.send(News::Following { cgroup_id }).await.is_err() {
                    return Ended::Unheard;
                }
                if let Some(dump) = dumped.take() {
                    match parse_cache(&dump) {
                        Ok(lookups) => {
                            tracing::debug!(
                                "{} names from systemd-resolved's cache",
                                lookups.len()
                            );
                            for l in lookups {
                                if tx.send(News::Lookup(l)).await.is_err() {
                                    return Ended::Unheard;
                                }
                            }
                        }
                        // systemd before 254 has no DumpCache.
                        Err(e) => tracing::debug!("systemd-resolved's cache: {e}"),
                    }
                }
                match cgroup {
                    Ok(id) => tracing::info!(
                        "following systemd-resolved's lookups ({}; the DNS answers its cgroup {id} \
                         receives are left to it)",
                        path.display()
                    ),
                    Err(why) => tracing::info!(
                        "following systemd-resolved's lookups ({}; its cgroup is unknown ({why}), \
                         so the DNS answers it receives name connections too)",
                        path.display()
                    ),
                }
                let why = read(c, &tx).await;
                if tx.is_closed() || tx.send(News::Lost).await.is_err() {
                    return Ended::Unheard;
                }
                tracing::warn!("systemd-resolved's monitor connection ended ({why}); names from DNS answers on the wire only until it is back");
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && had_stored => {
                // Resolved is back, and this process may not subscribe.
                return Ended::NeedsRoot;
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::info!(
                    "not following systemd-resolved's lookups: {} is root's only (the unit's \
                     `load` step subscribes for `run`; with --pin, it cannot)",
                    path.display()
                );
                return Ended::Unheard;
            }
            Err(e) => {
                // Debian's default has no resolved: not worth a line.
                if !told_waiting {
                    tracing::debug!(
                        "systemd-resolved's monitor is not there ({}: {e}); looking again now \
                         and then",
                        path.display()
                    );
                    told_waiting = true;
                }
            }
        }
        tokio::time::sleep(BACKOFF[attempt.min(BACKOFF.len() - 1)]).await;
        attempt += 1;
        if tx.is_closed() {
            return Ended::Unheard;
        }
    }
}

/// Asks for resolved's cache on a connection of its own.
async fn dump_cache(path: &Path) -> Option<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || dump_cache_blocking(&path))
        .await
        .ok()?
        .ok()
}

/// Connects to `path` and subscribes.
async fn subscribe(path: &Path) -> io::Result<UnixStream> {
    let mut c = UnixStream::connect(path).await?;
    c.write_all(SUBSCRIBE).await?;
    Ok(c)
}

/// Connects to resolved's monitor and subscribes, blocking: `load`'s
/// connection for `run`.
pub fn subscribe_blocking(path: &Path) -> io::Result<StdUnixStream> {
    use std::io::Write;
    let mut c = StdUnixStream::connect(path)?;
    c.write_all(SUBSCRIBE)?;
    Ok(c)
}

/// Reads messages until the connection ends; why it did.
async fn read(mut c: UnixStream, tx: &mpsc::Sender<News>) -> String {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let n = match c.read(&mut chunk).await {
            Ok(0) => return "end of stream".into(),
            Ok(n) => n,
            Err(e) => return e.to_string(),
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|&b| b == 0) {
            match parse(&buf[..end]) {
                Ok(Reply::Lookup(l)) => {
                    if tx.send(News::Lookup(l)).await.is_err() {
                        return "the service is stopping".into();
                    }
                }
                Ok(Reply::Other) => {}
                Err(e @ ReplyError::Refused(_)) => return e.to_string(),
                Err(e) => tracing::debug!("systemd-resolved: {e}"),
            }
            buf.drain(..=end);
        }
        if buf.len() > MESSAGE_MAX {
            return format!("a message past {MESSAGE_MAX} bytes");
        }
    }
}

/// The cgroup of the process at the other end of `c` (resolved's): its
/// sockets' DNS answers are the ones it reports itself.
fn peer_cgroup(c: &UnixStream) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let cred = c.peer_cred().map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let pid = cred.pid().ok_or("SO_PEERCRED: no pid")?;
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| format!("{file}: no cgroup v2 line"))?;
    // Where cgroup v2 is mounted: /sys/fs/cgroup, or .../unified on a
    // hybrid hierarchy.
    let root = leco_bpf::cgroup2_root().ok_or("no cgroup v2 mount")?;
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::metadata(&dir)
        .map(|m| m.ino())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as systemd 252 sends one for `resolvectl query` of a name
    /// behind a CNAME (the A record's raw form: owner, type 1, class 1,
    /// TTL 300, 4 bytes).
    fn success() -> String {
        let owner = b"\x04edge\x03cdn\x04leco\x04test\x00";
        let mut raw = owner.to_vec();
        raw.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 8]);
        let raw = base64_encode(&raw);
        format!(
            r#"{{"parameters":{{"state":"success","question":[{{"class":1,"type":1,"name":"WWW.leco.test."}}],"collectedQuestions":[{{"class":1,"type":1,"name":"www.leco.test"}},{{"class":1,"type":1,"name":"edge.cdn.leco.test"}}],"answer":[{{"rr":{{"key":{{"class":1,"type":5,"name":"www.leco.test"}},"name":"edge.cdn.leco.test"}},"raw":"AAAA","ifindex":1}},{{"rr":{{"key":{{"class":1,"type":1,"name":"edge.cdn.leco.test"}},"address":[198,51,100,8]}},"raw":"{raw}","ifindex":1}},{{"rr":{{"key":{{"class":1,"type":28,"name":"edge.cdn.leco.test"}},"address":[32,1,13,184,0,0,0,0,0,0,0,0,0,0,0,8]}},"raw":"","ifindex":1}}]}},"continues":true}}"#
        )
    }

    fn base64_encode(b: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn a_lookup_names_its_addresses_by_the_name_asked() {
        let Reply::Lookup(l) = parse(success().as_bytes()).expect("parses") else {
            panic!("not a lookup");
        };
        assert_eq!(l.name, "www.leco.test");
        assert_eq!(
            l.addrs,
            [
                ("198.51.100.8".parse().expect("v4"), 300),
                ("2001:db8::8".parse().expect("v6"), 0),
            ]
        );
    }

    #[test]
    fn other_replies_name_nothing() {
        for other in [
            r#"{"parameters":{"ready":true},"continues":true}"#,
            r#"{"parameters":{"state":"rcode-failure","rcode":3,"question":[{"class":1,"type":1,"name":"no.leco.test"}]},"continues":true}"#,
            r#"{"parameters":{"state":"success","question":[{"class":1,"type":16,"name":"txt.leco.test"}],"answer":[{"rr":{"key":{"class":1,"type":16,"name":"txt.leco.test"},"items":["x"]},"raw":""}]},"continues":true}"#,
        ] {
            assert_eq!(parse(other.as_bytes()).expect("parses"), Reply::Other);
        }
        assert!(matches!(
            parse(br#"{"error":"org.varlink.service.MethodNotFound","parameters":{}}"#),
            Err(ReplyError::Refused(_))
        ));
        assert!(parse(b"{").is_err());
    }

    #[test]
    fn the_cache_names_addresses_by_the_start_of_their_chain() {
        let dump = r#"{"parameters":{"dump":[{"protocol":"dns","ifindex":2,"cache":[
            {"key":{"class":1,"type":5,"name":"www.leco.test"},"rrs":[{"rr":{"key":{"class":1,"type":5,"name":"www.leco.test"},"name":"edge.cdn.leco.test."},"raw":""}],"until":1},
            {"key":{"class":1,"type":1,"name":"edge.cdn.leco.test"},"rrs":[{"rr":{"key":{"class":1,"type":1,"name":"edge.cdn.leco.test"},"address":[198,51,100,8]},"raw":""}],"until":1},
            {"key":{"class":1,"type":1,"name":"Web.leco.test"},"rrs":[{"rr":{"key":{"class":1,"type":1,"name":"Web.leco.test"},"address":[198,51,100,7]},"raw":""}],"until":1},
            {"key":{"class":1,"type":1,"name":"gone.leco.test"},"type":"NXDOMAIN","until":1},
            {"key":{"class":1,"type":5,"name":"a.loop"},"rrs":[{"rr":{"key":{"class":1,"type":5,"name":"a.loop"},"name":"b.loop"},"raw":""}],"until":1},
            {"key":{"class":1,"type":5,"name":"b.loop"},"rrs":[{"rr":{"key":{"class":1,"type":5,"name":"b.loop"},"name":"a.loop"},"raw":""},{"rr":{"key":{"class":1,"type":1,"name":"b.loop"},"address":[198,51,100,9]},"raw":""}],"until":1}
        ]}]}}"#;
        let got = parse_cache(dump.as_bytes()).expect("parses");
        let names: Vec<(&str, Vec<IpAddr>)> = got
            .iter()
            .map(|l| (l.name.as_str(), l.addrs.iter().map(|a| a.0).collect()))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&("www.leco.test", vec!["198.51.100.8".parse().expect("v4")])));
        assert!(names.contains(&("web.leco.test", vec!["198.51.100.7".parse().expect("v4")])));
        assert!(
            names
                .iter()
                .any(|(n, a)| n.ends_with(".loop") && a.len() == 1),
            "a loop of aliases still ends: {names:?}"
        );
        assert!(matches!(
            parse_cache(br#"{"error":"org.varlink.service.MethodNotFound","parameters":{}}"#),
            Err(ReplyError::Refused(_))
        ));
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)), Some(data));
        }
        assert_eq!(base64_decode("A"), None);
        assert_eq!(base64_decode("!!!!"), None);
    }

    #[tokio::test]
    async fn follows_a_monitor_socket_and_reconnects_after_it_goes() {
        let dir = std::env::temp_dir().join(format!("leco-resolved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("monitor");
        let (tx, mut rx) = mpsc::channel(16);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let follower = tokio::spawn(follow(Start::Connect(path.clone()), tx));
        for round in 0..2 {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut asked = vec![0u8; SUBSCRIBE.len()];
            s.read_exact(&mut asked).await.expect("subscription");
            assert_eq!(asked, SUBSCRIBE, "round {round}");
            // Then the cache, on a connection of its own: systemd 252 has
            // no DumpCache, a newer one answers it.
            let (mut d, _) = listener.accept().await.expect("accept");
            let mut asked = vec![0u8; DUMP_CACHE.len()];
            d.read_exact(&mut asked).await.expect("dump");
            assert_eq!(asked, DUMP_CACHE, "round {round}");
            let reply: &[u8] = if round == 0 {
                b"{\"error\":\"org.varlink.service.MethodNotFound\",\"parameters\":{}}\0"
            } else {
                b"{\"parameters\":{\"dump\":[{\"protocol\":\"dns\",\"cache\":[{\"key\":{\"class\":1,\"type\":1,\"name\":\"old.leco.test\"},\"rrs\":[{\"rr\":{\"key\":{\"class\":1,\"type\":1,\"name\":\"old.leco.test\"},\"address\":[198,51,100,1]},\"raw\":\"\"}],\"until\":1}]}]}}\0"
            };
            d.write_all(reply).await.expect("dump reply");
            assert!(matches!(rx.recv().await, Some(News::Following { .. })));
            if round == 1 {
                let Some(News::Lookup(l)) = rx.recv().await else {
                    panic!("the cache's names first");
                };
                assert_eq!(l.name, "old.leco.test");
            }
            let mut msg = success().into_bytes();
            msg.push(0);
            s.write_all(&msg).await.expect("send");
            let Some(News::Lookup(l)) = rx.recv().await else {
                panic!("no lookup");
            };
            assert_eq!(l.name, "www.leco.test");
            drop(s);
            assert_eq!(rx.recv().await, Some(News::Lost));
        }
        drop(rx);
        drop(listener);
        let _ = std::fs::remove_file(&path);
        assert_eq!(follower.await.expect("follower"), Ended::Unheard);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
