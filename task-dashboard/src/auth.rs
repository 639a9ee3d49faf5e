//! Bearer token or basic auth, and the read-only mode.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::Dashboard;

/// Lets a request through when it carries the configured credentials (if any), and
/// refuses actions in read-only mode.
pub(crate) async fn check(State(dash): State<Dashboard>, request: Request, next: Next) -> Response {
    let config = &dash.config;
    if config.token.is_some() || config.basic.is_some() {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let bearer_ok = config.token.as_ref().is_some_and(|t| given == format!("Bearer {t}"));
        let basic_ok = config.basic.as_ref().is_some_and(|(user, password)| {
            given == format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        });
        if !bearer_ok && !basic_ok {
            let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
            if config.basic.is_some() {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"celerity\""));
            }
            return response;
        }
    }
    if config.read_only && request.method() != Method::GET {
        return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "the dashboard is read-only"})))
            .into_response();
    }
    next.run(request).await
}
