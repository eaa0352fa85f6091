//! The line model end to end: events from JSON lines, grouping, rows, fade.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use leco_overlay::config::parse::parse;
use leco_overlay::events::parse_events;
use leco_overlay::model::LineModel;

const S: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * S;

fn event(kind: &str, id: u64, comm: &str, port: u16, at: u64, rx: u64) -> String {
    format!(
        r#"{{"kind":"{kind}","id":{id},"proto":"tcp","user":"alice","comm":"{comm}","remote_addr":"1.2.3.4","remote_port":{port},"first_seen_us":{at},"last_seen_us":{at},"rx_bytes":{rx},"tx_bytes":0}}"#
    )
}

#[test]
fn json_events_group_fade_and_go() {
    let config = parse(
        r##"overlay {
            max-lines 4
            fade-time 10
            rules { group #":: (curl) :: "# "$1" }
        }"##,
        Path::new("t.kdl"),
    )
    .unwrap();
    let text = [
        event("new", 1, "curl", 80, T0, 3000),
        event("new", 2, "curl", 443, T0 + S, 3000),
        event("new", 3, "wget", 443, T0 + S, 0),
        event("closed", 1, "curl", 80, T0 + 2 * S, 4000),
    ]
    .join("\n");
    let mut m = LineModel::new(&config);
    for (kind, c) in parse_events(&text, Path::new("e.jsonl")).unwrap() {
        m.apply(kind, &c);
    }
    let f = m.frame(T0 + 3 * S);
    assert_eq!(f.lines.len(), 2, "{f:?}");
    let curl = f.lines.iter().find(|l| l.text.contains("curl")).unwrap();
    assert!(curl.text.ends_with(":: v 6.8K / 0B ^ ×2"), "{}", curl.text);
    assert!(f.next_change_us.unwrap() > T0 + 3 * S);
    // The same events again (a snapshot after a service restart): no
    // duplicates, same rows.
    for (kind, c) in parse_events(&text, Path::new("e.jsonl")).unwrap() {
        m.apply(kind, &c);
    }
    let g = m.frame(T0 + 3 * S);
    assert_eq!(f, g);
    // After the fade: nothing, and nothing to wake up for.
    let h = m.frame(T0 + 13 * S);
    assert!(h.lines.is_empty());
    assert_eq!(h.next_change_us, None);
}

#[test]
fn a_hundred_lines_are_cheap() {
    let config = parse("overlay { max-lines 100 }", Path::new("t.kdl")).unwrap();
    let mut m = LineModel::new(&config);
    let events = (0..100)
        .map(|i| event("new", i, &format!("proc{i}"), 443, T0 + i, 10_000))
        .collect::<Vec<_>>()
        .join("\n");
    for (kind, c) in parse_events(&events, Path::new("e")).unwrap() {
        m.apply(kind, &c);
    }
    let start = std::time::Instant::now();
    for i in 0..100 {
        let f = m.frame(T0 + 200 + i * 10_000);
        assert_eq!(f.lines.len(), 100);
    }
    // 100 frames of 100 lines: well under a millisecond each.
    assert!(
        start.elapsed() < std::time::Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}
