//! How a benchmark hands one number to `tests/bench`: with
//! `BENCH_RECORD=FILE`, one line `scenario<TAB>side<TAB>value` appended
//! (`tests/bench-report` reads them). Included by path into each bench, so
//! no crate depends on another for four lines.

/// Appends the record when `BENCH_RECORD` names a file; otherwise nothing.
pub fn record(scenario: &str, side: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("BENCH_RECORD") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("BENCH_RECORD names a file this benchmark can append to");
        writeln!(f, "{scenario}\t{side}\t{value}").expect("writing the BENCH_RECORD file");
    }
}
