//! Live tokens: a connection lasts as long as its token. `token_expiring` is sent
//! `token_warning_secs` before the token's `exp` (right after the welcome when the token lives
//! less than that), the connection is closed at `exp` (4003, `token_expired`), and `reauth`
//! with a fresh token for the same peer moves the deadline (`reauthed`, with fresh
//! `ice_servers`).
//!
//! The core holds no keys and reads no clock: the caller gives each connection a [`Lease`]
//! (its deadline on the caller's monotonic clock, and what was minted for it), and checks
//! tokens and attestations for the core through an [`Authority`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::super::attest::Expected;
use super::super::messages::{Control, ErrorCode, Refusal};
use super::{Conn, ConnId, Identity, Registry, State};
use crate::proto::credentials::IceServer;

/// What comes with a verified token: when it ends and what the server minted for it. The
/// caller makes it (the core draws no time and no secrets of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The token's `exp` on the caller's monotonic clock: the connection is closed then
    /// (4003). `None`: never.
    pub deadline: Option<Instant>,
    /// The one-token ladder: an `iceServers` array minted for the peer until the token ends
    /// (at most `http.max_credential_ttl_secs`); `None` when the ladder is off.
    pub ice_servers: Option<Vec<IceServer>>,
}

/// What the core asks its caller about tokens and key attestations: the answers depend on
/// keys, secrets and the wall clock, which the core does not hold. The caller reads the
/// time once per call, so each answer is a pure function of what it was given.
pub trait Authority {
    /// Verifies a `reauth` token: who it names and its [`Lease`], or why it is refused (a
    /// sentence for people: expired, bad signature...).
    fn reauth(&self, token: &str) -> Result<(Identity, Lease), String>;

    /// Verifies a key attestation presented in `join` against what it must say. `None` when
    /// the server has no key to verify attestations with (it forwards them unchecked; clients
    /// verify them anyway); `Some(Err(why))` when it does not verify.
    fn check_attestation(&self, jwt: &str, expected: &Expected<'_>) -> Option<Result<(), String>>;
}

/// An [`Authority`] with no keys: every `reauth` is refused and no attestation is checked
/// (core tests, fuzzing).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAuthority;

impl Authority for NoAuthority {
    fn reauth(&self, _token: &str) -> Result<(Identity, Lease), String> {
        Err("this registry has no keys to verify tokens with".to_owned())
    }

    fn check_attestation(
        &self,
        _jwt: &str,
        _expected: &Expected<'_>,
    ) -> Option<Result<(), String>> {
        None
    }
}

/// True when `c` is joined, was not warned about its current token, and the token ends
/// within `warning` (a zero `warning` never warns).
pub(super) fn warning_due(c: &Conn, now: Instant, warning: Duration) -> bool {
    !warning.is_zero()
        && !c.warned
        && matches!(c.state, State::Joined { .. })
        && c.deadline
            .is_some_and(|deadline| deadline.saturating_duration_since(now) <= warning)
}

impl Registry {
    /// Sends `token_expiring` to `conn` now if its token ends within `token_warning_secs`.
    pub(super) fn warn_if_due(&mut self, now: Instant, conn: ConnId) {
        let warning = Duration::from_secs(self.config.token_warning_secs.into());
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| warning_due(c, now, warning))
        {
            self.send_token_warning(conn);
        }
    }

    /// Sends `token_expiring` to `conn` (once per token).
    pub(super) fn send_token_warning(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.warned = true;
        let expires_at = c.identity.expires_at;
        self.metrics.token_warnings.fetch_add(1, Ordering::Relaxed);
        self.send_control(conn, Control::TokenExpiring { expires_at }.to_json());
    }

    /// `reauth`: a good token for the same peer and project moves the deadline; anything else
    /// is answered with an error and the old deadline stays.
    pub(super) fn reauth(
        &mut self,
        now: Instant,
        conn: ConnId,
        token: &str,
        authority: &dyn Authority,
    ) {
        let refuse = |code, message: String| Refusal::new(code, message, Some("reauth"));
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let State::Joined { public_key, .. } = &c.state else {
            return self.refuse(
                conn,
                refuse(ErrorCode::NotJoined, "send `join` first".to_owned()),
            );
        };
        let (identity, lease) = match authority.reauth(token) {
            Ok(verified) => verified,
            Err(why) => {
                let message = format!("the token was refused: {why}");
                return self.refuse(conn, refuse(ErrorCode::InvalidToken, message));
            }
        };
        if identity.peer_id != c.identity.peer_id || identity.project != c.identity.project {
            let message = format!(
                "the token is for peer `{}` of project `{}`, this connection is `{}` of `{}`",
                identity.peer_id, identity.project, c.identity.peer_id, c.identity.project
            );
            return self.refuse(conn, refuse(ErrorCode::IdentityMismatch, message));
        }
        if identity
            .pinned_key
            .is_some_and(|pinned| BASE64.encode(pinned) != *public_key)
        {
            let message = "the token pins another public key than the one joined with".to_owned();
            return self.refuse(conn, refuse(ErrorCode::IdentityMismatch, message));
        }
        let expires_at = identity.expires_at;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identity = identity;
            c.deadline = lease.deadline;
            c.warned = false;
        }
        self.metrics.reauths.fetch_add(1, Ordering::Relaxed);
        let reauthed = Control::Reauthed {
            expires_at,
            ice_servers: lease.ice_servers.as_deref(),
        };
        self.send_control(conn, reauthed.to_json());
        self.warn_if_due(now, conn);
    }
}
