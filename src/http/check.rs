//! `GET /check`: a page that tells whether TURN works from the browser that opens it.
//!
//! The page (`check.html`, built into the binary) holds no secret and mints nothing by itself:
//! it asks `POST /api/v1/ice-servers` for fresh credentials with an API key of
//! `http.api_keys` (or a JWT of `[http.jwt]`) that the person gives it (typed, or after
//! `#key=` in the address, which browsers never send to the server), gathers ICE candidates
//! for the TURN URLs of each transport (udp, tcp, tls) and shows host, srflx and relay
//! candidates per transport, then connects two relay-only peer connections through TURN and
//! times a data channel round trip, and gives a verdict. So it is served always, like
//! `/sdk/turnpike.js`; without a key it can only say that the key is missing or refused.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page.
pub const CHECK_HTML: &str = include_str!("check.html");

/// `GET /check`.
pub async fn check_page() -> Response {
    let mut response = CHECK_HTML.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The key is typed into this page: no other site may frame it.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
