//! The admin API refuses what it must, with a clear error each time, beyond what tests/admin.rs
//! covers: a server without admin keys, a malformed Authorization header, an admin key on the
//! credential endpoint, a revocation naming both or neither subject, one whose time is not a
//! time, a body that is not JSON, registry calls on a server without a registry, and an unknown
//! route; and `turnpike admin` shows those errors.

mod common;

use std::process::Command;

use common::http::{Response, request};
use common::{Conf, Server, turnpike_bin};

const ADMIN_KEY: &str = "bad-input-admin-key-0123456789";
const CREDENTIAL_KEY: &str = "bad-input-credential-key-0123456789";

fn call(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> Response {
    let mut headers = vec![];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(server.http, method, path, &headers, body).unwrap()
}

fn expect(r: &Response, status: u16, code: &str, words: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.error_code(), code, "{}", r.body);
    assert!(r.body.contains(words), "`{words}` not in {}", r.body);
}

#[test]
fn without_admin_keys_the_api_is_off() {
    let server = Server::start(Conf {
        http_extra: vec![format!("api_keys = [{CREDENTIAL_KEY:?}]")],
        ..Conf::default()
    });
    for key in [ADMIN_KEY, CREDENTIAL_KEY] {
        let r = call(
            &server,
            "GET",
            "/admin/v1/allocations",
            Some(&format!("Bearer {key}")),
            None,
        );
        expect(&r, 403, "admin_disabled", "http.admin_keys");
    }
    let out = Command::new(turnpike_bin())
        .args([
            "admin",
            "--url",
            &format!("http://{}", server.http),
            "--key",
            ADMIN_KEY,
            "sessions",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the admin API is off"), "{err}");
}

#[test]
fn malformed_requests_get_clear_errors() {
    let server = Server::start(Conf {
        http_extra: vec![
            format!("admin_keys = [{ADMIN_KEY:?}]"),
            format!("api_keys = [{CREDENTIAL_KEY:?}]"),
        ],
        ..Conf::default()
    });
    let bearer = format!("Bearer {ADMIN_KEY}");
    let bearer = Some(bearer.as_str());

    // Not a bearer token: the key given as Basic, or bare.
    for auth in [format!("Basic {ADMIN_KEY}"), ADMIN_KEY.to_owned()] {
        let r = call(&server, "GET", "/admin/v1/allocations", Some(&auth), None);
        expect(&r, 401, "missing_token", "Bearer");
    }
    // An admin key does not fetch credentials: the two kinds of keys stay apart both ways.
    let r = call(&server, "POST", "/api/v1/ice-servers", bearer, Some("{}"));
    assert_eq!(r.status, 401, "{}", r.body);

    // Revocations: both subjects, neither, a time that is not one, not JSON, an unknown field.
    for (body, words) in [
        (
            r#"{"user":"carol","username":"1700000000:carol"}"#,
            "exactly one of",
        ),
        (r#"{"until":"2h"}"#, "exactly one of"),
        (r#"{"user":"carol","until":"someday"}"#, "someday"),
        ("user=carol", "JSON"),
        (r#"{"user":"carol","forever":true}"#, "forever"),
    ] {
        let r = call(&server, "POST", "/admin/v1/revocations", bearer, Some(body));
        expect(&r, 400, "bad_request", words);
    }
    // Lifting a revocation that does not exist.
    let r = call(
        &server,
        "DELETE",
        "/admin/v1/revocations?user=nobody",
        bearer,
        None,
    );
    expect(&r, 404, "not_revoked", "nobody");

    // Registry calls on a server whose registry is off.
    let r = call(
        &server,
        "GET",
        "/admin/v1/registry/peers?project=p",
        bearer,
        None,
    );
    expect(&r, 404, "registry_disabled", "registry.enabled");

    // Nothing else lives under /admin.
    let r = call(&server, "GET", "/admin/v1/nothing-here", bearer, None);
    assert_eq!(r.status, 404, "{}", r.body);
}
