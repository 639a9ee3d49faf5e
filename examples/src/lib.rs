//! Runnable examples of Celerity: `cargo run --example quickstart` and the
//! `demo-worker` binary (`cargo run -p celerity-examples --bin demo-worker -- worker -c 4`).
