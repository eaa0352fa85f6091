//! Reading a DNS answer (RFC 1035): the name that was asked for and the
//! addresses it was answered with, CNAME chains followed back to the
//! question. Input comes off the wire from anyone who can send this
//! machine a datagram from port 53: every read is bounds-checked, name
//! compression may only point backwards, and a message cut short (the
//! kernel keeps 1232 bytes) yields what was read before the cut.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name asked for, lower case, without the final dot.
    pub asked: String,
    /// Each address the name (or a CNAME of it) was answered with, and
    /// for how long (seconds: the least TTL along the chain).
    pub addrs: Vec<(IpAddr, u32)>,
}

/// Why a message is not an answer to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than a header, or cut inside the question.
    #[error("truncated DNS message")]
    Truncated,
    /// A query, not a response.
    #[error("not a DNS response")]
    NotResponse,
    /// An error response (NXDOMAIN, SERVFAIL, ...), or not one question.
    #[error("DNS response without an answer to one question")]
    NoAnswer,
    /// A name that breaks the format (a forward or looping pointer, a
    /// label type that does not exist, longer than 255 bytes).
    #[error("malformed name in DNS message")]
    BadName,
}

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Longest name (RFC 1035 2.3.4).
const NAME_MAX: usize = 255;
/// Most answers read from one message: a real one has a handful.
const ANSWERS_MAX: usize = 64;

/// Reads `msg`, a whole DNS message or its first bytes.
pub fn parse(msg: &[u8]) -> Result<Answer, DnsError> {
    let mut r = Reader { msg, at: 12 };
    if msg.len() < 12 {
        return Err(DnsError::Truncated);
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotResponse);
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    if flags & 0x000f != 0 || qdcount != 1 {
        return Err(DnsError::NoAnswer);
    }
    let asked = r.name()?;
    let (_qtype, qclass) = (r.u16()?, r.u16()?);
    if qclass != CLASS_IN {
        return Err(DnsError::NoAnswer);
    }
    // Records as far as the message goes: a cut one keeps those before.
    let mut cnames: Vec<(String, String, u32)> = Vec::new();
    let mut addrs: Vec<(String, IpAddr, u32)> = Vec::new();
    for _ in 0..usize::from(ancount).min(ANSWERS_MAX) {
        let Ok(rec) = r.record() else {
            break;
        };
        match rec {
            Rec::Cname { owner, target, ttl } => cnames.push((owner, target, ttl)),
            Rec::Addr { owner, addr, ttl } => addrs.push((owner, addr, ttl)),
            Rec::Other => {}
        }
    }
    // The names the question leads to, each with the least TTL on its way
    // (chains are short; a loop ends when nothing new is reached).
    let mut reached: Vec<(String, u32)> = vec![(asked.clone(), u32::MAX)];
    let mut grew = true;
    while grew && reached.len() <= ANSWERS_MAX {
        grew = false;
        for (owner, target, ttl) in &cnames {
            let Some(via) = reached.iter().find(|(n, _)| n == owner).map(|(_, t)| *t) else {
                continue;
            };
            if !reached.iter().any(|(n, _)| n == target) {
                reached.push((target.clone(), via.min(*ttl)));
                grew = true;
            }
        }
    }
    let addrs = addrs
        .into_iter()
        .filter_map(|(owner, addr, ttl)| {
            let via = reached.iter().find(|(n, _)| *n == owner)?.1;
            Some((addr, via.min(ttl)))
        })
        .collect();
    Ok(Answer { asked, addrs })
}

enum Rec {
    Cname {
        owner: String,
        target: String,
        ttl: u32,
    },
    Addr {
        owner: String,
        addr: IpAddr,
        ttl: u32,
    },
    Other,
}

struct Reader<'m> {
    msg: &'m [u8],
    at: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], DnsError> {
        let end = self.at.checked_add(n).ok_or(DnsError::Truncated)?;
        let b = self.msg.get(self.at..end).ok_or(DnsError::Truncated)?;
        self.at = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DnsError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DnsError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The name here; the reader moves past it (past its pointer, if it
    /// ends in one).
    fn name(&mut self) -> Result<String, DnsError> {
        let (name, end) = name_at(self.msg, self.at)?;
        self.at = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Rec, DnsError> {
        let owner = self.name()?;
        let (rtype, class, ttl, len) = (self.u16()?, self.u16()?, self.u32()?, self.u16()?);
        let start = self.at;
        let data = self.bytes(usize::from(len))?;
        // A TTL with its top bit set is to be read as 0 (RFC 2181 8).
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        if class != CLASS_IN {
            return Ok(Rec::Other);
        }
        Ok(match (rtype, data.len()) {
            (TYPE_A, 4) => Rec::Addr {
                owner,
                addr: IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3])),
                ttl,
            },
            (TYPE_AAAA, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(data);
                Rec::Addr {
                    owner,
                    addr: IpAddr::V6(Ipv6Addr::from(a)),
                    ttl,
                }
            }
            (TYPE_CNAME, _) => {
                let (target, _) = name_at(self.msg, start)?;
                Rec::Cname { owner, target, ttl }
            }
            _ => Rec::Other,
        })
    }
}

/// The name at `at` in `msg` and the offset after it. Pointers may only
/// go backwards, so following them ends.
fn name_at(msg: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut end = None;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(at).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg.get(at + 1..at + 1 + len).ok_or(DnsError::Truncated)?;
                wire_len += len + 1;
                if wire_len > NAME_MAX {
                    return Err(DnsError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    // Hostnames are ASCII; anything else is kept visible
                    // as an escape rather than trusted as text.
                    match b {
                        b'!'..=b'~' if b != b'\\' => name.push(char::from(b.to_ascii_lowercase())),
                        _ => name.push_str(&format!("\\{b:03}")),
                    }
                }
                at += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(at + 1).ok_or(DnsError::Truncated)?;
                let to = usize::from(len & 0x3f) << 8 | usize::from(lo);
                if to >= at {
                    return Err(DnsError::BadName);
                }
                end.get_or_insert(at + 2);
                at = to;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DNS response for `asked` with `records` (owner, type, ttl, rdata)
    /// written out plainly (no compression but where a test adds it).
    pub(crate) fn response(
        asked: &str,
        rcode: u8,
        records: &[(&str, u16, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80 | rcode, 0, 1];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend(wire_name(asked));
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, rtype, ttl, data) in records {
            m.extend(wire_name(owner));
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    pub(crate) fn wire_name(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            w.push(label.len() as u8);
            w.extend_from_slice(label.as_bytes());
        }
        w.push(0);
        w
    }

    #[test]
    fn addresses_of_the_name_asked_for() {
        let m = response(
            "Example.ORG",
            0,
            &[
                ("example.org", TYPE_A, 300, vec![93, 184, 216, 34]),
                (
                    "example.org",
                    TYPE_AAAA,
                    60,
                    Ipv6Addr::new(0x2606, 0x2800, 0, 0, 0, 0, 0, 1)
                        .octets()
                        .to_vec(),
                ),
                ("other.org", TYPE_A, 300, vec![1, 2, 3, 4]),
            ],
        );
        let a = parse(&m).expect("an answer");
        assert_eq!(a.asked, "example.org");
        assert_eq!(
            a.addrs,
            [(ip("93.184.216.34"), 300), (ip("2606:2800::1"), 60)]
        );
    }

    #[test]
    fn cname_chains_lead_back_to_the_question_with_their_least_ttl() {
        let m = response(
            "www.shop.example",
            0,
            &[
                (
                    "www.shop.example",
                    TYPE_CNAME,
                    3600,
                    wire_name("shop.cdn.example"),
                ),
                (
                    "shop.cdn.example",
                    TYPE_CNAME,
                    20,
                    wire_name("edge7.cdn.example"),
                ),
                ("edge7.cdn.example", TYPE_A, 300, vec![10, 1, 2, 3]),
            ],
        );
        let a = parse(&m).expect("an answer");
        assert_eq!(a.asked, "www.shop.example");
        assert_eq!(a.addrs, [(ip("10.1.2.3"), 20)]);
    }

    #[test]
    fn compressed_names_are_followed_backwards_only() {
        // The answer's owner points at the question's name (offset 12).
        let mut m = response("a.example", 0, &[]);
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 1]);
        assert_eq!(parse(&m).expect("answer").addrs, [(ip("192.0.2.1"), 9)]);
        // A pointer to itself, or forwards: not a name.
        let mut looped = response("a.example", 0, &[]);
        looped[7] = 1;
        let at = looped.len() as u8;
        looped.extend_from_slice(&[0xc0, at, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 1]);
        assert_eq!(parse(&looped).expect("question read").addrs, []);
        assert_eq!(name_at(&looped, usize::from(at)), Err(DnsError::BadName));
    }

    #[test]
    fn what_is_not_an_answer_is_refused_and_cut_messages_keep_what_came() {
        let m = response(
            "x.example",
            0,
            &[
                ("x.example", TYPE_A, 5, vec![192, 0, 2, 7]),
                ("x.example", TYPE_A, 5, vec![192, 0, 2, 8]),
            ],
        );
        let cut = &m[..m.len() - 2];
        assert_eq!(parse(cut).expect("answer").addrs, [(ip("192.0.2.7"), 5)]);
        let mut query = m.clone();
        query[2] = 0x01;
        assert_eq!(parse(&query), Err(DnsError::NotResponse));
        assert_eq!(
            parse(&response("x.example", 3, &[])),
            Err(DnsError::NoAnswer)
        );
        assert_eq!(parse(&m[..11]), Err(DnsError::Truncated));
        assert_eq!(parse(&m[..14]), Err(DnsError::Truncated));
        // Whatever the bytes, no panic.
        for len in 0..m.len() {
            let _ = parse(&m[..len]);
        }
        let mut noise = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let mut junk = m.clone();
            for b in junk.iter_mut().skip(12) {
                noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if noise >> 28 == 0 {
                    *b = (noise >> 16) as u8;
                }
            }
            let _ = parse(&junk);
        }
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped() {
        let mut m = response("ab.example", 0, &[]);
        m[14] = b' ';
        assert_eq!(parse(&m).expect("answer").asked, "a\\032.example");
    }
}
