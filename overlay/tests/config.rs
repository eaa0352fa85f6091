//! The shipped config.kdl: the overlay parser accepts it, it states the
//! defaults, and its commented-out rule examples are valid and do what
//! their comments say.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use leco_overlay::config::{self, OverlayConfig};
use leco_overlay::rxtest;

const SHIPPED: &str = include_str!("../../config.kdl");

fn parse(text: &str) -> Result<OverlayConfig, config::ConfigError> {
    config::parse::parse(text, Path::new("config.kdl"))
}

/// The file with the examples in `rules { }` uncommented.
fn with_examples() -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in SHIPPED.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("rules {") {
            inside = true;
        } else if inside && trimmed == "}" {
            inside = false;
        }
        let code = trimmed.strip_prefix("// ").filter(|rest| {
            let word = rest.split_whitespace().next().unwrap_or("");
            ["rewrite", "group", "hide", "match", "not", "}"].contains(&word)
        });
        match code {
            Some(code) if inside => out.push_str(code),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_shipped_file_is_the_defaults() {
    let c = parse(SHIPPED).unwrap_or_else(|e| panic!("config.kdl: {e}"));
    let d = OverlayConfig::default();
    assert_eq!(c.surface.width, d.surface.width);
    assert_eq!(c.surface.height, d.surface.height);
    assert_eq!(c.surface.layer, d.surface.layer);
    assert_eq!(c.surface.anchor, d.surface.anchor);
    assert_eq!(c.surface.margins, d.surface.margins);
    assert_eq!(c.style.font_family, d.style.font_family);
    assert_eq!(c.style.line_height, d.style.line_height);
    assert_eq!(c.style.text_color, d.style.text_color);
    assert_eq!(c.style.shadows, d.style.shadows);
    assert_eq!(c.lines.format, d.lines.format);
    assert_eq!(c.lines.traffic_threshold, d.lines.traffic_threshold);
    assert_eq!(c.fade.fade_time, d.fade.fade_time);
    assert_eq!(c.fade.curve, d.fade.curve);
    assert!(c.rules.is_empty());
}

#[test]
fn the_rule_examples_work() {
    let text = with_examples();
    let c = parse(&text).unwrap_or_else(|e| panic!("examples: {e}\n{text}"));
    assert_eq!(c.rules.len(), 8);
    let run = |line: &str| rxtest::run(&c, line);
    let r = run("17:02 :: root :: cron [cron.service] :: ::ffff:1.2.3.4 80/tcp");
    assert!(
        r.contains("result:   17:02 :: ⚙ :: cron [cron.service] :: 1.2.3.4 80/tcp"),
        "{r}"
    );
    assert!(run("17:02 :: bob :: cupsd :: 127.0.0.1 631/tcp").contains("verdict:  hidden"));
    let r = run("17:02 :: bob :: firefox [app-firefox.scope] :: 1.2.3.4 80/tcp");
    assert!(r.contains("grouped under \"firefox (not web)\""), "{r}");
    let r = run("17:02 :: bob :: Socket Thread [app-firefox-1.scope] :: 1.2.3.4 443/tcp");
    assert!(
        r.contains("result:   17:02 :: bob :: waterfox :: 1.2.3.4 443/tcp"),
        "{r}"
    );
    let r = run("17:02 :: alice :: ssh [session-1.scope] :: 10.0.0.1 22/tcp");
    assert!(r.contains("result:   17:02 :: a :: ssh"), "{r}");
    let r = run(
        "17:02 :: systemd-resolve :: systemd-resolve [systemd-resolved.service] :: 9.9.9.9 53/udp",
    );
    assert!(
        r.contains("grouped under \"systemd-resolve [systemd-resolved.service] 9.9.9.9 dns\""),
        "{r}"
    );
    assert!(run("17:02 :: root :: sshd :: 10.0.0.9 22/tcp").contains("hidden"));
}

#[test]
fn service_parser_still_accepts_the_file() {
    // The service ignores the overlay section; its own test parses the
    // file too. Here: the overlay ignores the service section.
    let c = parse("service { udp-idle 5 }\noverlay { width 10 }").unwrap();
    assert_eq!(c.surface.width, 10);
}

#[test]
fn check_config_and_load() {
    let dir = std::env::temp_dir().join(format!("leco-overlay-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.kdl");
    std::fs::write(&path, with_examples()).unwrap();
    let summary = config::check_config(&path).unwrap();
    assert!(
        summary.starts_with(&format!("{}: ok\n", path.display())),
        "{summary}"
    );
    assert!(
        summary.contains("8 rules: 4 rewrite, 3 group, 1 hide"),
        "{summary}"
    );
    std::fs::write(&path, "overlay {\n  rules {\n    hide \"(\"\n  }\n}\n").unwrap();
    let e = config::load(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:3:", path.display())), "{e}");
    assert!(e.contains("bad regex"), "{e}");
    std::fs::write(&path, b"overlay {\n  font \"\xff\"\n}\n").unwrap();
    let e = config::load(&path).unwrap_err().to_string();
    assert!(e.contains(":2:9: not valid UTF-8"), "{e}");
    let missing = dir.join("missing.kdl");
    assert_eq!(
        config::load(&missing).unwrap_err().to_string(),
        format!("{}: no such file", missing.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_name_line_and_column() {
    let cases = [
        ("overlay {\n  width 1\n  height 2 {\n}", "config.kdl:"),
        (
            "overlay {\n  heigth 5\n}",
            "config.kdl:2:3: unknown setting `heigth`",
        ),
        (
            "overlay {\n  max-fps \"fast\"\n}",
            "config.kdl:2:11: max-fps must be an integer from 1 to 1000, not \"fast\"",
        ),
        (
            "overlay {\n  rules {\n    rewrite #\"[a\"# \"b\"\n  }\n}",
            "config.kdl:3:17: rewrite: bad regex: Parsing error at position 2",
        ),
        (
            "overlay {\n  fade-time \"forever\"\n}",
            "config.kdl:2:13: fade-time must be a duration",
        ),
    ];
    for (text, expected) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{text:?}: {e}");
    }
}

/// The `format` comment of config.kdl names every template field: the
/// record's keys (Connection's key table) in parentheses, then the derived
/// ones. A key added to the table alone, or to the file alone, fails here.
#[test]
fn the_format_comment_lists_every_template_field() {
    let comment: String = SHIPPED
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("//"))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ");
    let after = comment
        .split_once("fields over the connection keys (")
        .expect("config.kdl's format comment lists the connection keys")
        .1;
    let (keys, rest) = after.split_once(')').expect("a closing parenthesis");
    let listed: Vec<&str> = keys.split_whitespace().collect();
    let table: Vec<&str> = leco_proto::Connection::KEYS
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(
        listed, table,
        "config.kdl's format comment lists other keys than the table"
    );
    let derived: Vec<&str> = rest
        .trim_start()
        .strip_prefix("and ")
        .and_then(|r| r.split(';').next())
        .expect("then `and` the derived fields")
        .split(',')
        .map(str::trim)
        .collect();
    let fields: Vec<&str> = leco_overlay::format::field_names().collect();
    assert_eq!(
        [derived.as_slice(), listed.as_slice()].concat(),
        fields,
        "config.kdl's format comment lists other fields than the template knows"
    );
}

/// A FIFO as the configuration is refused at once with one line naming
/// it, by every way of starting the overlay that reads one.
#[test]
fn a_fifo_is_refused_not_waited_on() {
    let dir = leco_testkit::scratch_dir("overlay-fifo");
    let fifo = dir.join("config.kdl");
    leco_testkit::mkfifo(&fifo);
    let expected = format!(
        "leco-overlay: {}: not a regular file (a FIFO)",
        fifo.display()
    );
    for extra in [&["--check-config"][..], &["--rx-test", "a :: b"], &[]] {
        let mut overlay = std::process::Command::new(env!("CARGO_BIN_EXE_leco-overlay"));
        overlay.arg("-c").arg(&fifo).args(extra);
        // No compositor: were the file read, the overlay would fail later.
        overlay.env_remove("WAYLAND_DISPLAY");
        let (code, err) = leco_testkit::run_to_exit(&mut overlay, Duration::from_secs(10));
        assert_eq!(
            (code, err.as_str()),
            (Some(1), expected.as_str()),
            "{extra:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
