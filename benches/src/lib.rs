//! Criterion benchmarks of Celerity; the benches live in `benches/`.
//! Run with `cargo bench -p celerity-benches` (add `-- --quick` for a short run).
