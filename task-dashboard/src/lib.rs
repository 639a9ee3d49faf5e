//! # task-dashboard
//!
//! Celerity's web dashboard, in the spirit of Flower: the workers and their health,
//! the queues and their depths, the dead letters with their reasons (retry, purge),
//! any task by id (arguments, state, result or error, timings; revoke), and the same
//! as a JSON API under `/api`. It reads the broker and the result backend through the
//! driver-neutral capabilities of `task-core` (directory, inspection, results), so it
//! keeps no state of its own and works on `memory://` and Redis alike.
//!
//! Mount it in a service, or run it alone (`celerity dashboard --port 5555`):
//!
//! ```no_run
//! # async fn demo(app: task_core::App) {
//! let admin = task_dashboard::router(app.clone(), task_dashboard::DashboardConfig::default().token("s3cret"));
//! let site = axum::Router::new().nest("/admin/tasks", admin);
//! # }
//! ```
//!
//! **Do not expose it without auth**: it can purge queues and revoke tasks. Give it a
//! bearer token or basic-auth credentials, and `read_only()` to forbid every action.

mod api;
mod auth;
mod metrics;
mod pages;

use axum::Router;
use axum::routing::{get, post};
use task_core::App;

/// Who may see the dashboard and what they may do.
#[derive(Debug, Clone, Default)]
pub struct DashboardConfig {
    pub(crate) token: Option<String>,
    pub(crate) basic: Option<(String, String)>,
    pub(crate) read_only: bool,
    pub(crate) base: String,
}

impl DashboardConfig {
    /// Requires `Authorization: Bearer <token>`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Requires HTTP basic auth with these credentials (browsers ask for them).
    pub fn basic(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic = Some((user.into(), password.into()));
        self
    }

    /// Where the router is mounted (`"/admin/tasks"` for `.nest("/admin/tasks", ..)`), so
    /// that the pages link to each other; empty (the root) by default.
    pub fn base_path(mut self, base: impl Into<String>) -> Self {
        self.base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// True when a token or basic-auth credentials are required.
    pub fn is_protected(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }

    /// Forbids every action (purge, retry, revoke): a view only.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// The state every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct Dashboard {
    pub(crate) app: App,
    pub(crate) config: DashboardConfig,
    /// Sessions opened by logins, and the failed logins.
    pub(crate) sessions: std::sync::Arc<auth::Sessions>,
}

/// The dashboard's routes: pages, `/api/…`, and `/healthz` (never behind auth).
pub fn router(app: App, config: DashboardConfig) -> Router {
    let state = Dashboard { app, config, sessions: std::sync::Arc::default() };
    let guarded = Router::new()
        .route("/", get(pages::overview))
        .route("/assets/dashboard.js", get(pages::script))
        .route("/workers", get(pages::workers))
        .route("/dead", get(pages::dead))
        .route("/schedule", get(pages::schedule))
        .route("/events", get(pages::events))
        .route("/tasks", get(pages::find_task))
        .route("/tasks/{id}", get(pages::task))
        .route("/api/overview", get(api::overview))
        .route("/api/workers", get(api::workers))
        .route("/api/queues", get(api::queues))
        .route("/api/dead", get(api::dead))
        .route("/api/schedule", get(api::schedule))
        .route("/api/events", get(api::events))
        .route("/api/tasks", get(api::tasks))
        .route("/api/throughput", get(api::throughput))
        .route("/api/tasks/{id}", get(api::task))
        .route("/api/stream", get(api::stream))
        .route("/metrics", get(metrics::metrics))
        .route("/api/queues/{queue}/purge", post(api::purge))
        .route("/api/workers/control", post(api::control_workers))
        .route("/api/queues/{queue}/pause", post(api::pause))
        .route("/api/queues/{queue}/resume", post(api::resume))
        .route("/api/queues/{queue}/dead/retry", post(api::retry_dead))
        .route("/api/dead/{id}/retry", post(api::retry_dead_task))
        .route("/api/queues/{queue}/dead/purge", post(api::purge_dead))
        .route("/api/tasks/{id}/revoke", post(api::revoke))
        .route("/api/tasks/{id}/retry", post(api::retry))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::check))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .with_state(state)
        .merge(guarded)
        .layer(axum::middleware::from_fn(auth::secure_headers))
}
