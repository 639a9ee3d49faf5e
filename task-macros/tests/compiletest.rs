//! trybuild UI tests: accepted shapes compile, each mistake gives one clear error.
//! Regenerate with `TRYBUILD=overwrite cargo test -p task-macros` and read the diff.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}

/// Off stable, the UI tests do not run (their `.stderr` files pin stable rustc's
/// messages): say so, rather than pass in silence.
#[rustversion::not(stable)]
#[test]
fn ui() {
    eprintln!("SKIPPED: the trybuild UI tests run on a stable toolchain only (their .stderr files are stable rustc's)");
}
