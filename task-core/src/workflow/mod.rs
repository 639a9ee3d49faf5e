//! Workflows: tasks in parallel ([`group`]), one after another ([`Chain`]), and a group
//! whose results go to one callback ([`chord`]); and the worker's part of them
//! (`callback`): what it sends when a task that carries links ends.

mod callback;
mod chain;
mod chord;
mod group;

pub(crate) use callback::Links;
pub use chain::{Chain, Partial};
pub use chord::{Chord, chord};
pub use group::{Group, GroupResult, group};
