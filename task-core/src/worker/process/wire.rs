//! What a pool's supervisor and its children say to each other over the child's Unix
//! socket: MessagePack frames, each behind its length (a `u32`, big-endian).
//!
//! A child says who it is, when a run with a hard time limit starts (with the
//! delivery, so that the supervisor can end the run itself if it must kill the child),
//! when such a run is settled, and why it stops. The supervisor only ever says "stop";
//! the end of the stream says it too (the supervisor is gone).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::{Delivery, Receipt};
use crate::worker::WorkerReport;

/// The largest frame either side accepts: a delivery is at most the app's message
/// size limit, far below this.
const MAX_FRAME: usize = 256 << 20;

/// From a child to its supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ToSupervisor {
    /// The first frame: the consumer id the supervisor gave the child.
    Hello { id: String },
    /// The child is a worker now: it heartbeats and fetches.
    Ready,
    /// A run with a hard time limit started (Unix ms), on `delivery`.
    Started { task: String, hard_ms: u64, started_ms: i64, delivery: WireDelivery },
    /// That run's body ended (its result is being stored): no kill for it.
    Ran { task: String },
    /// A run is settled, but its body still runs (a plain `fn` past its hard limit):
    /// only the child's end stops it.
    Stranded { task: String },
    /// The child stops, and what it did.
    Bye { why: Why, report: Counts },
}

/// From a supervisor to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ToChild {
    /// Stop gracefully (the pool shuts down).
    Stop,
}

/// Why a child stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Why {
    /// Its supervisor said stop, or went away.
    Supervisor,
    /// Its own signal (Ctrl-C, SIGTERM) or the program's stop future.
    Signal,
    /// `celerity control shutdown`: the whole pool stops.
    Remote,
    /// `max_tasks_per_child` runs done.
    MaxTasks,
    /// Over `max_memory_per_child` after a run.
    MaxMemory,
    /// A plain `fn` runs on past its hard time limit: only a kill stops it.
    Stranded,
}

/// A [`Delivery`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireDelivery {
    queue: String,
    priority: u8,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    delivery_count: u32,
    #[serde(with = "serde_bytes")]
    receipt: Vec<u8>,
}

impl From<&Delivery> for WireDelivery {
    fn from(d: &Delivery) -> Self {
        Self {
            queue: d.queue.clone(),
            priority: d.priority,
            payload: d.payload.clone(),
            delivery_count: d.delivery_count,
            receipt: d.receipt.as_bytes().to_vec(),
        }
    }
}

impl From<WireDelivery> for Delivery {
    fn from(d: WireDelivery) -> Self {
        Delivery::new(d.queue, d.priority, d.payload, d.delivery_count, Receipt::new(d.receipt))
    }
}

/// A [`WorkerReport`] on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts([u64; 8]);

impl From<WorkerReport> for Counts {
    fn from(r: WorkerReport) -> Self {
        Self([r.succeeded, r.failed, r.retried, r.revoked, r.rate_limited, r.dead_lettered, r.released, r.refused])
    }
}

impl Counts {
    /// Adds `self` to `report`.
    pub(crate) fn add_to(self, report: &mut WorkerReport) {
        let [succeeded, failed, retried, revoked, rate_limited, dead_lettered, released, refused] = self.0;
        report.succeeded += succeeded;
        report.failed += failed;
        report.retried += retried;
        report.revoked += revoked;
        report.rate_limited += rate_limited;
        report.dead_lettered += dead_lettered;
        report.released += released;
        report.refused += refused;
    }
}

/// `frame` behind its length.
fn encode<T: Serialize>(frame: &T) -> std::io::Result<Vec<u8>> {
    let bytes = rmp_serde::to_vec(frame).map_err(std::io::Error::other)?;
    let len = u32::try_from(bytes.len()).ok().filter(|n| (*n as usize) <= MAX_FRAME);
    let len = len.ok_or_else(|| std::io::Error::other(format!("a pool frame of {} bytes", bytes.len())))?;
    let mut framed = Vec::with_capacity(4 + bytes.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    Ok(framed)
}

/// The length a frame's first four bytes announce, refused past [`MAX_FRAME`].
fn length(prefix: [u8; 4]) -> std::io::Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a pool frame of {len} bytes, over {MAX_FRAME}"),
        ));
    }
    Ok(len)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::io::Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes one frame (the supervisor's side).
pub(crate) async fn write<W, T>(out: &mut W, frame: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    out.write_all(&encode(frame)?).await?;
    out.flush().await
}

/// Reads one frame; `None` at the end of the stream (between frames).
pub(crate) async fn read<R, T>(input: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncRead + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut prefix = [0u8; 4];
    match input.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = vec![0u8; length(prefix)?];
    input.read_exact(&mut bytes).await?;
    decode(&bytes).map(Some)
}

/// Writes one frame, blocking (the child's side: a frame must be out before a task
/// that may never yield starts, whatever its runtime can still schedule).
pub(crate) fn write_blocking<W: std::io::Write, T: Serialize>(out: &mut W, frame: &T) -> std::io::Result<()> {
    out.write_all(&encode(frame)?)?;
    out.flush()
}

/// Reads one frame, blocking; `None` at the end of the stream.
pub(crate) fn read_blocking<R: std::io::Read, T: for<'de> Deserialize<'de>>(
    input: &mut R,
) -> std::io::Result<Option<T>> {
    let mut prefix = [0u8; 4];
    match input.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut bytes = vec![0u8; length(prefix)?];
    input.read_exact(&mut bytes)?;
    decode(&bytes).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery::new("q".into(), 3, b"payload".to_vec(), 2, Receipt::new(vec![0, 1, 255]))
    }

    #[tokio::test]
    async fn frames_round_trip_in_order_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let frames = vec![
            ToSupervisor::Hello { id: "c1".into() },
            ToSupervisor::Ready,
            ToSupervisor::Started { task: "t".into(), hard_ms: 1500, started_ms: 7, delivery: (&delivery()).into() },
            ToSupervisor::Ran { task: "t".into() },
            ToSupervisor::Stranded { task: "t".into() },
            ToSupervisor::Bye {
                why: Why::MaxTasks,
                report: WorkerReport { succeeded: 4, ..Default::default() }.into(),
            },
        ];
        let sent = frames.clone();
        let writer = tokio::spawn(async move {
            for frame in &sent {
                write(&mut a, frame).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(frame) = read::<_, ToSupervisor>(&mut b).await.unwrap() {
            got.push(frame);
        }
        writer.await.unwrap();
        assert_eq!(got, frames);
        let ToSupervisor::Started { delivery: wire, .. } = &got[2] else { unreachable!() };
        let back = Delivery::from(wire.clone());
        assert_eq!((back.queue.as_str(), back.priority, back.delivery_count), ("q", 3, 2));
        assert_eq!((back.payload.as_slice(), back.receipt.as_bytes()), (&b"payload"[..], &[0, 1, 255][..]));
    }

    #[tokio::test]
    async fn a_cut_or_hostile_frame_is_an_error_not_a_hang_or_a_huge_allocation() {
        let mut cut: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(read::<_, ToChild>(&mut cut).await.is_err());
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let e = read::<_, ToChild>(&mut huge).await.unwrap_err();
        assert!(e.to_string().contains("over"), "{e}");
        let mut garbage: &[u8] = &[0, 0, 0, 1, 0xc1];
        assert_eq!(read::<_, ToChild>(&mut garbage).await.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn blocking_frames_read_as_async_ones_and_the_other_way() {
        let mut bytes = Vec::new();
        write_blocking(&mut bytes, &ToSupervisor::Ran { task: "t".into() }).unwrap();
        write_blocking(&mut bytes, &ToChild::Stop).unwrap();
        let mut input = bytes.as_slice();
        let first: ToSupervisor = read_blocking(&mut input).unwrap().unwrap();
        assert_eq!(first, ToSupervisor::Ran { task: "t".into() });
        assert_eq!(read_blocking::<_, ToChild>(&mut input).unwrap(), Some(ToChild::Stop));
        assert_eq!(read_blocking::<_, ToChild>(&mut input).unwrap(), None);
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(read_blocking::<_, ToChild>(&mut huge).is_err());
    }

    #[test]
    fn counts_add_up_to_a_report() {
        let mut total = WorkerReport { failed: 1, ..Default::default() };
        Counts::from(WorkerReport { succeeded: 2, failed: 3, refused: 1, ..Default::default() }).add_to(&mut total);
        assert_eq!((total.succeeded, total.failed, total.refused), (2, 4, 1));
    }
}
