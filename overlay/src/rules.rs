//! Line rules (fancy-regex): rewrite, group, hide.
//!
//! Rules run in the order written, each on the line as the rules before it
//! left it. A rule applies when its *chain* matches: every `match` regex
//! matches the line and no `not` regex does (a rule with one regex is a
//! chain of one). Regexes are case-insensitive unless marked
//! case-sensitive. Then:
//!
//! - **rewrite** replaces every match of its *replacing* regex (the chain's
//!   last `match`, unless another is marked) with its replacement, where
//!   `$1`, `${name}` are captures and `$$` is a dollar sign. With `group`,
//!   the line also joins the group named by the replacement(s): the
//!   expansions of all matches, concatenated ("group under the
//!   replacement", the classic `g` flag).
//! - **group** leaves the text alone and puts the line into the group named
//!   by its key, expanded with the captures of the replacing regex's first
//!   match; an empty key hides the line.
//! - **hide** hides the line; later rules do not run.
//!
//! The first grouping rule that applies decides the group; later ones still
//! rewrite but do not regroup. A regex that exceeds the backtracking limit
//! on some line counts as not matching it.

use std::fmt;

use fancy_regex::{Regex, RegexBuilder};

/// Backtracking steps a regex may take on one line before it counts as not
/// matching: hostile names must not stall the overlay.
const BACKTRACK_LIMIT: usize = 200_000;

/// One regex of a chain, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchSpec {
    /// The pattern (fancy-regex syntax).
    pub pattern: String,
    /// `not`: the rule applies only if this does not match.
    pub negated: bool,
    /// Match case exactly (the default ignores case).
    pub case_sensitive: bool,
    /// This one performs the replacement (at most one per chain).
    pub replaces: bool,
}

impl MatchSpec {
    /// A plain case-insensitive `match`.
    pub fn new(pattern: impl Into<String>) -> MatchSpec {
        MatchSpec {
            pattern: pattern.into(),
            negated: false,
            case_sensitive: false,
            replaces: false,
        }
    }
}

/// What a rule does when its chain matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace matches; optionally group under the replacement.
    Rewrite {
        /// Replacement with `$1`… captures.
        replacement: String,
        /// Also group under the expanded replacement.
        group: bool,
    },
    /// Group under the expanded key (empty: hide).
    Group {
        /// Key with `$1`… captures.
        key: String,
    },
    /// Hide the line.
    Hide,
}

impl Action {
    /// The rule's name in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Rewrite { .. } => "rewrite",
            Action::Group { .. } => "group",
            Action::Hide => "hide",
        }
    }
}

/// Why a rule could not be built. `matcher` is the index in the chain of
/// the regex at fault, `offset` the byte offset in its pattern if known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuleError {
    /// Index of the offending regex in the chain, if one is.
    pub matcher: Option<usize>,
    /// Byte offset in that pattern, if the regex parser said.
    pub offset: Option<usize>,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone)]
struct Matcher {
    regex: Regex,
    negated: bool,
}

/// One compiled rule.
#[derive(Clone)]
pub struct Rule {
    action: Action,
    chain: Vec<Matcher>,
    /// Index in `chain` of the replacing regex (never negated).
    replacer: usize,
    specs: Vec<MatchSpec>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("action", &self.action)
            .field("chain", &self.specs)
            .finish()
    }
}

impl Rule {
    /// Compiles a rule from its chain (at least one non-negated regex).
    pub fn new(action: Action, chain: Vec<MatchSpec>) -> Result<Rule, RuleError> {
        let error = |message: String| RuleError {
            matcher: None,
            offset: None,
            message,
        };
        let marked: Vec<usize> = (0..chain.len()).filter(|&i| chain[i].replaces).collect();
        let replacer = match marked.as_slice() {
            [] => chain.iter().rposition(|m| !m.negated).ok_or_else(|| {
                error("a rule needs at least one `match` (not only `not`)".into())
            })?,
            [one] => *one,
            [_, second, ..] => {
                return Err(RuleError {
                    matcher: Some(*second),
                    offset: None,
                    message: "only one regex of a rule can do the replacing".into(),
                })
            }
        };
        if chain[replacer].negated {
            return Err(RuleError {
                matcher: Some(replacer),
                offset: None,
                message: "a `not` regex cannot do the replacing".into(),
            });
        }
        let mut compiled = Vec::with_capacity(chain.len());
        for (i, spec) in chain.iter().enumerate() {
            let regex = RegexBuilder::new(&spec.pattern)
                .case_insensitive(!spec.case_sensitive)
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map_err(|e| {
                    let offset = match &e {
                        fancy_regex::Error::ParseError(at, _) => Some(*at),
                        _ => None,
                    };
                    RuleError {
                        matcher: Some(i),
                        offset,
                        message: format!("bad regex: {}", one_line(&e.to_string())),
                    }
                })?;
            compiled.push(Matcher {
                regex,
                negated: spec.negated,
            });
        }
        Ok(Rule {
            action,
            chain: compiled,
            replacer,
            specs: chain,
        })
    }

    /// What the rule does.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// Its regexes as written.
    pub fn chain(&self) -> &[MatchSpec] {
        &self.specs
    }

    fn applies(&self, line: &str) -> bool {
        self.chain
            .iter()
            .all(|m| m.regex.is_match(line).unwrap_or(false) != m.negated)
    }

    /// `key` expanded with the captures of the replacing regex's first
    /// match; `None` if it gave up or does not match.
    fn key(&self, line: &str, key: &str) -> Option<String> {
        let caps = self.chain[self.replacer].regex.captures(line).ok()??;
        let mut out = String::new();
        expand(&caps, key, &mut out);
        out.truncate(floor_char_boundary(&out, MAX_TEXT_BYTES));
        Some(out)
    }

    /// Replaces every match of the replacing regex with `replacement`,
    /// returning the new text and the expansions concatenated; `None` if
    /// the regex gave up (backtracking limit).
    fn replace(&self, line: &str, replacement: &str) -> Option<(String, String)> {
        let regex = &self.chain[self.replacer].regex;
        let mut text = String::with_capacity(line.len());
        let mut expansions = String::new();
        let mut last = 0;
        for caps in regex.captures_iter(line) {
            let caps = caps.ok()?;
            let whole = caps.get(0)?;
            text.push_str(&line[last..whole.start()]);
            let before = expansions.len();
            expand(&caps, replacement, &mut expansions);
            text.push_str(&expansions[before..]);
            last = whole.end();
            // Expansions may repeat captures; keep hostile lines bounded.
            if text.len() > MAX_TEXT_BYTES || expansions.len() > MAX_TEXT_BYTES {
                break;
            }
        }
        text.push_str(&line[last.min(line.len())..]);
        Some((text, expansions))
    }
}

/// Appends `replacement` with its captures filled in: `$N` (all the digits
/// that follow: `$2waterfox` is group 2, then `waterfox`, as the classic
/// rules meant), `${N}` or `${name}`, and `$$` for a dollar sign. A `$`
/// before anything else, or an unknown group, stays as written / empty.
fn expand(caps: &fancy_regex::Captures<'_, str>, replacement: &str, out: &mut String) {
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            if let Some(m) = after[..digits]
                .parse::<usize>()
                .ok()
                .and_then(|i| caps.get(i))
            {
                out.push_str(m.as_str());
            }
            rest = &after[digits..];
        } else if let Some(braced) = after.strip_prefix('{').and_then(|b| b.split_once('}')) {
            let (name, tail) = braced;
            let m = match name.parse::<usize>() {
                Ok(i) => caps.get(i),
                Err(_) => caps.name(name),
            };
            if let Some(m) = m {
                out.push_str(m.as_str());
            }
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
}

/// The largest char boundary at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Bound on the text a rule produces, so that `$1$1$1…` on a long line
/// cannot grow it without limit.
const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The ordered rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// What the rules made of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The text after the rewrites (what is drawn unless hidden).
    pub text: String,
    /// The group the line joined, if any.
    pub group: Option<String>,
    /// Hidden by a `hide` rule or an empty group key.
    pub hidden: bool,
    /// Indexes of the rules that applied, in order.
    pub applied: Vec<usize>,
}

impl Rules {
    /// Rules in the order given.
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules over `line`.
    pub fn apply(&self, line: &str) -> Outcome {
        let mut out = Outcome {
            text: line.to_owned(),
            group: None,
            hidden: false,
            applied: Vec::new(),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.applies(&out.text) {
                continue;
            }
            match &rule.action {
                Action::Rewrite { replacement, group } => {
                    let Some((text, key)) = rule.replace(&out.text, replacement) else {
                        continue;
                    };
                    out.applied.push(i);
                    out.text = text;
                    if *group && out.group.is_none() {
                        out.group = Some(key);
                    }
                }
                Action::Group { key } => {
                    if out.group.is_some() {
                        continue;
                    }
                    let Some(key) = rule.key(&out.text, key) else {
                        continue;
                    };
                    out.applied.push(i);
                    if key.is_empty() {
                        out.hidden = true;
                        break;
                    }
                    out.group = Some(key);
                }
                Action::Hide => {
                    out.applied.push(i);
                    out.hidden = true;
                    break;
                }
            }
        }
        out
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "17:02 :: alice :: firefox [app-gnome-firefox-4242.scope] :: 93.184.216.34 443/tcp :: v 58K / 1.2K ^";

    fn rewrite(pattern: &str, replacement: &str) -> Rule {
        Rule::new(
            Action::Rewrite {
                replacement: replacement.into(),
                group: false,
            },
            vec![MatchSpec::new(pattern)],
        )
        .expect("valid rule")
    }

    fn rules(list: Vec<Rule>) -> Rules {
        Rules::new(list)
    }

    #[test]
    fn case_insensitive_by_default_with_a_flag() {
        let r = rules(vec![rewrite("FIREFOX", "fx")]);
        assert_eq!(r.apply(LINE).text, LINE.replace("firefox", "fx"));
        let mut spec = MatchSpec::new("FIREFOX");
        spec.case_sensitive = true;
        let strict = Rule::new(
            Action::Rewrite {
                replacement: "fx".into(),
                group: false,
            },
            vec![spec],
        )
        .expect("rule");
        let out = rules(vec![strict]).apply(LINE);
        assert_eq!(out.text, LINE);
        assert!(out.applied.is_empty());
    }

    #[test]
    fn rewrites_apply_in_order_to_the_rewritten_line() {
        let r = rules(vec![
            rewrite(r"^(\S+) :: alice :: ", "$1 :: "),
            rewrite(r"^(\S+) :: firefox", "$1 :: web"),
            rewrite(r"\[app-gnome-(\w+)-\d+\.scope\]", "[$1]"),
        ]);
        let out = r.apply(LINE);
        assert_eq!(
            out.text,
            "17:02 :: web [firefox] :: 93.184.216.34 443/tcp :: v 58K / 1.2K ^"
        );
        assert_eq!(out.applied, vec![0, 1, 2]);
        // Every match is replaced.
        let out = rules(vec![rewrite("::", "|")]).apply("a :: b :: c");
        assert_eq!(out.text, "a | b | c");
    }

    #[test]
    fn and_chains_with_negation() {
        let chain = |negated_443: bool| {
            Rule::new(
                Action::Hide,
                vec![
                    MatchSpec::new("firefox"),
                    MatchSpec {
                        negated: negated_443,
                        ..MatchSpec::new(" 443/")
                    },
                ],
            )
            .expect("chain")
        };
        assert!(rules(vec![chain(false)]).apply(LINE).hidden);
        assert!(!rules(vec![chain(true)]).apply(LINE).hidden);
        assert!(
            rules(vec![chain(true)])
                .apply(&LINE.replace(" 443/", " 80/"))
                .hidden
        );
        assert!(
            !rules(vec![chain(false)])
                .apply(&LINE.replace("firefox", "curl"))
                .hidden
        );
    }

    #[test]
    fn choosing_the_replacing_match() {
        let chain = |mark: Option<usize>| {
            let mut specs = vec![
                MatchSpec::new(r"alice"),
                MatchSpec::new(r"firefox \[[^\]]+\]"),
                MatchSpec {
                    negated: true,
                    ..MatchSpec::new("chrome")
                },
            ];
            if let Some(i) = mark {
                specs[i].replaces = true;
            }
            Rule::new(
                Action::Rewrite {
                    replacement: "X".into(),
                    group: false,
                },
                specs,
            )
        };
        // Default: the last non-negated one.
        let out = rules(vec![chain(None).expect("rule")]).apply(LINE);
        assert_eq!(
            out.text,
            "17:02 :: alice :: X :: 93.184.216.34 443/tcp :: v 58K / 1.2K ^"
        );
        let out = rules(vec![chain(Some(0)).expect("rule")]).apply(LINE);
        assert!(out.text.starts_with("17:02 :: X :: firefox ["));
        let e = chain(Some(2)).expect_err("a negated regex cannot replace");
        assert_eq!(e.matcher, Some(2));
        let only_not = Rule::new(
            Action::Hide,
            vec![MatchSpec {
                negated: true,
                ..MatchSpec::new("x")
            }],
        );
        assert!(only_not.is_err());
    }

    #[test]
    fn group_under_the_replacement() {
        let rule = Rule::new(
            Action::Rewrite {
                replacement: ":: $2waterfox ::".into(),
                group: true,
            },
            vec![MatchSpec::new(
                r":: (socket thread |([^:]+ ))\[waterfox\] ::",
            )],
        )
        .expect("classic g rule");
        let r = rules(vec![rule]);
        let a = r.apply("10:00 :: bob :: Socket Thread [waterfox] :: 1.1.1.1 443/tcp");
        let b = r.apply("10:01 :: bob :: Socket Thread [waterfox] :: 8.8.8.8 443/tcp");
        assert_eq!(a.text, "10:00 :: bob :: waterfox :: 1.1.1.1 443/tcp");
        assert_eq!(a.group.as_deref(), Some(":: waterfox ::"));
        assert_eq!(a.group, b.group);
        let c = r.apply("10:01 :: bob :: DNS Res [waterfox] :: 8.8.8.8 53/udp");
        assert_eq!(c.group.as_deref(), Some(":: DNS Res waterfox ::"));
    }

    #[test]
    fn group_keys_and_empty_key_hides() {
        // The classic [rx-group] DNS example.
        let dns = Rule::new(
            Action::Group {
                key: "$1 $2 dns".into(),
            },
            vec![MatchSpec::new(r".*:: (.*?) :: (\S+) 53/udp.*")],
        )
        .expect("group");
        let hide = Rule::new(
            Action::Group { key: "".into() },
            vec![MatchSpec::new("sshd")],
        )
        .expect("empty group");
        let r = rules(vec![dns, hide]);
        let out = r.apply("10:00 :: root :: resolved :: 9.9.9.9 53/udp");
        assert_eq!(out.group.as_deref(), Some("resolved 9.9.9.9 dns"));
        assert_eq!(out.text, "10:00 :: root :: resolved :: 9.9.9.9 53/udp");
        assert!(!out.hidden);
        let out = r.apply("10:00 :: root :: sshd :: 10.0.0.1 22/tcp");
        assert!(out.hidden);
        assert_eq!(out.group, None);
        // The first grouping rule wins.
        let first = Rule::new(
            Action::Group { key: "one".into() },
            vec![MatchSpec::new("resolved")],
        )
        .expect("group");
        let r = rules(vec![first, r.rules()[0].clone()]);
        assert_eq!(
            r.apply("10:00 :: root :: resolved :: 9.9.9.9 53/udp")
                .group
                .as_deref(),
            Some("one")
        );
    }

    #[test]
    fn hide_stops_later_rules() {
        let r = rules(vec![
            Rule::new(Action::Hide, vec![MatchSpec::new(r"::\s*127\.0\.0\.1 ")]).expect("hide"),
            rewrite("x", "y"),
        ]);
        let out = r.apply("10:00 :: x :: x :: 127.0.0.1 631/tcp");
        assert!(out.hidden);
        assert_eq!(out.applied, vec![0]);
    }

    #[test]
    fn bad_regex_says_where() {
        let e = Rule::new(
            Action::Hide,
            vec![MatchSpec::new("ok"), MatchSpec::new("a(b")],
        )
        .expect_err("unclosed");
        assert_eq!(e.matcher, Some(1));
        assert!(e.message.starts_with("bad regex"), "{}", e.message);
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn hostile_lines_and_regexes_stay_bounded() {
        let r = rules(vec![
            rewrite("(.*)", "$1$1$1$1$1$1$1$1"),
            rewrite("(.)", "$1$1"),
            Rule::new(Action::Hide, vec![MatchSpec::new(r"^(a+)+\1b$")]).expect("slow"),
        ]);
        let line = "a".repeat(5_000);
        let out = r.apply(&line);
        assert!(out.text.len() <= 4 * MAX_TEXT_BYTES, "{}", out.text.len());
        assert!(!out.hidden);
    }
}
