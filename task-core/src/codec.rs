//! The one place that calls rmp-serde: named-field MessagePack for envelopes,
//! arguments, results and progress. Swap the wire format here and nowhere else.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// Encodes `value` as MessagePack with fields by name (maps, not arrays), so that
/// arguments read as `{"x": 1, "y": 2}` in the CLI and the dashboard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|e| CodecError::encode(what, e))
}

/// Decodes MessagePack into `T`; the message never chooses the type.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::decode(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Args {
        x: i64,
        y: String,
    }

    #[test]
    fn fields_are_encoded_by_name() {
        let bytes = encode(&Args { x: 1, y: "a".into() }, "args").unwrap();
        // fixmap of 2, then the key "x" as a fixstr
        assert_eq!(bytes[0], 0x82);
        assert_eq!(&bytes[1..3], &[0xa1, b'x']);
        let back: Args = decode(&bytes, "args").unwrap();
        assert_eq!(back, Args { x: 1, y: "a".into() });
    }

    #[test]
    fn wrong_shape_is_a_clear_error() {
        let bytes = encode(&("not", "args"), "args").unwrap();
        let err = decode::<Args>(&bytes, "arguments of task `t`").unwrap_err();
        assert!(err.to_string().starts_with("cannot decode arguments of task `t`: "), "{err}");
    }
}
