//! Bearer token or basic auth, the read-only mode, cross-site request refusal, and the
//! headers every response carries.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::Dashboard;

/// Lets a request through when it carries the configured credentials (a bearer token,
/// basic auth, or the session cookie a login set), and refuses actions from other sites
/// and, in read-only mode, every action. A browser asking for a page without them is
/// sent to the login form when a token is configured (a browser cannot send a bearer
/// header itself); with basic auth only, it is asked for the credentials.
pub(crate) async fn check(State(dash): State<Dashboard>, request: Request, next: Next) -> Response {
    let config = &dash.config;
    if config.is_protected() && !authorized(&dash, request.headers()) {
        let path = request.uri().path();
        let is_page = request.method() == Method::GET
            && !path.starts_with(&format!("{}/api/", config.base))
            && !path.starts_with(&format!("{}/metrics", config.base));
        if config.token.is_some() && is_page {
            let next = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let to = format!("{}/login?next={}", config.base, crate::pages::seg(next));
            return axum::response::Redirect::to(&to).into_response();
        }
        let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
        if config.basic.is_some() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"celerity\""));
        }
        return response;
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

/// True when `headers` carry the configured credentials or a live session.
fn authorized(dash: &Dashboard, headers: &axum::http::HeaderMap) -> bool {
    let config = &dash.config;
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bearer_ok = config.token.as_ref().is_some_and(|t| same(given, &format!("Bearer {t}")));
    let basic_ok = config.basic.as_ref().is_some_and(|(user, password)| {
        same(
            given,
            &format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))),
        )
    });
    bearer_ok || basic_ok || session_of(headers).is_some_and(|id| dash.sessions.holds(&id))
}

/// Compares secrets in constant time (their lengths aside), so that the time an answer
/// takes says nothing about how much of a guess was right.
pub(crate) fn same(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "celerity_session";

/// The session id a request's cookie carries.
pub(crate) fn session_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE && !value.is_empty()).then(|| value.to_owned())
    })
}

/// The sessions logins opened, and the failed logins of the last minute. In memory: a
/// restart of the dashboard asks everyone to log in again.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    failures: std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>,
}

/// How long a session lasts.
pub(crate) const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);
/// Failed logins allowed in a minute; past them every login is refused until the
/// oldest is a minute old (a guesser gets five tries a minute, whoever it is).
pub(crate) const FAILED_LOGINS_PER_MINUTE: usize = 5;

impl Sessions {
    /// Opens a session; its id (256 random bits, hex).
    pub(crate) fn open(&self) -> String {
        let id: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
        let now = std::time::Instant::now();
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.retain(|_, until| *until > now);
        open.insert(id.clone(), now + SESSION_TTL);
        id
    }

    pub(crate) fn holds(&self, id: &str) -> bool {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.get(id).is_some_and(|until| *until > std::time::Instant::now())
    }

    pub(crate) fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// True when a login may be tried now (fewer than the allowed failures this minute).
    pub(crate) fn may_try(&self) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute_ago = std::time::Instant::now().checked_sub(std::time::Duration::from_secs(60));
        failures.retain(|at| minute_ago.is_none_or(|m| *at > m));
        failures.len() < FAILED_LOGINS_PER_MINUTE
    }

    pub(crate) fn failed(&self) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back(std::time::Instant::now());
    }
}

/// Whether a login's `user` and `password` are the configured credentials: the token
/// (any user), or the basic-auth pair.
pub(crate) fn credentials_match(config: &crate::DashboardConfig, user: &str, password: &str) -> bool {
    let token_ok = config.token.as_ref().is_some_and(|t| same(password, t));
    let basic_ok = config.basic.as_ref().is_some_and(|(u, p)| same(user, u) & same(password, p));
    token_ok || basic_ok
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
    fn secrets_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret") && !same("s3cretx", "s3cret") && !same("S3cret", "s3cret"));
        assert!(!same("", "s3cret"));
    }

    #[test]
    fn sessions_open_and_close_and_failures_are_limited() {
        let sessions = Sessions::default();
        let id = sessions.open();
        assert_eq!(id.len(), 64);
        assert!(sessions.holds(&id) && !sessions.holds("other"));
        sessions.close(&id);
        assert!(!sessions.holds(&id));
        for _ in 0..FAILED_LOGINS_PER_MINUTE {
            assert!(sessions.may_try());
            sessions.failed();
        }
        assert!(!sessions.may_try(), "the sixth try in a minute is refused");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; celerity_session=abc; b=2")]);
        assert_eq!(session_of(&map).as_deref(), Some("abc"));
        assert_eq!(session_of(&headers(&[("cookie", "celerity_session=")])), None);
        assert_eq!(session_of(&headers(&[])), None);
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
