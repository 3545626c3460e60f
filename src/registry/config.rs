//! The `[registry]` configuration section and its validation.
//!
//! The keys and their defaults are documented in `config/turnpike.toml` and in
//! `docs/registry-protocol.md` §7; a unit test in `config::tests` holds the file and the code
//! defaults together.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::validate::{Invalid, invalid};

/// The `[registry]` section. Its `Debug` output never shows a JWT secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Serve the registry endpoint `/v1/registry`.
    pub enabled: bool,
    /// Until the shared HTTP server serves the registry: the TCP address of the registry's own
    /// HTTP listener (`ws://ADDRESS/v1/registry`).
    pub listen: Option<SocketAddr>,
    /// HS256 secrets; any of them verifies a token, the first one mints (`turnpike token`).
    pub jwt_secrets: Vec<String>,
    /// PEM files with public keys: Ed25519 keys verify EdDSA tokens, RSA keys RS256 tokens.
    pub jwt_public_keys: Vec<PathBuf>,
    /// Connections the server holds at once, joined or not.
    pub max_connections: u32,
    /// Connections one client IP address may hold at once.
    pub max_connections_per_ip: u32,
    /// Projects with at least one joined peer.
    pub max_projects: u32,
    /// Joined peers per project.
    pub max_peers_per_project: u32,
    /// The largest signaling payload, in bytes of JSON text.
    pub max_payload_bytes: u32,
    /// The largest relay frame (binary WebSocket message), in bytes.
    pub max_relay_frame_bytes: u32,
    /// Text messages one peer may send per second (burst: twice as many).
    pub messages_per_sec: u32,
    /// Relay bytes one peer may send per second (burst: one second's worth).
    pub relay_bytes_per_sec: u64,
    /// Relay blobs queued per receiving peer (DERP uses 32).
    pub relay_queue_blobs: u32,
    /// Signaling messages queued per receiving peer.
    pub signal_queue_messages: u32,
    /// Signaling bytes queued per receiving peer.
    pub signal_queue_bytes: u32,
    /// Seconds between the server's WebSocket pings.
    pub ping_interval_secs: u32,
    /// Seconds without any frame from a client before its connection is closed.
    pub idle_timeout_secs: u32,
    /// Seconds a connection has to complete its `join`.
    pub join_timeout_secs: u32,
    /// The one-token ladder: `welcome` and `reauthed` carry `ice_servers`, a WebRTC
    /// `iceServers` array with a REST credential minted for the peer (needs a REST secret,
    /// `auth.secrets`).
    pub ice_servers: bool,
    /// Seconds before the token's `exp` that `token_expiring` is sent (0: never sent; the
    /// connection is closed at `exp` either way).
    pub token_warning_secs: u32,
    /// Relayed bytes per second (averaged over 10 s) above which a peer is sent
    /// `relay_usage` (0: never).
    pub relay_warn_bytes_per_sec: u64,
    /// Bytes queued for one peer (control, signaling and relay frames together): beyond it a
    /// relay blob is dropped, a signaling message refused (`over_budget`), and a peer whose
    /// control messages no longer fit is closed (4007 `over_budget`).
    pub peer_budget_bytes: u64,
    /// Bytes queued for all peers together, with the same effects as `peer_budget_bytes`.
    pub budget_bytes: u64,
    /// Text messages the joined peers of one project may send per second together (burst:
    /// twice as many); 0: no project limit.
    pub project_messages_per_sec: u32,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            enabled: false,
            listen: None,
            jwt_secrets: Vec::new(),
            jwt_public_keys: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 64,
            max_projects: 10_000,
            max_peers_per_project: 1000,
            max_payload_bytes: 32_768,
            max_relay_frame_bytes: 65_536,
            messages_per_sec: 50,
            relay_bytes_per_sec: 1_048_576,
            relay_queue_blobs: 32,
            signal_queue_messages: 128,
            signal_queue_bytes: 1_048_576,
            ping_interval_secs: 20,
            idle_timeout_secs: 60,
            join_timeout_secs: 10,
            ice_servers: true,
            token_warning_secs: 60,
            relay_warn_bytes_per_sec: 262_144,
            peer_budget_bytes: 4 * 1024 * 1024,
            budget_bytes: 512 * 1024 * 1024,
            project_messages_per_sec: 10_000,
        }
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field(
                "jwt_secrets",
                &format_args!("[<{} redacted>]", self.jwt_secrets.len()),
            )
            .field("jwt_public_keys", &self.jwt_public_keys)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("max_projects", &self.max_projects)
            .field("max_peers_per_project", &self.max_peers_per_project)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_relay_frame_bytes", &self.max_relay_frame_bytes)
            .field("messages_per_sec", &self.messages_per_sec)
            .field("relay_bytes_per_sec", &self.relay_bytes_per_sec)
            .field("relay_queue_blobs", &self.relay_queue_blobs)
            .field("signal_queue_messages", &self.signal_queue_messages)
            .field("signal_queue_bytes", &self.signal_queue_bytes)
            .field("ping_interval_secs", &self.ping_interval_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("join_timeout_secs", &self.join_timeout_secs)
            .field("ice_servers", &self.ice_servers)
            .field("token_warning_secs", &self.token_warning_secs)
            .field("relay_warn_bytes_per_sec", &self.relay_warn_bytes_per_sec)
            .field("peer_budget_bytes", &self.peer_budget_bytes)
            .field("budget_bytes", &self.budget_bytes)
            .field("project_messages_per_sec", &self.project_messages_per_sec)
            .finish()
    }
}

/// The largest WebSocket message the transport accepts; larger ones close the connection
/// (1009). The core's own limits must stay below it so that it can answer with an error.
pub const MAX_WEBSOCKET_MESSAGE: usize = 131_072;

/// Room a text frame gets beyond its payload (type, peer id, id); defined with the wire format,
/// which the client shares.
pub use super::messages::TEXT_OVERHEAD_BYTES;

/// The longest `token_warning_secs` accepted: one day.
pub const MAX_TOKEN_WARNING_SECS: u32 = 86_400;

/// Checks the `[registry]` values; returns the first problem. `demo` is `http.demo`: the demo
/// generates a token secret of its own when none is configured.
pub fn validate(config: &RegistryConfig, demo: bool) -> Result<(), Invalid> {
    for (index, secret) in config.jwt_secrets.iter().enumerate() {
        if secret.is_empty() {
            return Err(invalid(
                format!("registry.jwt_secrets[{index}]"),
                "must not be empty",
            ));
        }
    }
    if config.enabled && !demo && config.jwt_secrets.is_empty() && config.jwt_public_keys.is_empty()
    {
        return Err(invalid(
            "registry.jwt_secrets",
            "the registry is enabled but no token could verify: set jwt_secrets or jwt_public_keys",
        ));
    }
    let positive: [(&str, u64); 13] = [
        ("registry.max_connections", config.max_connections.into()),
        (
            "registry.max_connections_per_ip",
            config.max_connections_per_ip.into(),
        ),
        ("registry.max_projects", config.max_projects.into()),
        (
            "registry.max_peers_per_project",
            config.max_peers_per_project.into(),
        ),
        (
            "registry.max_payload_bytes",
            config.max_payload_bytes.into(),
        ),
        (
            "registry.max_relay_frame_bytes",
            config.max_relay_frame_bytes.into(),
        ),
        ("registry.messages_per_sec", config.messages_per_sec.into()),
        ("registry.relay_bytes_per_sec", config.relay_bytes_per_sec),
        (
            "registry.relay_queue_blobs",
            config.relay_queue_blobs.into(),
        ),
        (
            "registry.signal_queue_messages",
            config.signal_queue_messages.into(),
        ),
        (
            "registry.ping_interval_secs",
            config.ping_interval_secs.into(),
        ),
        (
            "registry.idle_timeout_secs",
            config.idle_timeout_secs.into(),
        ),
        (
            "registry.join_timeout_secs",
            config.join_timeout_secs.into(),
        ),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    let text_max = MAX_WEBSOCKET_MESSAGE - TEXT_OVERHEAD_BYTES;
    if config.max_payload_bytes as usize > text_max {
        return Err(invalid(
            "registry.max_payload_bytes",
            format!("must be at most {text_max}"),
        ));
    }
    // The header is at most 1 + 64 + 24 bytes and the box at least 16.
    if !(105..=MAX_WEBSOCKET_MESSAGE - 256).contains(&(config.max_relay_frame_bytes as usize)) {
        return Err(invalid(
            "registry.max_relay_frame_bytes",
            format!("must be between 105 and {}", MAX_WEBSOCKET_MESSAGE - 256),
        ));
    }
    if (config.signal_queue_bytes as usize)
        < config.max_payload_bytes as usize + TEXT_OVERHEAD_BYTES
    {
        return Err(invalid(
            "registry.signal_queue_bytes",
            "must hold at least one message of max_payload_bytes plus 4096",
        ));
    }
    let largest_frame = (config.max_payload_bytes as usize + TEXT_OVERHEAD_BYTES)
        .max(config.max_relay_frame_bytes as usize) as u64;
    if config.peer_budget_bytes < largest_frame {
        return Err(invalid(
            "registry.peer_budget_bytes",
            format!(
                "must hold at least one of the largest frames ({largest_frame} bytes: \
                 max_payload_bytes plus 4096, or max_relay_frame_bytes)"
            ),
        ));
    }
    if config.budget_bytes < config.peer_budget_bytes {
        return Err(invalid(
            "registry.budget_bytes",
            "must be at least registry.peer_budget_bytes",
        ));
    }
    if config.idle_timeout_secs <= config.ping_interval_secs {
        return Err(invalid(
            "registry.idle_timeout_secs",
            "must be longer than registry.ping_interval_secs, or every connection times out",
        ));
    }
    if config.token_warning_secs > MAX_TOKEN_WARNING_SECS {
        return Err(invalid(
            "registry.token_warning_secs",
            format!("must be at most {MAX_TOKEN_WARNING_SECS}"),
        ));
    }
    if config.enabled && config.max_connections_per_ip > config.max_connections {
        return Err(invalid(
            "registry.max_connections_per_ip",
            "exceeds registry.max_connections",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn invalid_key(text: &str) -> String {
        match Config::from_toml_str(text, "test.toml") {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected a validation error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_registry_section_parses_and_validates() {
        let config = Config::from_toml_str(
            "[registry]\nenabled = true\nlisten = \"127.0.0.1:9642\"\njwt_secrets = [\"s\"]\n\
             max_peers_per_project = 5\n",
            "test.toml",
        )
        .unwrap();
        assert!(config.registry.enabled);
        assert_eq!(config.registry.max_peers_per_project, 5);
        assert!(
            !format!("{:?}", config.registry).contains("\"s\""),
            "secrets redacted"
        );
        for (text, key) in [
            ("[registry]\nenabled = true", "registry.jwt_secrets"),
            (
                "[registry]\njwt_secrets = [\"\"]",
                "registry.jwt_secrets[0]",
            ),
            (
                "[registry]\nmessages_per_sec = 0",
                "registry.messages_per_sec",
            ),
            (
                "[registry]\nmax_payload_bytes = 200000",
                "registry.max_payload_bytes",
            ),
            (
                "[registry]\nmax_relay_frame_bytes = 100",
                "registry.max_relay_frame_bytes",
            ),
            (
                "[registry]\nsignal_queue_bytes = 1000",
                "registry.signal_queue_bytes",
            ),
            (
                "[registry]\nping_interval_secs = 30\nidle_timeout_secs = 30",
                "registry.idle_timeout_secs",
            ),
            (
                "[registry]\ntoken_warning_secs = 86401",
                "registry.token_warning_secs",
            ),
            (
                "[registry]\npeer_budget_bytes = 1000",
                "registry.peer_budget_bytes",
            ),
            ("[registry]\nbudget_bytes = 100000", "registry.budget_bytes"),
            ("[http]\ndemo = true", "http.demo"),
        ] {
            assert_eq!(invalid_key(text), key, "{text}");
        }
        let config = Config::from_toml_str(
            "[registry]\nenabled = true\nice_servers = false\ntoken_warning_secs = 0\n\
             relay_warn_bytes_per_sec = 0\n[http]\ndemo = true\n",
            "test.toml",
        )
        .expect("the demo supplies a token secret of its own");
        assert!(!config.registry.ice_servers && config.http.demo);
        assert_eq!(config.registry.token_warning_secs, 0);
        assert_eq!(config.registry.relay_warn_bytes_per_sec, 0);
        match Config::from_toml_str("[registry]\nenable = true", "test.toml") {
            Err(ConfigError::Parse { line: 2, .. }) => {}
            other => panic!("unknown keys are errors: {other:?}"),
        }
    }
}
