//! The classic leco rule language, said in KDL, on the default format.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use leco_overlay::config::OverlayConfig;

fn rules(body: &str) -> OverlayConfig {
    leco_overlay::config::parse::parse(
        &format!("overlay {{\n rules {{\n{body}\n }}\n}}"),
        Path::new("t.kdl"),
    )
    .unwrap_or_else(|e| panic!("{body}: {e}"))
}

const LINE: &str = "17:02 :: fraggod :: ssh [tmux-spawn-1234.scope] :: 10.2.0.1 22/tcp";

#[test]
fn classic_rx_proc_examples() {
    // ^(\s*\S+ ::) fraggod :: = $1
    let c = rules(r##"rewrite #"^(\s*\S+ ::) fraggod :: "# "$1 ""##);
    assert_eq!(
        c.rules.apply(LINE).text,
        "17:02 :: ssh [tmux-spawn-1234.scope] :: 10.2.0.1 22/tcp"
    );
    // \ \[tmux-spawn-\S+\] :: = \ [tmux] ::
    let c = rules(r##"rewrite #" \[tmux-spawn-\S+\] :: "# " [tmux] :: ""##);
    assert_eq!(
        c.rules.apply(LINE).text,
        "17:02 :: fraggod :: ssh [tmux] :: 10.2.0.1 22/tcp"
    );
    // Case-insensitive by default; I/…/ is case-sensitive=#true.
    let c = rules(r#"hide "FRAGGOD""#);
    assert!(c.rules.apply(LINE).hidden);
    let c = rules(r#"hide "FRAGGOD" case-sensitive=#true"#);
    assert!(!c.rules.apply(LINE).hidden);
}

#[test]
fn chains_negation_and_the_replacing_match() {
    // /ssh/ && !/tmux/ : does not apply.
    let c = rules(r#"hide { match "ssh"; not "tmux"; }"#);
    assert!(!c.rules.apply(LINE).hidden);
    // /ssh/ && !/firefox/ : applies.
    let c = rules(r#"hide { match "ssh"; not "firefox"; }"#);
    assert!(c.rules.apply(LINE).hidden);
    // "1`…": the first regex replaces.
    let c = rules(r#"rewrite "me" { match "fraggod" replace=#true; match "ssh"; }"#);
    assert_eq!(
        c.rules.apply(LINE).text,
        "17:02 :: me :: ssh [tmux-spawn-1234.scope] :: 10.2.0.1 22/tcp"
    );
    // Default: the last non-negated one.
    let c = rules(r#"rewrite "SSH" { match "fraggod"; match "ssh"; not "firefox"; }"#);
    assert_eq!(
        c.rules.apply(LINE).text,
        "17:02 :: fraggod :: SSH [tmux-spawn-1234.scope] :: 10.2.0.1 22/tcp"
    );
    // Per-regex case sensitivity inside a chain.
    let c = rules(r#"hide { match "ssh"; not "FRAGGOD" case-sensitive=#true; }"#);
    assert!(c.rules.apply(LINE).hidden);
}

#[test]
fn group_under_the_replacement_and_empty_hides() {
    let c = rules(
        r##"rewrite ":: sshfs.local ::" group=#true { match #":: ssh \[tmux\S*\] :: 10.2.0.1 22/"#; }"##,
    );
    let out = c.rules.apply(LINE);
    assert_eq!(out.group.as_deref(), Some(":: sshfs.local ::"));
    assert_eq!(out.text, "17:02 :: fraggod :: sshfs.local ::tcp");
    let c = rules(r##"group #".*:: ssh.*"# """##);
    assert!(c.rules.apply(LINE).hidden);
    // Rewrites run in order, each on the rewritten line.
    let c = rules(
        r#"rewrite "fraggod" "me"
        rewrite "me :: ssh" "me :: SSH""#,
    );
    assert!(c.rules.apply(LINE).text.contains("me :: SSH ["));
    // $N is the digits only: $2waterfox is group 2 then "waterfox".
    let c = rules(r##"rewrite #"(\w+) :: (\w+) \["# "$2x${1}y$$ [""##);
    assert!(
        c.rules.apply(LINE).text.contains("sshxfraggody$ [tmux"),
        "{}",
        c.rules.apply(LINE).text
    );
}
