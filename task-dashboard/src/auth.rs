//! Bearer token or basic auth, the read-only mode, cross-site request refusal, and the
//! headers every response carries.

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
    if request.method() != Method::GET
        && let Some(why) = cross_site(request.headers())
    {
        return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": why}))).into_response();
    }
    if config.read_only && request.method() != Method::GET {
        return (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "the dashboard is read-only"})))
            .into_response();
    }
    next.run(request).await
}

/// Why an action comes from another site, if it does (cross-site request forgery: a
/// browser sends the basic-auth credentials it holds with a post from any page).
/// Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); a client that
/// says neither is no browser, and holds its credentials itself.
pub(crate) fn cross_site(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return (!matches!(site, "same-origin" | "none")).then_some("refused: the request comes from another site");
    }
    let origin = text("origin")?;
    let host = text("host").unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    (origin_host != host).then_some("refused: the request's origin is not this dashboard")
}

/// The Content-Security-Policy of every response: scripts from this origin only (the
/// pages hold none of their own), nothing framed, no other site contacted; and no
/// guessing of content types.
pub(crate) async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn actions_from_other_sites_are_refused() {
        assert!(cross_site(&headers(&[])).is_none(), "curl and scripts: no browser headers");
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site(&headers(&[("sec-fetch-site", "none")])).is_none());
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        let same = [("origin", "http://127.0.0.1:5555"), ("host", "127.0.0.1:5555")];
        assert!(cross_site(&headers(&same)).is_none());
        let other = [("origin", "https://evil.example"), ("host", "127.0.0.1:5555")];
        assert!(cross_site(&headers(&other)).is_some());
        assert!(cross_site(&headers(&[("origin", "null"), ("host", "127.0.0.1:5555")])).is_some());
    }
}
