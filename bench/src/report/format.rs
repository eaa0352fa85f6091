//! How figures are written: thousands separators, units, signs and runs
//! of ids.

use std::time::Duration;

/// Nanoseconds without unit, with a decimal only below 100 ns where it
/// still means something, e.g. `2,812` or `0.4`.
pub fn fmt_ns_num(ns: f64) -> String {
    fmt_num(ns, if ns.abs() < 100.0 { 1 } else { 0 })
}

/// [`fmt_ns_num`] with its unit: `2,812 ns`.
pub fn fmt_ns(ns: f64) -> String {
    format!("{} ns", fmt_ns_num(ns))
}

/// [`fmt_ns`] with an explicit sign, for differences: `+410 ns`.
pub fn fmt_ns_delta(ns: f64) -> String {
    let s = fmt_ns(ns);
    if s.starts_with('-') || s.starts_with("0 ") || s.starts_with("0.0 ") {
        s
    } else {
        format!("+{s}")
    }
}

/// Milliseconds with two significant decimals below 10 ms, e.g. `0.84 ms`,
/// `12.3 ms`, `1,250 ms`.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    let decimals = if ms < 10.0 {
        2
    } else if ms < 100.0 {
        1
    } else {
        0
    };
    format!("{} ms", fmt_num(ms, decimals))
}

/// Whole seconds, or milliseconds below one: `2 s`, `300 ms`.
pub fn fmt_wait(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", fmt_num(d.as_secs_f64(), 0))
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A latency, `None` meaning not within `wait`: `> 2 s`.
pub fn fmt_latency(d: Option<Duration>, wait: Duration) -> String {
    match d {
        Some(d) => fmt_ms(d),
        None => format!("> {}", fmt_wait(wait)),
    }
}

/// A percentage with one decimal, e.g. `2.8 %`.
pub fn fmt_pct(pct: f64) -> String {
    // -0.04 would otherwise print as "-0.0 %".
    let pct = if pct.abs() < 0.05 { 0.0 } else { pct };
    format!("{pct:.1} %")
}

/// `x` with `decimals` decimals and thousands separators, e.g. `12,345.6`.
pub fn fmt_num(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Sorted ids with runs of consecutive ids shortened, e.g. `3, 7–9`.
pub fn fmt_ids<'a>(ids: impl IntoIterator<Item = &'a u32>) -> String {
    let mut ids: Vec<u32> = ids.into_iter().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}–{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// A paced rate, or `unpaced`: `1,000 conn/s`.
pub fn rate_label(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{} conn/s", fmt_num(r, 0)),
        None => "unpaced".to_owned(),
    }
}

/// How many times `without` `with` is, e.g. `4.10×`; `—` when `without`
/// is zero (a ratio to nothing says nothing).
pub fn fmt_ratio(with: f64, without: f64) -> String {
    if without > 0.0 {
        format!("{:.2}×", with / without)
    } else {
        "—".to_owned()
    }
}

/// Figures of every round, comma-separated, or `—` when there are none.
pub(super) fn fmt_list(xs: &[f64], fmt: impl Fn(f64) -> String) -> String {
    if xs.is_empty() {
        return "—".to_owned();
    }
    xs.iter().map(|x| fmt(*x)).collect::<Vec<_>>().join(", ")
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_nanoseconds() {
        assert_eq!(fmt_ns(2_812.4), "2,812 ns");
        assert_eq!(fmt_ns(99.94), "99.9 ns");
        assert_eq!(fmt_ns(0.44), "0.4 ns");
        assert_eq!(fmt_ns_num(123_456.7), "123,457");
        assert_eq!(fmt_ns_delta(410.2), "+410 ns");
        assert_eq!(fmt_ns_delta(-20.0), "-20.0 ns");
        assert_eq!(fmt_ns_delta(-150.0), "-150 ns");
        assert_eq!(fmt_ns_delta(0.01), "0.0 ns");
        assert_eq!(fmt_ns_delta(0.5), "+0.5 ns");
    }

    #[test]
    fn formats_percent_and_numbers() {
        assert_eq!(fmt_pct(2.84), "2.8 %");
        assert_eq!(fmt_pct(-0.04), "0.0 %");
        assert_eq!(fmt_pct(-1.25), "-1.2 %");
        assert_eq!(fmt_num(1234567.891, 1), "1,234,567.9");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(1000.0, 0), "1,000");
        assert_eq!(fmt_num(-12345.0, 0), "-12,345");
        assert_eq!(fmt_num(-0.01, 1), "0.0");
        assert_eq!(fmt_num(0.0, 2), "0.00");
    }

    #[test]
    fn shortens_id_runs() {
        assert_eq!(fmt_ids(&[9, 3, 7, 8, 8]), "3, 7–9");
        assert_eq!(fmt_ids(&[707, 709, 710, 711]), "707, 709–711");
        assert_eq!(fmt_ids(&[]), "");
    }

    #[test]
    fn formats_latencies() {
        let wait = Duration::from_secs(2);
        assert_eq!(fmt_ms(Duration::from_micros(840)), "0.84 ms");
        assert_eq!(fmt_ms(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(fmt_ms(Duration::from_millis(1_250)), "1,250 ms");
        assert_eq!(
            fmt_latency(Some(Duration::from_micros(4_410)), wait),
            "4.41 ms"
        );
        assert_eq!(fmt_latency(None, wait), "> 2 s");
        assert_eq!(fmt_wait(wait), "2 s");
        assert_eq!(fmt_wait(Duration::from_millis(300)), "300 ms");
        assert_eq!(rate_label(Some(1_000.0)), "1,000 conn/s");
        assert_eq!(rate_label(None), "unpaced");
    }

    #[test]
    fn formats_ratios() {
        assert_eq!(fmt_ratio(24.6, 6.0), "4.10×");
        assert_eq!(fmt_ratio(5.0, 5.0), "1.00×");
        assert_eq!(fmt_ratio(3.0, 0.0), "—");
    }
}
