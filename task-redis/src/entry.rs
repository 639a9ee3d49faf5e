//! The format of a list entry: a 4-byte ASCII header, then the envelope.
//!
//! The header is the priority digit and a 3-digit count of earlier deliveries
//! (`"7002"`: priority 7, delivered twice before). Scripts read and rewrite it with
//! plain string operations, without decoding MessagePack. An entry without a valid
//! header (pushed by hand) counts as priority 0, never delivered, all payload.

/// Header length in bytes.
const HEADER: usize = 4;

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
    [b'0' + priority.min(9), digit(d / 100), digit(d / 10), digit(d)]
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
    match entry.get(..HEADER) {
        Some(header) if header.iter().all(u8::is_ascii_digit) => {
            let deliveries = header[1..].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            (header[0] - b'0', deliveries, &entry[HEADER..])
        }
        _ => (0, 0, entry),
    }
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
        assert_eq!(&e[..4], b"7002");
        assert_eq!(decode(&e), (7, 2, &b"\x82abc"[..]));
    }

    #[test]
    fn headers_are_clamped_and_batch_entries_match_single_ones() {
        assert_eq!(&encode(12, 5000, b"")[..], b"9999");
        assert_eq!(&encode(0, 40, b"x")[..], b"0040x");
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
    }

    #[test]
    fn dead_records_keep_colons_in_reason_and_binary_payload() {
        let r = dead_record(17, "bad: really", b"\x00:\xff");
        assert_eq!(parse_dead_record(&r), Some((17, "bad: really".into(), b"\x00:\xff".to_vec())));
        assert_eq!(parse_dead_record(b"nonsense"), None);
    }
}
