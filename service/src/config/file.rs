//! leco's configuration file, `config.kdl` (KDL v2), as the service reads it.
//!
//! One file configures the whole project: the service reads its `service { }`
//! section and ignores every other top-level node, which belong to the overlay
//! (`overlay { }`, line rules). The annotated default is `config.kdl` at the
//! root of the repository.
//!
//! Errors read `FILE:LINE:COLUMN: message` (1-based; the column counts
//! characters) and say what was expected, so that an editor can jump to them;
//! leco-kdlconf reads the file and the node shapes, the settings table
//! (`config/mod.rs`) knows the settings.

use std::path::Path;

use leco_kdlconf::{duration_hint, NodeSpec, Shape, Source};

use super::{ConfigError, ServiceConfig};

impl ServiceConfig {
    /// Parses `text` (the contents of `path`, used only in messages).
    pub fn parse(text: &str, path: &Path) -> Result<ServiceConfig, ConfigError> {
        leco_kdlconf::parse_on_thread(text, path, parse_here)
    }

    /// Reads and parses a file; a missing file is an error naming it.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        let text = leco_kdlconf::read_file(path)?;
        ServiceConfig::parse(&text, path)
    }
}

/// Parses and reads the `service` section; runs on the parser thread.
fn parse_here(source: Source<'_>) -> Result<ServiceConfig, ConfigError> {
    let document = source.document(duration_hint)?;
    let mut config = ServiceConfig::default();
    let Some(section) = source.section(&document, "service")? else {
        return Ok(config);
    };
    let settings = ServiceConfig::settings();
    // A missing value is shown the default as an example.
    let known: Vec<NodeSpec<'_>> = settings
        .iter()
        .map(|s| NodeSpec::value(s.name, &s.default))
        .collect();
    for (spec, node) in source.settings(section, &known)? {
        let Shape::Value { example } = spec.shape else {
            continue;
        };
        let entry = source.value(node, example)?;
        config.read_setting(&source, spec.name, entry)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leco_kdlconf::DAY;

    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::parse(text, Path::new("config.kdl"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("{text:?} parsed to {c:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn service(body: &str) -> String {
        format!("service {{\n{body}\n}}\n")
    }

    #[test]
    fn empty_file_gives_defaults() {
        for text in ["", "\n", "   ", "// nothing\n", "/* nothing */", "\u{feff}"] {
            assert_eq!(
                parse(text).expect("empty config parses"),
                ServiceConfig::default(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn file_without_service_section_gives_defaults() {
        let text = r#"
            overlay {
                font "Sans 11"
                position top-right
            }
            rule "firefox" color="orange"
            rule unit="sshd.service" hide=#true
            update-interval 7 // top level: not the service's
        "#;
        assert_eq!(parse(text).expect("parses"), ServiceConfig::default());
    }

    #[test]
    fn empty_service_section_gives_defaults() {
        for text in ["service {}", "service", "service;", "service {\n}\n"] {
            assert_eq!(
                parse(text).expect("parses"),
                ServiceConfig::default(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_setting_is_read() {
        let text = r#"
            overlay { anything 1 }
            service {
                update-interval "250ms"
                udp-idle 30
                backlog "10m"
                backlog-max 500
                max-flows 65_536
                ring-buffer-kib 0x400
                signal-rate 100
            }
        "#;
        let config = parse(text).expect("parses");
        assert_eq!(
            config,
            ServiceConfig {
                update_interval: Duration::from_millis(250),
                udp_idle: Duration::from_secs(30),
                backlog: Duration::from_secs(600),
                backlog_max: 500,
                max_flows: 65_536,
                ring_buffer_kib: 1024,
                signal_rate: 100,
                ..ServiceConfig::default()
            }
        );
    }

    #[test]
    fn every_known_name_is_accepted() {
        for setting in ServiceConfig::settings() {
            let text = service(&format!("{} {}", setting.name, setting.default));
            assert_eq!(
                parse(&text).expect("parses"),
                ServiceConfig::default(),
                "{}",
                setting.name
            );
        }
    }

    #[test]
    fn duration_forms() {
        let cases = [
            ("1", Duration::from_secs(1)),
            ("0.5", Duration::from_millis(500)),
            ("0.01", Duration::from_millis(10)),
            ("\"500ms\"", Duration::from_millis(500)),
            ("\"10ms\"", Duration::from_millis(10)),
            ("\"2s\"", Duration::from_secs(2)),
            ("\"1.5s\"", Duration::from_millis(1500)),
            ("\"5m\"", Duration::from_secs(300)),
            ("\"1h\"", Duration::from_secs(3600)),
            ("\"24h\"", DAY),
            ("\"0.25 h\"", Duration::from_secs(900)),
            ("86400", DAY),
            ("1e1", Duration::from_secs(10)),
            ("#\"3s\"#", Duration::from_secs(3)),
        ];
        for (written, expected) in cases {
            let config = parse(&service(&format!("update-interval {written}"))).expect(written);
            assert_eq!(config.update_interval, expected, "{written}");
        }
        let config = parse(&service("backlog 0")).expect("zero backlog");
        assert_eq!(config.backlog, Duration::ZERO);
    }

    #[test]
    fn unknown_setting() {
        assert_eq!(
            error("service {\n    foo 1\n}"),
            "config.kdl:2:5: unknown setting `foo` in service {}; expected one of \
             update-interval, udp-idle, backlog, backlog-max, max-flows, ring-buffer-kib, \
             signal-rate, retention, store-max-mib, warm-up"
        );
    }

    #[test]
    fn unknown_setting_suggests_the_closest() {
        let cases = [
            ("udp-idel", "udp-idle"),
            ("udp_idle", "udp-idle"),
            ("backlog-mx", "backlog-max"),
            ("backlogs", "backlog"),
            ("update_intervall", "update-interval"),
            ("ring-buffer-kb", "ring-buffer-kib"),
            ("warmup", "warm-up"),
            ("store-max-mb", "store-max-mib"),
        ];
        for (typo, known) in cases {
            let message = error(&format!("service {{ {typo} 1; }}"));
            assert!(
                message.starts_with(&format!("config.kdl:1:11: unknown setting `{typo}` in service {{}}; expected one of update-interval, ")),
                "{message}"
            );
            assert!(
                message.ends_with(&format!("warm-up; did you mean `{known}`?")),
                "{message}"
            );
        }
        assert!(!error("service { interval 1; }").contains("did you mean"));
    }

    #[test]
    fn second_service_section() {
        assert_eq!(
            error("service {\n  udp-idle 5\n}\noverlay {}\n  service { backlog 1 }\n"),
            "config.kdl:5:3: a second `service {}` section; put these settings into the one at line 1"
        );
    }

    #[test]
    fn duplicate_setting() {
        assert_eq!(
            error(&service("  udp-idle 5\n  backlog 1\n  udp-idle 6")),
            "config.kdl:4:3: `udp-idle` is set twice; the first is at line 2"
        );
    }

    #[test]
    fn wrong_duration() {
        let cases = [
            r#""fast""#,
            "fast",
            "#true",
            "#null",
            "#nan",
            r#""5""#,
            r#""5 days""#,
            r#""1e3s""#,
            r#""1.s""#,
            r#""""#,
        ];
        for written in cases {
            assert_eq!(
                error(&format!(
                    "// leco\nservice {{\n  update-interval  {written}\n}}"
                )),
                format!(
                    "config.kdl:3:20: update-interval must be a duration such as 1, 0.5, \
                     \"500ms\" or \"2s\", not {written}"
                ),
            );
        }
    }

    #[test]
    fn duration_out_of_range() {
        let cases = [
            ("update-interval", r#""5ms""#, "between 10ms and 1 day"),
            ("update-interval", "0.001", "between 10ms and 1 day"),
            ("update-interval", "86401", "between 10ms and 1 day"),
            ("update-interval", r#""25h""#, "between 10ms and 1 day"),
            ("update-interval", "-1", "between 10ms and 1 day"),
            ("update-interval", r#""-1s""#, "between 10ms and 1 day"),
            ("update-interval", "#inf", "between 10ms and 1 day"),
            ("update-interval", "#-inf", "between 10ms and 1 day"),
            ("update-interval", "1e300", "between 10ms and 1 day"),
            (
                "update-interval",
                "170141183460469231731687303715884105727",
                "between 10ms and 1 day",
            ),
            ("udp-idle", "0", "between 1s and 1 day"),
            ("udp-idle", r#""999ms""#, "between 1s and 1 day"),
            ("backlog", "-0.5", "between 0 and 1 day"),
            ("backlog", r#""1441m""#, "between 0 and 1 day"),
        ];
        for (name, written, range) in cases {
            assert_eq!(
                error(&format!("service {{ {name} {written}; }}")),
                format!(
                    "config.kdl:1:{}: {name} must be {range}, not {written}",
                    12 + name.len()
                ),
            );
        }
    }

    #[test]
    fn wrong_integer() {
        let cases = [
            ("backlog-max", "-1", "0 to 1000000"),
            ("backlog-max", "1000001", "0 to 1000000"),
            ("backlog-max", "1.5", "0 to 1000000"),
            ("backlog-max", "1e3", "0 to 1000000"),
            ("backlog-max", r#""100""#, "0 to 1000000"),
            ("max-flows", "63", "64 to 4194304"),
            ("max-flows", "4194305", "64 to 4194304"),
            ("max-flows", "#false", "64 to 4194304"),
            ("signal-rate", "0", "1 to 1000000"),
            (
                "signal-rate",
                "0x7fffffffffffffffffffffffffffffff",
                "1 to 1000000",
            ),
            ("signal-rate", "-99999999999", "1 to 1000000"),
        ];
        for (name, written, range) in cases {
            assert_eq!(
                error(&format!("service {{\n\t{name} {written}\n}}")),
                format!(
                    "config.kdl:2:{}: {name} must be an integer from {range}, not {written}",
                    3 + name.len()
                ),
            );
        }
    }

    #[test]
    fn ring_buffer_must_be_a_power_of_two() {
        for written in [
            "300",
            "2",
            "0",
            "-4",
            "2097152",
            "4294967296",
            "256.0",
            r#""256""#,
        ] {
            assert_eq!(
                error(&format!("service {{ ring-buffer-kib {written} }}")),
                format!(
                    "config.kdl:1:27: ring-buffer-kib must be a power of two from 4 to 1048576 \
                     (such as 256), not {written}"
                ),
            );
        }
        for (written, kib) in [("4", 4), ("1048576", 1 << 20), ("0b1000", 8)] {
            let config = parse(&format!("service {{ ring-buffer-kib {written} }}")).expect(written);
            assert_eq!(config.ring_buffer_kib, kib);
        }
    }

    #[test]
    fn setting_shape() {
        let cases = [
            (
                "service {\n  udp-idle\n}",
                "config.kdl:2:3: `udp-idle` needs a value, such as `udp-idle 60`",
            ),
            (
                "service {\n  udp-idle 5 6\n}",
                "config.kdl:2:14: `udp-idle` takes one value, not 2",
            ),
            (
                "service {\n  udp-idle seconds=5\n}",
                "config.kdl:2:12: `udp-idle` takes one value, not a property `seconds=…`",
            ),
            (
                "service {\n  udp-idle 5 { x }\n}",
                "config.kdl:2:3: `udp-idle` takes one value, not a block { … }",
            ),
            (
                "service {\n  udp-idle (s)5\n}",
                "config.kdl:2:12: `udp-idle` takes a plain value, without a type annotation",
            ),
            (
                "service {\n  (x)udp-idle 5\n}",
                "config.kdl:2:3: `udp-idle` takes no type annotation",
            ),
            (
                "service 1 {\n  udp-idle 5\n}",
                "config.kdl:1:9: `service` takes no values; its settings go inside `service { … }`",
            ),
            (
                "service x=1",
                "config.kdl:1:9: `service` takes no values; its settings go inside `service { … }`",
            ),
            (
                "(t)service {}",
                "config.kdl:1:1: `service` takes no type annotation",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_point_at_the_parser_diagnostic() {
        let cases = [
            (
                "service {\n  update-interval 1\n",
                "config.kdl:1:9: No closing '}' for child block",
            ),
            (
                "service {\n  update-interval 1.\n}",
                "config.kdl:2:19: Non-digit character found after the '.' of a float",
            ),
            (
                // Columns count characters, not bytes.
                "// ünïcödé\nservice { \"é\" 1. }",
                "config.kdl:2:15: Non-digit character found after the '.' of a float",
            ),
            (
                "service {\n  udp-idle \"60\n}",
                "config.kdl:2:12: Unexpected newline in single-line quoted string",
            ),
            (
                "service {\n  update-interval 500ms\n}",
                "config.kdl:2:19: Expected integer; a duration with a unit is a quoted string: \"500ms\"",
            ),
            (
                "service { backlog 1.5m; }",
                "config.kdl:1:19: Expected float; a duration with a unit is a quoted string: \"1.5m\"",
            ),
            (
                "service {\n  backlog 1\n}}",
                "config.kdl:3:2: Expected end of document",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text:?}");
        }
    }

    #[test]
    fn integers_too_large_for_kdl_are_named_where_they_are() {
        let big = "9".repeat(42);
        let message = |at: &str| {
            format!(
                "config.kdl:{at}: integer {}… is too large: integers go from \
                 -170141183460469231731687303715884105727 to \
                 170141183460469231731687303715884105727",
                "9".repeat(40)
            )
        };
        assert_eq!(
            error(&format!("service {{ max-flows {big} }}")),
            message("1:21")
        );
        assert_eq!(
            error(&format!(
                "service {{\n  backlog 1\n  signal-rate -{big}\n}}"
            )),
            message("3:15").replace(" 9", " -9").replace("9…", "…")
        );
    }

    #[test]
    fn errors_are_placed_by_every_kdl_newline() {
        for newline in [
            "\r\n", "\r", "\u{85}", "\u{b}", "\u{c}", "\u{2028}", "\u{2029}",
        ] {
            let text = [
                "// leco",
                "service {",
                "  udp-idle 5",
                "  backlog \"x\"",
                "}",
            ]
            .join(newline);
            assert_eq!(
                error(&text),
                "config.kdl:4:11: backlog must be a duration such as 1, 0.5, \"500ms\" or \"2s\", \
                 not \"x\"",
                "{newline:?}"
            );
        }
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let nested = |open: &str, n: usize| format!("{}{}", open.repeat(n), "}".repeat(n));
        let junk: String = (0..3_000u32)
            .map(|i| char::from_u32(i.wrapping_mul(2_654_435_761) % 0x3000).unwrap_or('\0'))
            .collect();
        // Sizes stay small because kdl is slow on some of these (slashdash
        // chains take quadratic time), yet the nesting ones are deeper than
        // an 8 MiB stack allows.
        let inputs = [
            "\0\u{1}\u{7f}\u{fffd}binary".to_string(),
            junk,
            nested("a{", 2_000),
            nested("service{", 300),
            "service {".repeat(300),
            "{".repeat(2_000),
            "}".repeat(3_000),
            "=".repeat(2_000),
            "/*".repeat(1_000),
            format!("/*{}*/", "*".repeat(5_000)),
            "/- ".repeat(60) + "a",
            "a ".to_string() + &"/-{".repeat(300),
            format!("a {}", "9".repeat(5_000)),
            format!("service {{ max-flows {} }}", "9".repeat(100)),
            format!("service {{ max-flows -{} }}", "9".repeat(100)),
            "service { max-flows -170141183460469231731687303715884105728 }".to_string(),
            format!("service {{ backlog \"{}s\" }}", "9".repeat(400)),
            format!("service {{ backlog {}.5 }}", "9".repeat(400)),
            format!("service {{ {} 1 }}", "x".repeat(10_000)),
            format!("service {{ \"{}\" 1 }}", "\\n".repeat(3)),
            "service { udp-idle 1; udp-idle 1; udp-idle 1 }".to_string(),
            "service {} service {} service {}".to_string(),
            "\"\"\"\n".repeat(500),
            "#".repeat(2_000) + "\"",
            "\\\n".repeat(2_000),
        ];
        for text in &inputs {
            let short: String = text.chars().take(30).collect();
            match parse(text) {
                Ok(config) => assert_eq!(config, ServiceConfig::default(), "{short:?}"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.starts_with("config.kdl"), "{message}");
                    assert!(!message.contains('\n'), "{message:?}");
                }
            }
        }
    }

    #[test]
    fn too_deep_to_parse() {
        assert_eq!(
            error(&"{".repeat(30_000)),
            "config.kdl: too large or too deeply nested to parse (30000 bytes); \
             a configuration file is a few KiB"
        );
        // A generous real file is still fine.
        let mut text = String::from("service {\n");
        for i in 0..1_000 {
            text.push_str(&format!("    // comment {i}\n"));
        }
        text.push_str("    udp-idle 5\n}\n");
        assert_eq!(
            parse(&text).expect("parses").udp_idle,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn messages_stay_on_one_line() {
        let message = error("service {\n  udp-idle \"\"\"\n    a\n    b\n    \"\"\"\n}");
        assert_eq!(
            message,
            "config.kdl:2:12: udp-idle must be a duration such as 1, 0.5, \"500ms\" or \"2s\", \
             not \"\"\"\\n    a\\n    b\\n    \"\"\""
        );
        let long = "x".repeat(100);
        let message = error(&format!("service {{ udp-idle \"{long}\" }}"));
        assert!(
            message.ends_with(&format!("not \"{}…", "x".repeat(39))),
            "{message}"
        );
    }

    #[test]
    fn the_annotated_config_is_the_defaults() {
        let text = include_str!("../../../config.kdl");
        let config = ServiceConfig::parse(text, Path::new("config.kdl"))
            .unwrap_or_else(|e| panic!("the shipped config.kdl does not parse: {e}"));
        assert_eq!(config, ServiceConfig::default());
        // Every setting is spelled out, so that the file documents them all.
        for setting in ServiceConfig::settings() {
            let name = setting.name;
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{name} "))),
                "config.kdl does not show `{name}`"
            );
        }
    }

    #[test]
    fn load_reads_a_file_and_names_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("leco-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.kdl");
        std::fs::write(&path, "service { signal-rate 10 }\n").expect("write config");
        assert_eq!(ServiceConfig::load(&path).expect("loads").signal_rate, 10);

        std::fs::write(&path, b"service {\n  x \xff\n}\n").expect("write config");
        let message = ServiceConfig::load(&path)
            .expect_err("not UTF-8")
            .to_string();
        assert_eq!(
            message,
            format!(
                "{}:2:5: not valid UTF-8; a configuration file is UTF-8 text",
                path.display()
            )
        );

        let missing = dir.join("missing.kdl");
        let message = ServiceConfig::load(&missing)
            .expect_err("missing")
            .to_string();
        assert_eq!(message, format!("{}: no such file", missing.display()));
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
