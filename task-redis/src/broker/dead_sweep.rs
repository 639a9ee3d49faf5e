//! Which dead letters a `retry_dead` goes through: those the list held when it began.
//!
//! A retried letter can be buried again while the retry still runs (a task no worker
//! knows comes back within a round trip). The list is newest first (`LPUSH`) and the
//! retry walks it from the oldest end, so the letters it has not looked at yet are
//! always the ones just past the unreadable ones it leaves in place; letters buried
//! since are past the count it took at the start, and it stops there. Without the
//! count a retry met its own letters again, counted them twice and could go on for as
//! long as a worker kept burying them.

/// A walk over the dead letters a list held at its start, oldest first, by chunks.
#[derive(Debug)]
pub(super) struct DeadSweep {
    /// The list's length when the walk began: no more letters than that are looked at.
    total: usize,
    /// Letters looked at so far (retried, gone meanwhile, or left).
    seen: usize,
    /// Letters left where they were (unreadable): they stay at the oldest end.
    left: usize,
}

/// The most letters read in one `LRANGE`.
const CHUNK: usize = 256;

impl DeadSweep {
    pub(super) fn new(total: usize) -> Self {
        DeadSweep { total, seen: 0, left: 0 }
    }

    /// The `LRANGE` bounds (from the tail, inclusive) of the next chunk, at most `wanted`
    /// letters; `None` when every letter of the start has been looked at.
    pub(super) fn next(&self, wanted: usize) -> Option<(isize, isize)> {
        let count = (self.total - self.seen).min(wanted).min(CHUNK);
        if count == 0 {
            return None;
        }
        let end = isize::try_from(self.left).ok()?.checked_add(1)?;
        let start = end.checked_add(isize::try_from(count - 1).ok()?)?;
        Some((-start, -end))
    }

    /// One letter looked at: `left` when it stays in the list.
    pub(super) fn saw(&mut self, left: bool) {
        self.seen += 1;
        self.left += usize::from(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_reads_from_the_oldest_end_past_the_letters_it_leaves() {
        let mut sweep = DeadSweep::new(3);
        assert_eq!(sweep.next(10), Some((-3, -1)), "the three oldest");
        sweep.saw(true);
        sweep.saw(false);
        assert_eq!(sweep.next(10), Some((-2, -2)), "one left, past the one that stayed");
        sweep.saw(false);
        assert_eq!(sweep.next(10), None, "letters buried since the start are not met");
    }

    #[test]
    fn a_sweep_takes_no_more_than_wanted_nor_a_chunk() {
        let sweep = DeadSweep::new(1000);
        assert_eq!(sweep.next(2), Some((-2, -1)));
        assert_eq!(sweep.next(5000), Some((-256, -1)));
        assert_eq!(sweep.next(0), None);
        assert_eq!(DeadSweep::new(0).next(10), None, "an empty list");
    }
}
