//! The admin API (`/admin/v1/...`, docs/admin-api.md): allocations and revocations, behind the
//! keys of `http.admin_keys` (never the credential keys of `http.api_keys`).
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/v1/allocations?user=&after=&limit=` | a page of allocations |
//! | `DELETE /admin/v1/allocations?user=U` or `?id=ID` | end them |
//! | `GET /admin/v1/revocations` | the revocation list |
//! | `POST /admin/v1/revocations` `{"user"\|"username", "until"}` | revoke |
//! | `DELETE /admin/v1/revocations?user=U` or `?username=N` | lift a revocation |
//! | `GET /admin/v1/registry/peers?project=P` | the peers of a project |
//! | `DELETE /admin/v1/registry/peers?project=P&peer=ID` | disconnect one (close code 4006) |

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::admin::store::Entry;
use crate::admin::{Admin, ChangeError, time};
use crate::config::Config;
use crate::net::admin::{MAX_PAGE, Outcome};
use crate::proto::credentials::parse_rest_username;
use crate::proto::server::{AllocationId, AllocationInfo, Direction, End, RevokeError, Subject};
use crate::registry::messages::{echo, shorten};

/// The default page size of a listing.
pub const DEFAULT_PAGE: usize = 100;

/// SHA-256 digests of the admin keys and of the credential keys (to name the mistake when a
/// credential key is presented here).
#[derive(Debug, Default)]
struct Keys {
    admin: Vec<[u8; 32]>,
    credential: Vec<[u8; 32]>,
}

impl Keys {
    fn new(config: &Config) -> Keys {
        let digest = |k: &String| -> [u8; 32] { Sha256::digest(k.as_bytes()).into() };
        Keys {
            admin: config.http.admin_keys.iter().map(digest).collect(),
            credential: config.http.api_keys.iter().map(digest).collect(),
        }
    }
}

/// The admin API's state: the operations and the keys (replaced by a reload).
#[derive(Debug)]
pub struct AdminApi {
    admin: Arc<Admin>,
    keys: ArcSwap<Keys>,
    /// The registry, when it is enabled.
    registry: Option<crate::registry::RegistryState>,
}

impl AdminApi {
    /// The API over `admin`, with the keys of `config`.
    pub fn new(
        admin: Arc<Admin>,
        registry: Option<crate::registry::RegistryState>,
        config: &Config,
    ) -> AdminApi {
        AdminApi {
            admin,
            keys: ArcSwap::from_pointee(Keys::new(config)),
            registry,
        }
    }

    /// Takes the keys of a reloaded configuration.
    pub fn reload(&self, config: &Config) {
        self.keys.store(Arc::new(Keys::new(config)));
    }

    /// Checks the `Authorization: Bearer` header against the admin keys, in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let keys = self.keys.load();
        if keys.admin.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is off: set http.admin_keys in the configuration",
            ));
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if token.is_empty() {
            return Err(ApiError::unauthorized(
                "missing_token",
                "send an admin key (http.admin_keys) as `Authorization: Bearer KEY`",
            ));
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let any = |list: &[[u8; 32]]| {
            bool::from(
                list.iter()
                    .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(&presented)),
            )
        };
        if any(&keys.admin) {
            return Ok(());
        }
        if any(&keys.credential) {
            return Err(ApiError::unauthorized(
                "credential_key",
                "this is a credential key (http.api_keys): the admin API only takes the keys of http.admin_keys",
            ));
        }
        Err(ApiError::unauthorized(
            "invalid_token",
            "this key is not one of http.admin_keys",
        ))
    }
}

/// The admin routes, over `api`.
pub fn routes<S: Clone + Send + Sync + 'static>(api: Arc<AdminApi>) -> Router<S> {
    use axum::routing::get;
    Router::new()
        .route(
            "/admin/v1/allocations",
            get(list_allocations).delete(end_allocations),
        )
        .route(
            "/admin/v1/revocations",
            get(list_revocations).post(revoke).delete(unrevoke),
        )
        .route(
            "/admin/v1/registry/peers",
            get(list_peers).delete(disconnect_peer),
        )
        .with_state(api)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    user: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// Bytes and packets one way.
#[derive(Serialize)]
struct Way {
    bytes: u64,
    packets: u64,
}

#[derive(Serialize)]
struct PermissionJson {
    ip: String,
    expires_in_secs: u64,
}

#[derive(Serialize)]
struct ChannelJson {
    number: u16,
    peer: String,
    expires_in_secs: u64,
}

#[derive(Serialize)]
struct AllocationJson {
    id: String,
    user: String,
    username: String,
    client: String,
    server: String,
    transport: &'static str,
    tcp_relay: bool,
    relays: Vec<String>,
    age_secs: u64,
    expires_in_secs: u64,
    to_peer: Way,
    to_client: Way,
    permissions: Vec<PermissionJson>,
    channels: Vec<ChannelJson>,
}

impl From<&AllocationInfo> for AllocationJson {
    fn from(a: &AllocationInfo) -> Self {
        let way = |d: Direction| Way {
            bytes: a.traffic.bytes[d as usize],
            packets: a.traffic.packets[d as usize],
        };
        AllocationJson {
            id: a.id.to_string(),
            user: a.user.clone(),
            username: a.username.clone(),
            client: a.client.to_string(),
            server: a.server.to_string(),
            transport: a.transport.as_str(),
            tcp_relay: a.tcp_relay,
            relays: a.relays.iter().map(|r| r.to_string()).collect(),
            age_secs: a.age_secs,
            expires_in_secs: a.expires_in_secs,
            to_peer: way(Direction::ClientToPeer),
            to_client: way(Direction::PeerToClient),
            permissions: a
                .permissions
                .iter()
                .map(|p| PermissionJson {
                    ip: p.ip.to_string(),
                    expires_in_secs: p.expires_in_secs,
                })
                .collect(),
            channels: a
                .channels
                .iter()
                .map(|c| ChannelJson {
                    number: c.number,
                    peer: c.peer.to_string(),
                    expires_in_secs: c.expires_in_secs,
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct ListJson {
    total: usize,
    allocations: Vec<AllocationJson>,
    /// The cursor of the next page (`after=`), when there is one.
    next: Option<String>,
    cores: usize,
    answered: usize,
}

fn check_user(user: &Option<String>) -> Result<(), ApiError> {
    match user {
        Some(u) if u.is_empty() || u.len() > 513 => {
            Err(ApiError::bad_request("`user` must be 1 to 513 bytes"))
        }
        _ => Ok(()),
    }
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query string: {}", shorten(&e.body_text(), 96)))
}

async fn list_allocations(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ListJson>, ApiError> {
    api.authorize(&headers)?;
    let Query(q) = query.map_err(query_error)?;
    check_user(&q.user)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match &q.after {
        Some(a) => Some(a.parse::<AllocationId>().map_err(|_| {
            ApiError::bad_request(format!(
                "`after` must be an allocation id such as 203.0.113.7:50000 or tcp/203.0.113.7:50000, not `{}`",
                echo(a)
            ))
        })?),
        None => None,
    };
    let outcome = api.admin.list(q.user, after, limit).await;
    let page = &outcome.listing.allocations;
    let next = (page.len() == limit)
        .then(|| page.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(Json(ListJson {
        total: outcome.listing.total,
        allocations: page.iter().map(AllocationJson::from).collect(),
        next,
        cores: outcome.cores,
        answered: outcome.answered,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndQuery {
    user: Option<String>,
    id: Option<String>,
}

#[derive(Serialize)]
struct EndedJson {
    ended: usize,
    cores: usize,
    answered: usize,
}

fn ended(outcome: &Outcome) -> EndedJson {
    EndedJson {
        ended: outcome.ended,
        cores: outcome.cores,
        answered: outcome.answered,
    }
}

async fn end_allocations(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    query: Result<Query<EndQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EndedJson>, ApiError> {
    api.authorize(&headers)?;
    let Query(q) = query.map_err(query_error)?;
    check_user(&q.user)?;
    let (which, what) = match (q.user, q.id) {
        (Some(u), None) => (
            End::Subject(Subject::User(u.clone())),
            format!("user `{}`", echo(&u)),
        ),
        (None, Some(id)) => {
            let parsed = id.parse::<AllocationId>().map_err(|_| {
                ApiError::bad_request(format!(
                    "`id` must be an allocation id such as 203.0.113.7:50000 or tcp/203.0.113.7:50000, not `{}`",
                    echo(&id)
                ))
            })?;
            (End::Allocation(parsed), format!("allocation {}", echo(&id)))
        }
        _ => {
            return Err(ApiError::bad_request("give exactly one of `user` and `id`"));
        }
    };
    let outcome = api.admin.end(which).await;
    if outcome.ended == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_allocation",
            format!("no allocation of {what} on this node"),
        ));
    }
    Ok(Json(ended(&outcome)))
}

#[derive(Serialize)]
struct RevocationsJson {
    revocations: Vec<Entry>,
}

async fn list_revocations(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
) -> Result<Json<RevocationsJson>, ApiError> {
    api.authorize(&headers)?;
    let now = crate::net::udp::now().unix;
    let list = api.admin.revocations().pruned(now);
    Ok(Json(RevocationsJson {
        revocations: list
            .entries()
            .iter()
            .map(|(s, u)| Entry::new(s, *u))
            .collect(),
    }))
}

/// `until`: UNIX seconds, or a string ([`time::parse_until`]).
#[derive(Deserialize)]
#[serde(untagged)]
enum Until {
    Secs(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    user: Option<String>,
    username: Option<String>,
    until: Option<Until>,
}

#[derive(Serialize)]
struct RevokedJson {
    revocation: Entry,
    ended: usize,
    persisted: bool,
}

fn subject(user: Option<String>, username: Option<String>) -> Result<Subject, ApiError> {
    match (user, username) {
        (Some(u), None) => Ok(Subject::User(u)),
        (None, Some(n)) => Ok(Subject::Username(n)),
        _ => Err(ApiError::bad_request(
            "give exactly one of `user` (every credential of a user) and `username` (one credential)",
        )),
    }
}

async fn revoke(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    body: Result<Json<RevokeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers)?;
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("bad JSON body: {}", e.body_text())))?;
    let subject = subject(body.user, body.username)?;
    let now = crate::net::udp::now().unix;
    let until = match body.until {
        Some(Until::Secs(s)) => Some(s),
        Some(Until::Text(t)) => Some(time::parse_until(&t, now).map_err(ApiError::bad_request)?),
        // One leaked REST credential is useless after its own expiry: revoke it until then.
        None => match &subject {
            Subject::Username(n) => parse_rest_username(n)
                .map(|r| r.expiry)
                .filter(|&e| e > now),
            Subject::User(_) => None,
        },
    };
    let outcome = api
        .admin
        .revoke(subject.clone(), until)
        .await
        .map_err(|e| match e {
            ChangeError::Invalid(RevokeError::Full) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "revocations_full",
                e.to_string(),
            ),
            ChangeError::Invalid(_) => ApiError::bad_request(e.to_string()),
            ChangeError::Store(_) => ApiError::internal(e.to_string()),
        })?;
    let body = RevokedJson {
        revocation: Entry::new(&subject, until),
        ended: outcome.ended,
        persisted: api.admin.file().is_some(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnrevokeQuery {
    user: Option<String>,
    username: Option<String>,
}

#[derive(Serialize)]
struct RemovedJson {
    removed: Entry,
}

async fn unrevoke(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    query: Result<Query<UnrevokeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RemovedJson>, ApiError> {
    api.authorize(&headers)?;
    let Query(q) = query.map_err(query_error)?;
    let subject = subject(q.user, q.username)?;
    let before = api.admin.revocations().get(&subject);
    match api.admin.unrevoke(&subject).await {
        Ok(true) => Ok(Json(RemovedJson {
            removed: Entry::new(&subject, before.flatten()),
        })),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_revoked",
            format!(
                "{} `{}` is not revoked",
                subject.kind(),
                echo(subject.name())
            ),
        )),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersQuery {
    project: String,
    peer: Option<String>,
}

#[derive(Serialize)]
struct PeerJson {
    peer_id: String,
    public_key: String,
    attested: bool,
    ip: String,
    connected_secs: u64,
    token_expires_at: u64,
}

#[derive(Serialize)]
struct PeersJson {
    project: String,
    peers: Vec<PeerJson>,
}

fn registry(api: &AdminApi) -> Result<&crate::registry::RegistryState, ApiError> {
    api.registry.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "registry_disabled",
            "the registry is not enabled on this server (registry.enabled)",
        )
    })
}

fn no_project(project: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_project",
        format!("project `{}` has no peer on this node", echo(project)),
    )
}

async fn list_peers(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    query: Result<Query<PeersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PeersJson>, ApiError> {
    api.authorize(&headers)?;
    let Query(q) = query.map_err(query_error)?;
    if q.peer.is_some() {
        return Err(ApiError::bad_request("listing takes only `project`"));
    }
    let peers = registry(&api)?
        .project_peers(&q.project)
        .ok_or_else(|| no_project(&q.project))?;
    Ok(Json(PeersJson {
        project: q.project,
        peers: peers
            .into_iter()
            .map(|p| PeerJson {
                peer_id: p.peer_id,
                public_key: p.public_key,
                attested: p.attested,
                ip: p.ip.to_string(),
                connected_secs: p.connected_secs,
                token_expires_at: p.token_expires_at,
            })
            .collect(),
    }))
}

#[derive(Serialize)]
struct DisconnectedJson {
    project: String,
    peer_id: String,
    close_code: u16,
}

async fn disconnect_peer(
    State(api): State<Arc<AdminApi>>,
    headers: HeaderMap,
    query: Result<Query<PeersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DisconnectedJson>, ApiError> {
    api.authorize(&headers)?;
    let Query(q) = query.map_err(query_error)?;
    let Some(peer) = q.peer else {
        return Err(ApiError::bad_request("give `project` and `peer`"));
    };
    let registry = registry(&api)?;
    if registry.project_peers(&q.project).is_none() {
        return Err(no_project(&q.project));
    }
    if !registry.disconnect_peer(&q.project, &peer) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_peer",
            format!(
                "no peer `{}` in project `{}`",
                echo(&peer),
                echo(&q.project)
            ),
        ));
    }
    Ok(Json(DisconnectedJson {
        project: q.project,
        peer_id: peer,
        close_code: crate::registry::messages::CloseReason::Disconnected.code(),
    }))
}
