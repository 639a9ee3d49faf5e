//! Printing: aligned tables for people, JSON for scripts.

use serde_json::Value;

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints a JSON value, pretty.
pub(crate) fn json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// Unix ms as an RFC 3339 time.
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

/// How long ago `ms` was, for people: "3.2s", "4m", "2h".
pub(crate) fn age(ms: i64) -> String {
    let secs = (chrono::Utc::now().timestamp_millis() - ms).max(0) as f64 / 1000.0;
    match secs {
        s if s < 60.0 => format!("{s:.1}s"),
        s if s < 3600.0 => format!("{:.0}m", s / 60.0),
        s => format!("{:.0}h", s / 3600.0),
    }
}
