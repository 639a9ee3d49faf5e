//! The one place that knows the wire format (rmp-serde and rmp): named-field
//! MessagePack for envelopes, arguments, results and progress, and the two byte-level
//! edits workflows need (a result spliced into the next task's arguments). Swap the
//! wire format here and nowhere else: the CLI and the dashboard read and write
//! arguments and results through [`encode`] and [`decode`] too.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// Encodes `value` as MessagePack with fields by name (maps, not arrays), so that
/// arguments read as `{"x": 1, "y": 2}` in the CLI and the dashboard.
pub fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>, CodecError> {
    encode_with_capacity(value, 0, what)
}

/// Encodes `value` into a buffer made with room for `capacity` bytes.
pub(crate) fn encode_with_capacity<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
    what: &str,
) -> Result<Vec<u8>, CodecError> {
    encode_named(value, capacity, || what.to_owned())
}

/// [`encode_with_capacity`], with the name of what is encoded written only when it
/// fails: for what runs once per task with a name made for it.
pub(crate) fn encode_named<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
    what: impl FnOnce() -> String,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(capacity);
    rmp_serde::encode::write_named(&mut out, value).map_err(|e| CodecError::encode(what(), e))?;
    Ok(out)
}

/// Decodes MessagePack into `T`; the message never chooses the type.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CodecError> {
    decode_named(bytes, || what.to_owned())
}

/// [`decode`], with the name of what is decoded written only when it fails.
pub(crate) fn decode_named<T: DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|e| CodecError::decode(what(), e))
}

/// Adds `key: value` to the encoded argument map `map`, where `value` is already
/// encoded (a task's result): how a chain hands one step's result to the next without
/// decoding it into a type. The key must not be in the map yet.
pub(crate) fn insert_into_map(map: &[u8], key: &str, value: &[u8]) -> Result<Vec<u8>, CodecError> {
    let what = "the arguments of the next task";
    let mut rest = map;
    let len = rmp::decode::read_map_len(&mut rest).map_err(|e| CodecError::decode(what, e.to_string()))?;
    let mut out = Vec::with_capacity(map.len() + key.len() + value.len() + 8);
    rmp::encode::write_map_len(&mut out, len + 1).map_err(|e| CodecError::encode(what, e.to_string()))?;
    rmp::encode::write_str(&mut out, key).map_err(|e| CodecError::encode(what, e.to_string()))?;
    out.extend_from_slice(value);
    out.extend_from_slice(rest);
    Ok(out)
}

/// Encodes already encoded values as one array (a chord's results, in order).
pub(crate) fn array_of(values: &[Vec<u8>]) -> Result<Vec<u8>, CodecError> {
    let len = u32::try_from(values.len()).map_err(|e| CodecError::encode("the chord's results", e))?;
    let mut out = Vec::with_capacity(values.iter().map(Vec::len).sum::<usize>() + 5);
    rmp::encode::write_array_len(&mut out, len)
        .map_err(|e| CodecError::encode("the chord's results", e.to_string()))?;
    for value in values {
        out.extend_from_slice(value);
    }
    Ok(out)
}

#[doc(hidden)]
/// Decodes a task's arguments from the envelope. (The error's text is only written when
/// there is an error: this runs once per task.)
pub fn decode_args<A: DeserializeOwned>(task: &str, bytes: &[u8]) -> Result<A, CodecError> {
    decode_named(bytes, || args_of(task))
}

#[doc(hidden)]
/// Encodes a task's arguments for the envelope.
pub fn encode_args<A: Serialize>(task: &str, args: &A) -> Result<Vec<u8>, CodecError> {
    encode_named(args, 0, || args_of(task))
}

fn args_of(task: &str) -> String {
    format!("the arguments of task `{task}`")
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

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Three {
        first: Vec<i64>,
        x: i64,
        y: String,
    }

    #[test]
    fn a_value_is_spliced_into_an_argument_map() {
        let rest = encode(&Args { x: 1, y: "a".into() }, "args").unwrap();
        let value = encode(&vec![4i64, 5], "result").unwrap();
        let spliced = insert_into_map(&rest, "first", &value).unwrap();
        let back: Three = decode(&spliced, "args").unwrap();
        assert_eq!(back, Three { first: vec![4, 5], x: 1, y: "a".into() });
    }

    #[test]
    fn splicing_crosses_the_fixmap_boundary() {
        // 15 entries fit a fixmap; the 16th needs a map16 header.
        let map: std::collections::BTreeMap<String, u8> = (0..15).map(|i| (format!("k{i:02}"), i)).collect();
        let spliced = insert_into_map(&encode(&map, "m").unwrap(), "z", &encode(&99u8, "v").unwrap()).unwrap();
        assert_eq!(spliced[0], 0xde);
        let back: std::collections::BTreeMap<String, u8> = decode(&spliced, "m").unwrap();
        assert_eq!((back.len(), back["z"], back["k14"]), (16, 99, 14));
    }

    #[test]
    fn splicing_into_a_non_map_is_an_error() {
        let err = insert_into_map(&encode(&[1, 2], "a").unwrap(), "k", &[0x01]).unwrap_err();
        assert!(err.to_string().contains("the arguments of the next task"), "{err}");
    }

    #[test]
    fn results_are_joined_into_an_array() {
        let parts: Vec<Vec<u8>> = (1..=20i64).map(|i| encode(&i, "r").unwrap()).collect();
        let back: Vec<i64> = decode(&array_of(&parts).unwrap(), "rs").unwrap();
        assert_eq!(back, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn wrong_shape_is_a_clear_error() {
        let bytes = encode(&("not", "args"), "args").unwrap();
        let err = decode::<Args>(&bytes, "arguments of task `t`").unwrap_err();
        assert!(err.to_string().starts_with("cannot decode arguments of task `t`: "), "{err}");
    }
}
