//! The web example as a library, so its tests can build the same router.
//!
//! A person asks for a report; the handler sends the slow work to the queue and answers
//! `202 Accepted` at once with the task id and a status URL; the page polls that URL and
//! fills a progress bar until the result (or the error) appears.

pub mod reports;
pub mod routes;

pub use routes::router;
