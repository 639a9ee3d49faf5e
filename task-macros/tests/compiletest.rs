//! trybuild UI tests: accepted shapes compile, each mistake gives one clear error.
//! Regenerate with `TRYBUILD=overwrite cargo test -p task-macros` and read the diff.

#[rustversion::stable]
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
