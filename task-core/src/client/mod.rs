//! The client API: a call with its options ([`Signature`]) and the handle on its result
//! ([`AsyncResult`]). What `add::delay` and `add::signature` generate code against.

mod result;
mod signature;

pub use result::AsyncResult;
pub use signature::Signature;
