//! Output of the admin commands: pretty JSON, or aligned tables on a terminal;
//! a closed pipe is not an error.

#[allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// Output

pub(super) struct Output {
    pub(super) json: bool,
}

impl Output {
    pub(super) fn json(&self, v: &Value) -> Result<(), String> {
        let s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
        emit(&format!("{s}\n"))
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn emit(s: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing output: {e}")),
        _ => Ok(()),
    }
}

/// Widest a table cell gets before it is cut with `…`.
pub(super) const MAX_CELL: usize = 60;

/// Formats rows as left-aligned columns separated by two spaces, with a header line.
/// Cells are cut to [`MAX_CELL`] characters; trailing spaces are trimmed.
pub(super) fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..headers.len()).map(|i| clip(r.get(i).map_or("", String::as_str), MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header_row).chain(&cells) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<w$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Renders a JSON value for a table cell: strings bare, null empty, float arrays (vectors)
/// rounded to 4 decimals and cut after 3 elements, everything else as compact JSON.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.replace(['\n', '\t'], " "),
        Value::Array(items) if items.iter().all(Value::is_number) && items.iter().any(Value::is_f64) => {
            let short = |x: &Value| {
                let f = x.as_f64().unwrap_or(f64::NAN);
                let s = format!("{f:.4}");
                let s = s.trim_end_matches('0');
                s.strip_suffix('.').unwrap_or(s).to_string()
            };
            let head: Vec<String> = items.iter().take(3).map(short).collect();
            if items.len() > 3 {
                format!("[{}, … ({} dims)]", head.join(", "), items.len())
            } else {
                format!("[{}]", head.join(", "))
            }
        }
        other => other.to_string(),
    }
}
