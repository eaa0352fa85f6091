//! `--rx-test LINE`: what the rules do to one line.
//!
//! The CLI calls [`run`]`(&config, &line)` and prints the returned text
//! (it ends with a newline), then exits successfully.

use crate::config::OverlayConfig;
use leco_proto::sanitize_text;

use crate::format::MAX_LINE_CHARS;

/// A report on `line` under `config`'s rules: the original, the result,
/// the verdict (unchanged / changed / hidden / grouped with its key), and
/// which rules applied.
pub fn run(config: &OverlayConfig, line: &str) -> String {
    let rules = &config.rules;
    let line = sanitize_text(line, MAX_LINE_CHARS);
    let out = rules.apply(&line);
    let mut report = format!("original: {line}\n");
    if out.hidden {
        report.push_str("result:   (hidden)\n");
    } else {
        report.push_str(&format!(
            "result:   {}\n",
            sanitize_text(&out.text, MAX_LINE_CHARS)
        ));
    }
    let mut verdict = Vec::new();
    if out.hidden {
        verdict.push("hidden".to_owned());
    } else {
        if out.text != line {
            verdict.push("changed".to_owned());
        }
        if let Some(key) = &out.group {
            verdict.push(format!(
                "grouped under {:?}",
                sanitize_text(key, MAX_LINE_CHARS)
            ));
        }
        if verdict.is_empty() {
            verdict.push("unchanged".to_owned());
        }
    }
    report.push_str(&format!("verdict:  {}\n", verdict.join(", ")));
    if out.applied.is_empty() {
        report.push_str(&format!("rules:    none of {} applied\n", rules.len()));
    } else {
        let applied: Vec<String> = out
            .applied
            .iter()
            .map(|&i| format!("#{} {}", i + 1, rules.rules()[i].action().name()))
            .collect();
        report.push_str(&format!("rules:    {}\n", applied.join(", ")));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(rules: &str) -> OverlayConfig {
        crate::config::parse::parse(
            &format!("overlay {{ rules {{ {rules} }} }}"),
            Path::new("t.kdl"),
        )
        .expect("config")
    }

    #[test]
    fn reports_each_verdict() {
        let line = "17:02 :: alice :: firefox [app.scope] :: 1.2.3.4 443/tcp";
        let r = run(&config(""), line);
        assert!(r.contains("verdict:  unchanged"), "{r}");
        assert!(r.contains("none of 0 applied"), "{r}");
        let r = run(&config(r#"rewrite "alice" "bob""#), line);
        assert!(r.contains("result:   17:02 :: bob :: firefox"), "{r}");
        assert!(r.contains("verdict:  changed"), "{r}");
        assert!(r.contains("rules:    #1 rewrite"), "{r}");
        let r = run(&config(r#"hide "firefox""#), line);
        assert!(
            r.contains("result:   (hidden)") && r.contains("verdict:  hidden"),
            "{r}"
        );
        let r = run(&config(r##"group #"(\w+) \["# "$1""##), line);
        assert!(r.contains("verdict:  grouped under \"firefox\""), "{r}");
        assert!(r.starts_with(&format!("original: {line}\n")));
    }
}
