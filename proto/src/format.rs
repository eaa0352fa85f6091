//! Formatting shared by every client: bytes in human units and the classic
//! leco line.

use std::borrow::Cow;

use crate::connection::{Connection, Direction, Proto};

/// Traffic is shown only once rx + tx reaches this many bytes (5 KiB).
pub const TRAFFIC_THRESHOLD: u64 = 5 * 1024;

/// Bytes in short human units: `58B`, `5.1K`, `230K`, `1.2M`, `17G`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{:.0}{}", v.floor(), UNITS[unit])
    }
}

/// The classic leco line:
/// `HH:MM :: user :: program [unit] :: addr port/proto :: v 58B / 26B ^`.
/// `program` is what is running (the task name when it is not known);
/// `addr` is the name the remote was looked up by, where one is known. An
/// incoming connection names the peer and the local port it reached:
/// `203.0.113.5 → :22/tcp`, so that it cannot be read as an outgoing one.
/// Kinds without ports name themselves after the address: `127.0.0.1 icmp`,
/// `127.0.0.1 raw/253`, `10.0.0.2 packet/eth0` (a frame that is not IP: `?`).
/// `hhmm` is the local time to show; the traffic part appears once rx + tx
/// passes `threshold`; an error is appended after `!!`, and so is what of
/// this machine's policy blocked it (`!! blocked by firewall`, with `×N`
/// attempts past the first). The fields a user chooses cannot fake the
/// ` :: ` separator, which rules rely on.
pub fn classic_line(c: &Connection, hhmm: &str, threshold: u64) -> String {
    let uid;
    let user: &str = match (&c.user, c.uid) {
        (Some(u), _) => u,
        (None, Some(id)) => {
            uid = id.to_string();
            &uid
        }
        (None, None) => "?",
    };
    let user = separator_free(user);
    let program = c.program.as_deref().or(c.comm.as_deref());
    let program = separator_free(program.unwrap_or("?"));
    let mut line = format!("{hhmm} :: {user} :: {program}");
    if let Some(unit) = &c.unit {
        line.push_str(&format!(" [{}]", separator_free(unit)));
    }
    // The name the program looked the remote up by says more than its
    // address; an incoming connection has none.
    let addr: Cow<'_, str> = match c.remote_name.as_deref() {
        Some(name) if !name.is_empty() => separator_free(name),
        _ if c.remote_addr.is_empty() => Cow::Borrowed("?"),
        _ => Cow::Borrowed(&c.remote_addr),
    };
    let blocked = c.reason.filter(|r| r.is_local_policy());
    match c.proto {
        p if p.has_ports() && c.direction == Some(Direction::In) => {
            line.push_str(&format!(" :: {addr} → :{}/{}", c.local_port, p.as_str()));
        }
        p if p.has_ports() => {
            line.push_str(&format!(" :: {addr} {}/{}", c.remote_port, p.as_str()));
        }
        Proto::Raw => match c.ip_proto {
            Some(n) => line.push_str(&format!(" :: {addr} raw/{n}")),
            None => line.push_str(&format!(" :: {addr} raw")),
        },
        Proto::Packet => match &c.interface {
            Some(i) => line.push_str(&format!(" :: {addr} packet/{}", separator_free(i))),
            None => line.push_str(&format!(" :: {addr} packet")),
        },
        p => line.push_str(&format!(" :: {addr} {}", p.as_str())),
    }
    if c.rx_bytes + c.tx_bytes >= threshold {
        line.push_str(&format!(
            " :: v {} / {} ^",
            human_bytes(c.rx_bytes),
            human_bytes(c.tx_bytes)
        ));
    }
    if let Some(r) = blocked {
        line.push_str(&format!(" !! blocked by {}", r.words()));
        match c.attempts {
            Some(n) if n > 1 => line.push_str(&format!(" ×{n}")),
            _ => {}
        }
    } else if let Some(e) = &c.error {
        line.push_str(&format!(" !! {e}"));
    }
    line
}

/// `field` with every `::` written `:\u{3a}` (the text-safety policy's
/// escape form), so that it cannot stand for the classic line's separator.
fn separator_free(field: &str) -> Cow<'_, str> {
    if field.contains("::") {
        Cow::Owned(field.replace("::", ":\\u{3a}"))
    } else {
        Cow::Borrowed(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::example::curl as conn;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(58), "58B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(5 * 1024 + 100), "5.1K");
        assert_eq!(human_bytes(230 * 1024), "230K");
        assert_eq!(human_bytes(1_300_000), "1.2M");
        assert_eq!(human_bytes(17 * 1024 * 1024 * 1024), "17G");
    }

    #[test]
    fn blocked_lines_say_by_what_and_how_often() {
        let mut c = conn();
        c.reason = Some(crate::Reason::Firewall);
        c.error = Some("connection refused".into());
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: curl [session-2.scope] :: 93.184.216.34 443/tcp !! blocked by firewall"
        );
        c.attempts = Some(3);
        assert!(classic_line(&c, "17:02", TRAFFIC_THRESHOLD).ends_with("!! blocked by firewall ×3"));
        // An inbound attempt: the port aimed at, from whom.
        c.direction = Some(Direction::In);
        c.reason = Some(crate::Reason::CgroupPolicy);
        c.attempts = Some(1);
        c.local_port = 22;
        assert!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD)
                .ends_with(":: 93.184.216.34 → :22/tcp !! blocked by cgroup policy"),
            "{}",
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD)
        );
        // A failure keeps its error text.
        c.reason = Some(crate::Reason::NoReply);
        c.error = Some("no reply".into());
        c.direction = Some(Direction::Out);
        assert!(classic_line(&c, "17:02", TRAFFIC_THRESHOLD).ends_with("443/tcp !! no reply"));
    }

    #[test]
    fn in_and_out_read_apart_and_the_program_is_named() {
        let mut c = conn();
        c.comm = Some("python3".into());
        c.program = Some("http.server".into());
        c.unit = None;
        // Outgoing: the shape rules were written for.
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: http.server :: 93.184.216.34 443/tcp"
        );
        // Accepted: the peer, then the local port it reached.
        c.direction = Some(Direction::In);
        c.local_port = 8000;
        c.remote_port = 51234;
        c.rx_bytes = 6000;
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: http.server :: 93.184.216.34 → :8000/tcp :: v 5.9K / 26B ^"
        );
        // Inbound datagrams likewise; a kind without ports has none to name.
        c.proto = Proto::Udp;
        assert!(classic_line(&c, "17:02", TRAFFIC_THRESHOLD).contains(" → :8000/udp "));
        c.proto = Proto::Icmp;
        assert!(classic_line(&c, "17:02", TRAFFIC_THRESHOLD).contains(":: 93.184.216.34 icmp"));
    }

    #[test]
    fn a_named_remote_shows_its_name() {
        let mut c = conn();
        c.remote_name = Some("example.org".into());
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: curl [session-2.scope] :: example.org 443/tcp"
        );
        c.remote_name = Some("a::b".into());
        assert!(classic_line(&c, "17:02", TRAFFIC_THRESHOLD).ends_with(":: a:\\u{3a}b 443/tcp"));
    }

    #[test]
    fn classic_line_hides_small_traffic() {
        assert_eq!(
            classic_line(&conn(), "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: curl [session-2.scope] :: 93.184.216.34 443/tcp"
        );
        let mut c = conn();
        c.rx_bytes = 6000;
        c.tx_bytes = 26;
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: curl [session-2.scope] :: 93.184.216.34 443/tcp :: v 5.9K / 26B ^"
        );
    }

    #[test]
    fn kinds_without_ports_name_themselves() {
        let mut c = conn();
        c.unit = None;
        c.comm = Some("ping".into());
        c.remote_addr = "127.0.0.1".into();
        c.proto = Proto::Icmp;
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: ping :: 127.0.0.1 icmp"
        );
        c.proto = Proto::Raw;
        c.ip_proto = Some(253);
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: ping :: 127.0.0.1 raw/253"
        );
        c.proto = Proto::Packet;
        c.ip_proto = None;
        c.remote_addr = "".into();
        c.interface = Some("veth0".into());
        assert_eq!(
            classic_line(&c, "17:02", TRAFFIC_THRESHOLD),
            "17:02 :: alice :: ping :: ? packet/veth0"
        );
    }

    #[test]
    fn classic_line_without_unit_or_user_and_with_error() {
        let mut c = conn();
        c.unit = None;
        c.user = None;
        c.error = Some("connection refused".into());
        assert_eq!(
            classic_line(&c, "09:15", TRAFFIC_THRESHOLD),
            "09:15 :: 1000 :: curl :: 93.184.216.34 443/tcp !! connection refused"
        );
    }

    #[test]
    fn fields_cannot_fake_the_separator() {
        let mut c = conn();
        c.comm = Some(" :: root :: ssh".into());
        c.user = Some("eve::".into());
        c.unit = Some("a :: b.scope".into());
        let line = classic_line(&c, "17:02", TRAFFIC_THRESHOLD);
        assert_eq!(
            line,
            "17:02 :: eve:\\u{3a} ::  :\\u{3a} root :\\u{3a} ssh [a :\\u{3a} b.scope] :: 93.184.216.34 443/tcp"
        );
        assert_eq!(line.matches(" :: ").count(), 3, "{line}");
        // Addresses are the service's own, and IPv6 ones are full of `::`.
        c.remote_addr = "::1".into();
        assert!(classic_line(&c, "17:02", 0).contains(" :: ::1 443/tcp"));
    }

    #[test]
    fn json_leaves_unknown_keys_out() {
        let mut c = conn();
        c.comm = None;
        let v = serde_json::to_value(&c).expect("serializes");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["direction"], "out");
        assert!(v.get("comm").is_none());
        assert!(v.get("exe").is_none());
    }
}
