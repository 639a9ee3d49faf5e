//! The HTTP side: `POST /reports`, `GET /reports/{id}`, and the page at `/`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use task_core::{App, Error, ErrorKind, TaskId, TaskMeta, TaskState};

use crate::reports::{Progress, Report, ReportRequest, build_report};

/// The service's routes over `app` (memory:// with an embedded worker, or Redis).
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/reports", post(start_report))
        .route("/reports/{id}", get(report_status))
        .with_state(app)
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

/// An error answer: the status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Broker(b) => Some(b.kind()),
            Error::Backend(b) => Some(b.kind()),
            _ => None,
        };
        match kind {
            Some(ErrorKind::Connection | ErrorKind::Timeout | ErrorKind::Closed) => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the task queue is unavailable, try again shortly: {e}"),
            ),
            _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// Sends the report to the queue and answers at once: `202 {id, status_url}`.
async fn start_report(
    State(app): State<App>,
    body: Result<Json<ReportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError(rejection.status(), rejection.body_text()))?;
    if let Some(problem) = request.problem() {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, problem));
    }
    // A PENDING record first, so that a status request can tell "queued" from "no such
    // report" (a task id alone cannot); then the task, under that id.
    let id = TaskId::new();
    let mut sent = TaskMeta::state(TaskState::Pending);
    sent.task = Some(build_report::NAME.to_owned());
    app.backend().store(&id, sent, app.result_ttl()).await.map_err(Error::from)?;
    build_report::signature(request).task_id(id.clone()).apply_async(&app).await?;
    let status_url = format!("/reports/{id}");
    Ok((StatusCode::ACCEPTED, [("location", status_url.clone())], Json(json!({ "id": id, "status_url": status_url })))
        .into_response())
}

/// The state, the progress, and the result or the error when done.
async fn report_status(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no report with id `{id}`"));
    let task_id: TaskId = id.parse().map_err(|_| not_found())?;
    let meta = app.backend().get(&task_id).await.map_err(Error::from)?.ok_or_else(not_found)?;
    if meta.task.as_deref().is_some_and(|t| t != build_report::NAME) {
        return Err(not_found());
    }
    let result = app.result::<Report>(task_id.clone());
    let progress: Option<Progress> = result.progress().await?;
    let report: Option<Report> = match meta.state {
        TaskState::Success => Some(result.get(std::time::Duration::ZERO).await?),
        _ => None,
    };
    Ok(Json(json!({
        "id": task_id,
        "state": meta.state,
        "progress": progress,
        "result": report,
        "error": meta.error.filter(|_| matches!(meta.state, TaskState::Failure | TaskState::Revoked | TaskState::Retry)),
    }))
    .into_response())
}
