//! Drivers, found by URL scheme at run time (sqlx's `AnyDriver` habit).
//!
//! A driver crate submits a [`Driver`] with `inventory` (through
//! `task_core::__private::inventory`); `App::from_env` and the builder look the scheme
//! up here, so `task-core` never depends on Redis. `memory` is built in.

use std::sync::Arc;

use crate::backend::ResultBackend;
use crate::broker::Broker;
use crate::error::Error;
use crate::future::BoxFuture;
use crate::memory::{InMemoryBackend, InMemoryBroker};

/// Connects a broker from a URL.
pub type ConnectBroker = fn(String) -> BoxFuture<'static, Result<Arc<dyn Broker>, Error>>;
/// Connects a result backend from a URL.
pub type ConnectBackend = fn(String) -> BoxFuture<'static, Result<Arc<dyn ResultBackend>, Error>>;

/// A broker and/or backend implementation for one URL scheme.
#[derive(Debug)]
pub struct Driver {
    /// The URL scheme, without `://` (`redis`).
    pub scheme: &'static str,
    /// Makes a broker, if this driver has one.
    pub broker: Option<ConnectBroker>,
    /// Makes a result backend, if this driver has one.
    pub backend: Option<ConnectBackend>,
}

inventory::collect!(Driver);

inventory::submit! {
    Driver {
        scheme: "memory",
        broker: Some(|_| Box::pin(async { Ok(Arc::new(InMemoryBroker::new()) as Arc<dyn Broker>) })),
        backend: Some(|_| Box::pin(async { Ok(Arc::new(InMemoryBackend::new()) as Arc<dyn ResultBackend>) })),
    }
}

fn scheme_of(url: &str) -> Result<&str, Error> {
    match url.split_once("://") {
        Some((scheme, _)) if !scheme.is_empty() => Ok(scheme),
        _ => Err(Error::Config(format!(
            "`{url}` is not a URL of the form scheme://… (for example memory:// or redis://127.0.0.1:6379/0)"
        ))),
    }
}

type Connect<T> = fn(String) -> BoxFuture<'static, Result<Arc<T>, Error>>;

/// Finds the driver for `url`'s scheme and connects with the part `pick` selects.
async fn connect<T: ?Sized>(
    url: &str,
    role: &'static str,
    pick: fn(&Driver) -> Option<Connect<T>>,
) -> Result<Arc<T>, Error> {
    let scheme = scheme_of(url)?;
    match inventory::iter::<Driver>().filter(|d| d.scheme == scheme).find_map(pick) {
        Some(connect) => connect(url.to_owned()).await,
        None => {
            let mut schemes: Vec<&str> =
                inventory::iter::<Driver>().filter(|d| pick(d).is_some()).map(|d| d.scheme).collect();
            schemes.sort_unstable();
            schemes.dedup();
            Err(Error::UnsupportedScheme {
                role,
                url: url.to_owned(),
                scheme: scheme.to_owned(),
                supported: schemes.join(", "),
            })
        }
    }
}

pub(crate) async fn connect_broker(url: &str) -> Result<Arc<dyn Broker>, Error> {
    connect(url, "broker", |d| d.broker).await
}

pub(crate) async fn connect_backend(url: &str) -> Result<Arc<dyn ResultBackend>, Error> {
    connect(url, "result backend", |d| d.backend).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_lists_the_supported_ones() {
        let err = connect_broker("amqp://localhost").await.unwrap_err().to_string();
        assert!(err.contains("scheme `amqp`") && err.contains("supported: memory"), "{err}");
        let err = connect_backend("nonsense").await.unwrap_err().to_string();
        assert!(err.contains("not a URL"), "{err}");
    }

    #[tokio::test]
    async fn memory_is_built_in() {
        connect_broker("memory://").await.unwrap();
        connect_backend("memory://").await.unwrap();
    }
}
