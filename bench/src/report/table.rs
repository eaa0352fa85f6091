//! Markdown tables: a header that names each column and how it lines up,
//! then rows of cells.

/// How a column's cells line up.
#[derive(Debug, Clone, Copy)]
pub(super) enum Align {
    /// Names and verdicts.
    Left,
    /// Figures.
    Right,
}

/// Writes a table's header: the row of column names and the row that
/// aligns them.
pub(super) fn head(out: &mut String, columns: &[(&str, Align)]) {
    for (name, _) in columns {
        out.push_str("| ");
        out.push_str(name);
        out.push(' ');
    }
    out.push_str("|\n");
    for (_, align) in columns {
        out.push_str(match align {
            Align::Left => "|---",
            Align::Right => "|---:",
        });
    }
    out.push_str("|\n");
}

/// Writes the header of a table of targets: check, measured, target,
/// result.
pub(super) fn checks_head(out: &mut String) {
    head(
        out,
        &[
            ("check", Align::Left),
            ("measured", Align::Right),
            ("target", Align::Left),
            ("result", Align::Left),
        ],
    );
}

/// Writes one row of `cells`.
pub(super) fn row(out: &mut String, cells: &[&str]) {
    for cell in cells {
        out.push('|');
        // An empty cell is `| |`, not `|  |`.
        if !cell.is_empty() {
            out.push(' ');
            out.push_str(cell);
        }
        out.push(' ');
    }
    out.push_str("|\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_header_and_rows() {
        let mut out = String::new();
        head(&mut out, &[("name", Align::Left), ("figure", Align::Right)]);
        row(&mut out, &["a", "1,000"]);
        row(&mut out, &["**all**", ""]);
        assert_eq!(
            out,
            "| name | figure |\n|---|---:|\n| a | 1,000 |\n| **all** | |\n"
        );
    }
}
