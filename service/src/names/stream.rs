//! DNS over TCP: each message is its 2-byte length then the message
//! (RFC 1035 4.2.2), in segments the kernel sends up one at a time with
//! their sequence numbers. A stream is followed from the first segment
//! seen (the server's first bytes are a message's start); a duplicate is
//! skipped, a gap starts the stream over. Bounded in streams and bytes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Streams followed at once; the least recently fed goes first.
const STREAMS_MAX: usize = 256;
/// Bytes held per stream: a message (with its length) longer than this
/// is skipped, not read (answers that long name hundreds of addresses,
/// and 256 streams of 64 KiB would hold 16 MiB).
const BUFFER_MAX: usize = 8 << 10;
/// A stream quiet this long is forgotten.
pub const STREAM_IDLE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Stream {
    next_seq: u32,
    buf: Vec<u8>,
    /// Bytes still to pass over: the rest of a message too long to hold.
    skip: usize,
    fed: Instant,
}

/// The DNS-over-TCP streams being read, by socket.
#[derive(Debug, Default)]
pub struct Streams {
    by_cookie: HashMap<u64, Stream>,
}

impl Streams {
    /// Segment `bytes` of socket `cookie`'s stream, at sequence number
    /// `seq`, arrived; the messages it completes.
    pub fn segment(&mut self, cookie: u64, seq: u32, bytes: &[u8], now: Instant) -> Vec<Vec<u8>> {
        if !self.by_cookie.contains_key(&cookie) && self.by_cookie.len() >= STREAMS_MAX {
            if let Some(oldest) = self
                .by_cookie
                .iter()
                .min_by_key(|(_, s)| s.fed)
                .map(|(c, _)| *c)
            {
                self.by_cookie.remove(&oldest);
            }
        }
        let s = self.by_cookie.entry(cookie).or_insert_with(|| Stream {
            next_seq: seq,
            buf: Vec::new(),
            skip: 0,
            fed: now,
        });
        s.fed = now;
        let ahead = seq.wrapping_sub(s.next_seq) as i32;
        let fresh = if ahead == 0 {
            bytes
        } else if ahead < 0 {
            // Sent again: only what goes past what was had is new.
            let overlap = ahead.unsigned_abs() as usize;
            bytes.get(overlap..).unwrap_or(&[])
        } else {
            // A gap (a segment this side never saw): start over here.
            s.buf.clear();
            s.skip = 0;
            bytes
        };
        s.next_seq = s.next_seq.wrapping_add(fresh.len() as u32);
        if ahead > 0 {
            s.next_seq = seq.wrapping_add(bytes.len() as u32);
        }
        let passed = s.skip.min(fresh.len());
        s.skip -= passed;
        s.buf.extend_from_slice(&fresh[passed..]);
        let mut messages = Vec::new();
        while let Some(l) = s.buf.get(..2) {
            let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            if 2 + len > BUFFER_MAX {
                // Too long to hold: passed over, up to the next length.
                let have = s.buf.len().min(2 + len);
                s.skip = 2 + len - have;
                s.buf.drain(..have);
                continue;
            }
            if s.buf.len() < 2 + len {
                break;
            }
            messages.push(s.buf[2..2 + len].to_vec());
            s.buf.drain(..2 + len);
        }
        messages
    }

    /// Forgets streams quiet since `now - STREAM_IDLE`.
    pub fn expire(&mut self, now: Instant) {
        self.by_cookie
            .retain(|_, s| now.duration_since(s.fed) < STREAM_IDLE);
    }

    /// Streams followed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_cookie.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            out.extend_from_slice(&(m.len() as u16).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    #[test]
    fn messages_across_segments_duplicates_and_gaps() {
        let now = Instant::now();
        let mut s = Streams::default();
        let wire = framed(&[b"first", b"second message"]);
        // Split inside the second message's length and body.
        let (a, rest) = wire.split_at(8);
        assert_eq!(s.segment(7, 1000, a, now), [b"first".to_vec()]);
        // The first segment again: nothing new.
        assert!(s.segment(7, 1000, a, now).is_empty());
        // Overlapping the first: only its tail counts.
        let mut again = a[4..].to_vec();
        again.extend_from_slice(rest);
        assert_eq!(
            s.segment(7, 1004, &again, now),
            [b"second message".to_vec()]
        );
        // A gap: the stream starts over at the segment.
        let next = framed(&[b"third"]);
        assert_eq!(s.segment(7, 5000, &next, now), [b"third".to_vec()]);
        assert_eq!(
            s.segment(7, 5000 + next.len() as u32, &framed(&[b"4"]), now),
            [b"4".to_vec()]
        );
        // Sequence numbers wrap.
        let w = framed(&[b"wrapped"]);
        let (x, y) = w.split_at(3);
        assert!(s.segment(8, u32::MAX - 1, x, now).is_empty());
        assert_eq!(s.segment(8, 1, y, now), [b"wrapped".to_vec()]);
    }

    #[test]
    fn a_message_too_long_to_hold_is_passed_over() {
        let now = Instant::now();
        let mut s = Streams::default();
        let long = vec![b'x'; BUFFER_MAX + 100];
        let wire = framed(&[&long, b"after"]);
        let mut seq = 0u32;
        let mut got = Vec::new();
        for seg in wire.chunks(1000) {
            got.extend(s.segment(1, seq, seg, now));
            seq += seg.len() as u32;
            assert!(s.by_cookie[&1].buf.len() <= BUFFER_MAX);
        }
        assert_eq!(got, [b"after".to_vec()]);
    }

    #[test]
    fn streams_are_bounded_and_expire() {
        let now = Instant::now();
        let mut s = Streams::default();
        for c in 0..1000 {
            s.segment(c, 0, &[0, 9, 1], now);
        }
        assert_eq!(s.len(), STREAMS_MAX);
        s.expire(now + STREAM_IDLE);
        assert_eq!(s.len(), 0);
    }
}
