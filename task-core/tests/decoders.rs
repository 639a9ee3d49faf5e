//! Property tests of what decodes bytes from outside: envelopes, arguments, task ids.
//! Arbitrary bytes never panic a decoder, and what is encoded decodes back the same.

use proptest::prelude::*;
use task_core::{Envelope, TaskId};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Args {
    x: i64,
    name: String,
    tags: Vec<String>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_envelope_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
        let _ = Envelope::priority_in(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_arguments_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = task_core::__private::decode_args::<Args>("t", &bytes);
        let _ = task_core::codec::decode::<serde_json::Value>(&bytes, "anything");
    }

    #[test]
    fn envelopes_round_trip(
        task in "[a-z.:_]{1,40}",
        queue in "\\PC{0,30}",
        args in proptest::collection::vec(any::<u8>(), 0..64),
        id in "[^\\s]\\PC{0,59}",
        retries in any::<u32>(),
        priority in 0u8..=9,
        eta in proptest::option::of(any::<i64>()),
        expires in proptest::option::of(any::<i64>()),
        ignore_result in any::<bool>(),
    ) {
        let mut envelope = Envelope::new(task, args, queue);
        envelope.id = id.parse().unwrap();
        envelope.retries = retries;
        envelope.priority = priority;
        envelope.eta_ms = eta;
        envelope.expires_ms = expires;
        envelope.ignore_result = ignore_result;
        let back = Envelope::decode(&envelope.encode().unwrap()).unwrap();
        prop_assert_eq!(&back, &envelope);
        prop_assert_eq!(Envelope::priority_in(&envelope.encode().unwrap()), priority);
    }

    #[test]
    fn arguments_round_trip(x in any::<i64>(), name in "\\PC{0,40}", tags in proptest::collection::vec("\\PC{0,8}", 0..5)) {
        let args = Args { x, name, tags };
        let bytes = task_core::__private::encode_args("t", &args).unwrap();
        prop_assert_eq!(task_core::__private::decode_args::<Args>("t", &bytes).unwrap(), args);
    }

    #[test]
    fn task_ids_round_trip_as_text(id in "[^\\s]\\PC{0,79}") {
        let parsed: TaskId = id.parse().unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), parsed);
    }
}
