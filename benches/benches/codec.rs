//! Envelope encode/decode: the cost every task pays twice on the wire.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use task_core::Envelope;

#[derive(Serialize, Deserialize)]
struct Args {
    user_id: u64,
    email: String,
    tags: Vec<String>,
}

fn envelope() -> Envelope {
    let args = Args { user_id: 42, email: "someone@example.com".into(), tags: vec!["a".into(), "b".into()] };
    Envelope::new("app::emails::send_welcome", rmp_serde_bytes(&args), "default")
}

fn rmp_serde_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // The public way to encode arguments: through a Signature's encoder.
    task_core::__private::encode_args("bench", value).expect("encodes")
}

fn bench(c: &mut Criterion) {
    let env = envelope();
    let bytes = env.encode().unwrap();
    let mut group = c.benchmark_group("envelope");
    group.bench_function("encode", |b| b.iter(|| black_box(&env).encode().unwrap()));
    group.bench_function("decode", |b| {
        b.iter(|| Envelope::decode(black_box(&bytes)).unwrap());
    });
    group.finish();
    println!("envelope size: {} bytes", bytes.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
