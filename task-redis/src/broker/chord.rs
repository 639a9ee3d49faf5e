//! Workflow sends in Redis. Chord joins: one hash per chord beside its callback's queue
//! (`NS:{Q}:chord:ID`), so the script that closes the join and sends the callback
//! touches one hash slot. Callbacks and chain steps: sent once, with a marker beside
//! their queue (`NS:{Q}:sent:ID`) set in the same script as the enqueue. On a
//! partitioned queue, a chord's join and its callback go to the partition of the
//! chord's id, and a message sent once to the partition of its own id: the same one
//! at every try, so the guard and the send share a slot.

use std::time::Duration;

use task_core::broker::Message;
use task_core::capability::ChordJoin;
use task_core::{BrokerError, ChordMember, ErrorKind, TaskId};

use super::RedisBroker;
use crate::error::{timed, timed_pipe};
use crate::scripts::SCRIPTS;

impl RedisBroker {
    pub(super) async fn open_chord(
        &self,
        chord: &TaskId,
        queue: &str,
        size: u32,
        callback: &[u8],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.remember_queue(queue).await?;
        let key = self.inner.keys.chord(&self.placed_by(queue, chord), chord);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("size")
            .arg(size)
            .arg("remaining")
            .arg(size)
            .arg("callback")
            .arg(callback)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .ignore();
        let mut con = self.con();
        let _: () = timed_pipe(self.limit(), &pipe, &mut con)
            .await
            .map_err(|e| e.broker(&format!("cannot open the join of chord {chord}")))?;
        Ok(())
    }

    pub(super) async fn join_chord(&self, member: &ChordMember, result: &[u8]) -> Result<ChordJoin, BrokerError> {
        let key = self.inner.keys.chord(&self.placed_by(&member.queue, &member.chord), &member.chord);
        let mut con = self.con();
        let context = || format!("cannot report member {} to chord {}", member.index, member.chord);
        let reply: Vec<Vec<u8>> =
            timed(self.limit(), SCRIPTS.chord_join.key(key).arg(member.index).arg(result).invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&context()))?;
        let mut reply = reply.into_iter();
        let bad =
            || BrokerError::new(ErrorKind::Other, format!("{}: unexpected reply from the join script", context()));
        match reply.next().as_deref() {
            Some(b"closed") => Ok(ChordJoin::Closed),
            Some(b"waiting") => {
                let n = reply.next().and_then(|n| String::from_utf8(n).ok()?.parse().ok()).ok_or_else(bad)?;
                Ok(ChordJoin::Waiting(n))
            }
            Some(b"complete") => {
                let callback = reply.next().ok_or_else(bad)?;
                Ok(ChordJoin::Complete { callback, results: reply.collect() })
            }
            _ => Err(bad()),
        }
    }

    pub(super) async fn fire_chord(&self, member: &ChordMember, mut message: Message) -> Result<bool, BrokerError> {
        self.remember_queue(&message.queue).await?;
        message.queue = self.placed_by(&message.queue, &member.chord);
        let mut con = self.con();
        let mut inv = self.enqueue_invocation(&SCRIPTS.chord_fire, &message);
        inv.key(self.inner.keys.chord(&self.placed_by(&member.queue, &member.chord), &member.chord));
        let sent: i64 = timed(self.limit(), inv.invoke_async(&mut con))
            .await
            .map_err(|e| e.broker(&format!("cannot send the callback of chord {}", member.chord)))?;
        Ok(sent == 1)
    }

    pub(super) async fn send_once(&self, mut message: Message, ttl: Duration) -> Result<bool, BrokerError> {
        self.remember_queue(&message.queue).await?;
        message.queue = self.placed_by(&message.queue, &message.id);
        let mut con = self.con();
        let mut inv = self.enqueue_invocation(&SCRIPTS.enqueue_once, &message);
        inv.key(self.inner.keys.sent(&message.queue, &message.id))
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let sent: i64 = timed(self.limit(), inv.invoke_async(&mut con))
            .await
            .map_err(|e| e.broker(&format!("cannot send task {} to `{}`", message.id, message.queue)))?;
        Ok(sent == 1)
    }

    pub(super) async fn fail_chord(&self, member: &ChordMember) -> Result<bool, BrokerError> {
        let mut con = self.con();
        let closed: i64 = timed(
            self.limit(),
            SCRIPTS
                .chord_fail
                .key(self.inner.keys.chord(&self.placed_by(&member.queue, &member.chord), &member.chord))
                .invoke_async(&mut con),
        )
        .await
        .map_err(|e| e.broker(&format!("cannot mark chord {} failed", member.chord)))?;
        Ok(closed == 1)
    }
}
