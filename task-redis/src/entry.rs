//! The format of a list entry: a 5-byte header, then the envelope.
//!
//! The header is the byte `0xC1`, the priority digit and a 3-digit count of earlier
//! deliveries (`"\xC17002"`: priority 7, delivered twice before). `0xC1` is never used
//! by MessagePack and never valid in UTF-8, so no payload (MessagePack, JSON, text) can
//! be taken for a header: a payload pushed by hand, even one that starts with digits,
//! is all payload, priority 0, never delivered. Scripts read and rewrite the header with
//! plain string operations, without decoding MessagePack.
//!
//! The 4-digit header of earlier releases (no marker) is still read, but only before a
//! MessagePack map (an envelope), so that old entries in a queue keep their priority and
//! count across an upgrade.

/// The header's first byte.
const MARK: u8 = 0xC1;
/// Header length in bytes.
const HEADER: usize = 5;
/// The header of earlier releases: four digits.
const LEGACY: usize = 4;

/// Builds an entry.
pub(crate) fn encode(priority: u8, deliveries: u32, payload: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(HEADER + payload.len());
    entry.extend_from_slice(&header(priority, deliveries));
    entry.extend_from_slice(payload);
    entry
}

/// The header alone.
fn header(priority: u8, deliveries: u32) -> [u8; HEADER] {
    let d = deliveries.min(999);
    // Both are at most one digit each after these bounds, so the casts cannot truncate.
    let digit = |n: u32| b'0' + u8::try_from(n % 10).unwrap_or(0);
    [MARK, b'0' + priority.min(9), digit(d / 100), digit(d / 10), digit(d)]
}

/// The first byte of a MessagePack map (fixmap, map16, map32): what an envelope starts with.
fn starts_a_map(byte: u8) -> bool {
    matches!(byte, 0x80..=0x8f | 0xde | 0xdf)
}

/// Priority and deliveries from four digits.
fn digits(header: &[u8]) -> Option<(u8, u32)> {
    header.iter().all(u8::is_ascii_digit).then(|| {
        let deliveries = header[1..].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        (header[0] - b'0', deliveries)
    })
}

/// A new message as an entry, written straight into a command's buffer (no entry of
/// its own is built first): for batches.
pub(crate) struct NewEntry<'m> {
    pub(crate) priority: u8,
    pub(crate) payload: &'m [u8],
}

impl redis::ToRedisArgs for NewEntry<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(&header(self.priority, 0));
        let _ = arg.write_all(self.payload);
    }
}

/// Splits an entry: (priority, earlier deliveries, payload).
pub(crate) fn decode(entry: &[u8]) -> (u8, u32, &[u8]) {
    if entry.first() == Some(&MARK)
        && let Some((priority, deliveries)) = entry.get(1..HEADER).and_then(digits)
    {
        return (priority, deliveries, &entry[HEADER..]);
    }
    if entry.get(LEGACY).copied().is_some_and(starts_a_map)
        && let Some((priority, deliveries)) = entry.get(..LEGACY).and_then(digits)
    {
        return (priority, deliveries, &entry[LEGACY..]);
    }
    (0, 0, entry)
}

/// A dead-letter record: `at_ms:reason_len:reason` then the payload.
pub(crate) fn dead_record(at_ms: i64, reason: &str, payload: &[u8]) -> Vec<u8> {
    let mut record = format!("{at_ms}:{}:{reason}", reason.len()).into_bytes();
    record.extend_from_slice(payload);
    record
}

/// Parses a dead-letter record: (at_ms, reason, payload).
pub(crate) fn parse_dead_record(record: &[u8]) -> Option<(i64, String, Vec<u8>)> {
    let first = record.iter().position(|&b| b == b':')?;
    let at_ms: i64 = std::str::from_utf8(&record[..first]).ok()?.parse().ok()?;
    let rest = &record[first + 1..];
    let second = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..second]).ok()?.parse().ok()?;
    let body = &rest[second + 1..];
    let reason = String::from_utf8_lossy(body.get(..len)?).into_owned();
    Some((at_ms, reason, body[len..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = encode(7, 2, b"\x82abc");
        assert_eq!(&e[..5], b"\xC17002");
        assert_eq!(decode(&e), (7, 2, &b"\x82abc"[..]));
    }

    #[test]
    fn headers_are_clamped_and_batch_entries_match_single_ones() {
        assert_eq!(&encode(12, 5000, b"")[..], b"\xC19999");
        assert_eq!(&encode(0, 40, b"x")[..], b"\xC10040x");
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(NewEntry { priority: 3, payload: b"\x82abc" });
        let args: Vec<&[u8]> =
            cmd.args_iter().filter_map(|a| if let redis::Arg::Simple(a) = a { Some(a) } else { None }).collect();
        assert_eq!(args, [&b"RPUSH"[..], &encode(3, 0, b"\x82abc")[..]]);
    }

    #[test]
    fn hand_pushed_entries_are_all_payload() {
        assert_eq!(decode(b"garbage"), (0, 0, &b"garbage"[..]));
        assert_eq!(decode(b"ab"), (0, 0, &b"ab"[..]));
        // Digits first, as JSON or text may start: all payload, nothing stripped.
        assert_eq!(decode(b"2024-11-30 report"), (0, 0, &b"2024-11-30 report"[..]));
        assert_eq!(decode(b"12345"), (0, 0, &b"12345"[..]));
        assert_eq!(decode(b"\xC1x000abc"), (0, 0, &b"\xC1x000abc"[..]), "a mark without digits");
    }

    #[test]
    fn entries_of_earlier_releases_keep_their_header() {
        assert_eq!(decode(b"7002\x82abc"), (7, 2, &b"\x82abc"[..]));
        assert_eq!(decode(b"7002{\"a\": 1}"), (0, 0, &b"7002{\"a\": 1}"[..]), "not before an envelope");
    }

    #[test]
    fn dead_records_keep_colons_in_reason_and_binary_payload() {
        let r = dead_record(17, "bad: really", b"\x00:\xff");
        assert_eq!(parse_dead_record(&r), Some((17, "bad: really".into(), b"\x00:\xff".to_vec())));
        assert_eq!(parse_dead_record(b"nonsense"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_entries_and_records_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let (priority, _, payload) = decode(&bytes);
            proptest::prop_assert!(priority <= 9 && payload.len() <= bytes.len());
            let _ = parse_dead_record(&bytes);
        }

        #[test]
        fn entries_and_records_round_trip(
            priority in 0u8..=9,
            deliveries in 0u32..=999,
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            at_ms in proptest::prelude::any::<i64>(),
            reason in "\\PC{0,40}",
        ) {
            let entry = encode(priority, deliveries, &payload);
            proptest::prop_assert_eq!(decode(&entry), (priority, deliveries, payload.as_slice()));
            let record = dead_record(at_ms, &reason, &payload);
            proptest::prop_assert_eq!(parse_dead_record(&record), Some((at_ms, reason, payload)));
        }
    }
}
