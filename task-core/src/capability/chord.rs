//! The join of a chord: each member's result recorded once, and the callback sent once
//! when the last member is in, however often members are delivered.

use std::time::Duration;

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::id::TaskId;
use crate::link::ChordMember;
use crate::message::Message;

/// Where chords wait for their members.
pub trait ChordStore: Send + Sync {
    /// Opens the join of a chord of `size` members whose callback (an encoded
    /// [`Callback`](crate::Callback), still without the results) has the id `chord` and
    /// goes to `queue`. Kept for `ttl`.
    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Records a member's encoded result, once per member however often it is
    /// delivered (a member's first result counts; a redelivered one does not count
    /// again). When every member is in and the chord is still open, returns the
    /// results in member order with the callback.
    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>>;

    /// Sends the callback `message` and closes the chord, in one step; false (nothing
    /// sent) when it was closed already (sent, or failed).
    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Closes the chord as failed, so its callback is never sent; true when this call
    /// closed it (false: closed already).
    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>>;
}

/// Where a chord stands after a member reported ([`ChordStore::chord_join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChordJoin {
    /// Members are still running: this many.
    Waiting(u32),
    /// Every member is in: the callback (as given to `chord_open`) and the results in
    /// member order. The caller sends the callback with [`ChordStore::chord_fire`].
    Complete {
        /// The encoded callback.
        callback: Vec<u8>,
        /// Each member's encoded result, in member order.
        results: Vec<Vec<u8>>,
    },
    /// The callback was sent or the chord failed already; or the join is unknown
    /// (expired): nothing to do.
    Closed,
}
