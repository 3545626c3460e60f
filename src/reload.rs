//! Configuration reload: on SIGHUP the service reads the configuration file again and applies
//! what can change while allocations and connections live.
//!
//! A reload is all or nothing for the file: it is parsed and validated as at start, the token
//! key files it names are read, and only when all of that worked is anything applied. A file
//! that fails is refused with one error in the log (the file, the line and column or the key,
//! and why), `turnpike_config_reloads_total{result="error"}` counts it, and the running
//! configuration stays.
//!
//! What a new file changes falls in two groups ([`merge`]):
//! - **live**: credentials (REST secrets, static users, nonce lifetime), the peer policy, every
//!   `[limits]` value, `server.software`, `server.drain_timeout_secs`, `log.level`, the
//!   credential endpoints' keys, secret, TTLs and public host, and the registry's token keys.
//!   The cores get new [`Settings`] through [`CoreUpdates`] (each at its next loop turn); the
//!   quotas, the HTTP API and the registry swap theirs atomically. Allocations that exist keep
//!   relaying; their next Refresh is checked against the new credentials, which is what makes
//!   secret rotation work. The nonce key is the process's own and stays, so nonces stay valid.
//! - **restart**: everything bound or sized at start (listeners, relay addresses and ports,
//!   workers, buffers, TLS file names and watcher, connection limits, the HTTP address and CORS,
//!   the registry's switch, listener and limits, the log format) and the realm: clients derive
//!   their long-term key from the realm they were told, so changing it under live allocations
//!   would fail every Refresh. A reload that changes them keeps their old values and logs one
//!   warning naming each of them; the rest of the file still applies.
//!
//! Secrets are never logged: the log names keys, not values, and parse errors have their
//! quoted values blanked ([`redacted`]).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::http::HttpState;
use crate::logging::{LevelChange, LogHandle};
use crate::metrics::Metrics;
use crate::net::live::CoreUpdates;
use crate::net::relay::RelayAddresses;
use crate::proto::nonce::{NonceKey, derive_nonce_key};
use crate::proto::server::{Authenticator, Limits, Settings, Shared};
use crate::registry::RegistryState;
use crate::registry::auth::{KeyError, Keys};
use crate::tls::CertStore;

/// Why a new configuration was refused (the running one stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read, does not parse, or a value is out of range. The message is
    /// [`redacted`].
    #[error("{}", redacted(.0))]
    Config(ConfigError),
    /// The file names no REST secret and no user: every client would be refused.
    #[error(
        "{origin}: auth: no secrets and no users are configured, so every client would be \
         refused; add auth.secrets or auth.users"
    )]
    NoCredentials {
        /// The file.
        origin: String,
    },
    /// A `registry.jwt_public_keys` file cannot be read or holds no usable key.
    #[error("{0}")]
    RegistryKeys(#[from] KeyError),
}

/// What a reload that was applied changed, by key name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys whose new values are in force.
    pub applied: Vec<&'static str>,
    /// Keys that changed in the file but need a restart: their old values stay.
    pub needs_restart: Vec<&'static str>,
}

/// Where a reload's settings go: the parts of the running server that can change them.
pub struct Targets {
    /// Every core's settings and the draining flag.
    pub updates: Arc<CoreUpdates>,
    /// The allocation quotas every core shares.
    pub quotas: Arc<Shared>,
    /// The relay addresses (fixed at start), part of the cores' settings.
    pub relay_addrs: RelayAddresses,
    /// The nonce key (random per process), kept so that nonces stay valid across reloads.
    pub nonce_key: [u8; 32],
    /// The host's interface addresses as last read ([`Reloader::set_interfaces`]), part of the
    /// cores' settings (peers there are refused).
    pub interfaces: Vec<IpAddr>,
    /// The HTTP API's credential endpoints.
    pub http: HttpState,
    /// The registry, when enabled.
    pub registry: Option<RegistryState>,
    /// The TLS certificate, when there are TLS listeners.
    pub certs: Option<Arc<CertStore>>,
    /// The log filter, when the binary set logging up with [`crate::logging::init`].
    pub log: Option<LogHandle>,
    /// Counts reloads.
    pub metrics: Arc<Metrics>,
}

/// Reloads the configuration file on request (the service calls [`Reloader::reload`] on
/// SIGHUP) and remembers the configuration in force.
pub struct Reloader {
    path: Option<PathBuf>,
    running: Config,
    /// The REST secret generated at start because the file had no credentials: it stays while
    /// the file still has none.
    generated_secret: Option<String>,
    targets: Targets,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for a server running `running`, read from `path` (`None`: the embedded
    /// default, which has nothing to read again). `generated_secret` is the secret the service
    /// generated at start, if it had to.
    pub fn new(
        path: Option<PathBuf>,
        running: Config,
        generated_secret: Option<String>,
        targets: Targets,
    ) -> Reloader {
        Reloader {
            path,
            running,
            generated_secret,
            targets,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.running
    }

    /// The host's interface addresses were read again: when they changed, every core gets
    /// settings with the new list (and revokes permissions to addresses that became the
    /// host's). Returns true when they changed.
    pub fn set_interfaces(&mut self, mut addresses: Vec<IpAddr>) -> bool {
        addresses.sort();
        addresses.dedup();
        if addresses == self.targets.interfaces {
            return false;
        }
        tracing::info!(
            count = addresses.len(),
            "the host's addresses changed: peers there are refused"
        );
        self.targets.interfaces = addresses;
        let t = &self.targets;
        let settings = core_settings(&self.running, &t.relay_addrs, &t.interfaces, t.nonce_key);
        t.updates.publish(Arc::new(settings));
        true
    }

    /// Reads the file again and applies it, then reloads the TLS certificate. Logs the
    /// outcome (one line; a second, at warn, for keys that need a restart) and counts it in
    /// `turnpike_config_reloads_total`. On error nothing of the file is applied (the
    /// certificate still reloads: it has its own files and its own error log).
    pub fn reload(&mut self) -> Result<Report, ReloadError> {
        let outcome = match self.path.clone() {
            Some(path) => self.reload_file(&path),
            None => {
                tracing::info!(
                    "SIGHUP: running with the built-in configuration (no --config): nothing to \
                     read again; reloading the TLS certificate"
                );
                Ok(Report::default())
            }
        };
        self.targets.metrics.count_reload(outcome.is_ok());
        if let Err(error) = &outcome {
            tracing::error!(%error, "configuration reload refused; the running configuration stays");
        }
        if let Some(certs) = &self.targets.certs {
            crate::tls::reload_and_log(certs, "SIGHUP");
        }
        outcome
    }

    fn reload_file(&mut self, path: &std::path::Path) -> Result<Report, ReloadError> {
        let mut new = Config::load(path).map_err(ReloadError::Config)?;
        if !new.auth.has_credentials() {
            match &self.generated_secret {
                // Started without credentials and still without: keep the generated secret.
                Some(secret) => new.auth.secrets.push(secret.clone()),
                None => {
                    return Err(ReloadError::NoCredentials {
                        origin: path.display().to_string(),
                    });
                }
            }
        }
        let merged = merge(&self.running, new);
        let config = merged.config;
        // Everything that can fail comes before anything is applied.
        // The key files are read again even when their names did not change: rotating the
        // key in a file is a reload too.
        let registry_keys = match &self.targets.registry {
            Some(_) => Some(Keys::from_config(&config.registry)?),
            None => None,
        };
        let t = &self.targets;
        let settings = core_settings(&config, &t.relay_addrs, &t.interfaces, t.nonce_key);
        t.updates.publish(Arc::new(settings));
        t.quotas.quota.set_limits(
            config.limits.allocations_per_user,
            config.limits.allocations_total,
        );
        t.http.reload(&config);
        if let (Some(registry), Some(keys)) = (&t.registry, registry_keys) {
            registry.set_keys(keys);
        }
        if config.log.level != self.running.log.level {
            match t.log.as_ref().map(|log| log.set_level(&config.log.level)) {
                Some(Ok(LevelChange::Applied)) | None => {}
                Some(Ok(LevelChange::OverriddenByEnv)) => {
                    tracing::info!("RUST_LOG is set and takes precedence over log.level")
                }
                // Validated with the file, so not expected; the rest is applied already.
                Some(Err(error)) => tracing::warn!(%error, "log.level not applied"),
            }
        }
        self.running = config;
        let report = Report {
            applied: merged.live,
            needs_restart: merged.restart,
        };
        if !report.needs_restart.is_empty() {
            let keys = report.needs_restart.join(", ");
            tracing::warn!(
                keys = %keys,
                "configuration reload: {keys} changed but need a restart; their old values stay \
                 in force until then"
            );
        }
        let applied = if report.applied.is_empty() {
            "nothing".to_owned()
        } else {
            report.applied.join(", ")
        };
        tracing::info!(path = %path.display(), applied = %applied, "configuration reloaded");
        Ok(report)
    }
}

/// A new configuration merged onto the running one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// What to apply: the new file, with the running values of the keys that need a restart.
    pub config: Config,
    /// Keys that changed and apply now.
    pub live: Vec<&'static str>,
    /// Keys that changed but need a restart (their running values are kept in `config`).
    pub restart: Vec<&'static str>,
}

/// Pushes the name of every key (a dotted path into the configuration) that differs between
/// `$old` and `$new`.
macro_rules! changed {
    ($old:expr, $new:expr, $out:expr; $($name:literal => $($field:ident).+),+ $(,)?) => {
        $( if $old.$($field).+ != $new.$($field).+ { $out.push($name); } )+
    };
}

/// Like [`changed!`], and also puts the old value back into `$new`.
macro_rules! keep_old {
    ($old:expr, $new:expr, $out:expr; $($name:literal => $($field:ident).+),+ $(,)?) => {
        $( if $old.$($field).+ != $new.$($field).+ {
            $out.push($name);
            $new.$($field).+ = $old.$($field).+.clone();
        } )+
    };
}

/// Splits what changed from `running` to `new` into keys that apply live and keys that need a
/// restart, and returns the configuration to run: `new` with the running values of the
/// restart-only keys. Every key of [`Config`] is in exactly one of the two lists (a test
/// holds this together with the configuration's structs).
pub fn merge(running: &Config, new: Config) -> Merged {
    let mut config = new;
    let mut live = Vec::new();
    let mut restart = Vec::new();
    changed!(running, config, live;
        "auth.secrets" => auth.secrets,
        "auth.users" => auth.users,
        "auth.nonce_lifetime_secs" => auth.nonce_lifetime_secs,
        "auth.nonce_key" => auth.nonce_key,
        "peers.allow" => peers.allow,
        "peers.deny" => peers.deny,
        "relay.tcp_allocations" => relay.tcp_allocations,
        "limits.allocations_per_user" => limits.allocations_per_user,
        "limits.allocations_total" => limits.allocations_total,
        "limits.bandwidth_bps" => limits.bandwidth_bps,
        "limits.max_allocation_lifetime_secs" => limits.max_allocation_lifetime_secs,
        "limits.default_allocation_lifetime_secs" => limits.default_allocation_lifetime_secs,
        "limits.permissions_per_allocation" => limits.permissions_per_allocation,
        "limits.channels_per_allocation" => limits.channels_per_allocation,
        "limits.unauthenticated_rate" => limits.unauthenticated_rate,
        "limits.verified_credit" => limits.verified_credit,
        "limits.rate_limit_table_size" => limits.rate_limit_table_size,
        "server.software" => server.software,
        "server.drain_timeout_secs" => server.drain_timeout_secs,
        "log.level" => log.level,
        "http.public_host" => http.public_host,
        "http.api_keys" => http.api_keys,
        "http.admin_keys" => http.admin_keys,
        "http.credential_ttl_secs" => http.credential_ttl_secs,
        "http.max_credential_ttl_secs" => http.max_credential_ttl_secs,
        "http.jwt.hs256_secrets" => http.jwt.hs256_secrets,
        "http.jwt.eddsa_public_keys" => http.jwt.eddsa_public_keys,
        "http.jwt.audience" => http.jwt.audience,
        "http.jwt.issuer" => http.jwt.issuer,
        "registry.jwt_secrets" => registry.jwt_secrets,
        "registry.jwt_public_keys" => registry.jwt_public_keys,
    );
    keep_old!(running, config, restart;
        "realm" => realm,
        "listen" => listen,
        "relay.bind_ip" => relay.bind_ip,
        "relay.bind_ipv6" => relay.bind_ipv6,
        "relay.external_ip" => relay.external_ip,
        "relay.external_ipv6" => relay.external_ipv6,
        "relay.bind_ips" => relay.bind_ips,
        "relay.external_ips" => relay.external_ips,
        "relay.ports" => relay.ports,
        "relay.xdp" => relay.xdp,
        "server.workers" => server.workers,
        "server.socket_buffer_bytes" => server.socket_buffer_bytes,
        "server.bind_retry_secs" => server.bind_retry_secs,
        "log.format" => log.format,
        "tls.certificate" => tls.certificate,
        "tls.private_key" => tls.private_key,
        "tls.reload_interval_secs" => tls.reload_interval_secs,
        "connections.max_total" => connections.max_total,
        "connections.max_per_ip" => connections.max_per_ip,
        "connections.handshake_timeout_secs" => connections.handshake_timeout_secs,
        "connections.idle_timeout_secs" => connections.idle_timeout_secs,
        "http.enabled" => http.enabled,
        "http.address" => http.address,
        "http.cors_origins" => http.cors_origins,
        "http.demo" => http.demo,
        "http.revocations_file" => http.revocations_file,
        "registry.enabled" => registry.enabled,
        "registry.listen" => registry.listen,
        "registry.max_connections" => registry.max_connections,
        "registry.max_connections_per_ip" => registry.max_connections_per_ip,
        "registry.max_projects" => registry.max_projects,
        "registry.max_peers_per_project" => registry.max_peers_per_project,
        "registry.max_payload_bytes" => registry.max_payload_bytes,
        "registry.max_relay_frame_bytes" => registry.max_relay_frame_bytes,
        "registry.messages_per_sec" => registry.messages_per_sec,
        "registry.relay_bytes_per_sec" => registry.relay_bytes_per_sec,
        "registry.relay_queue_blobs" => registry.relay_queue_blobs,
        "registry.signal_queue_messages" => registry.signal_queue_messages,
        "registry.signal_queue_bytes" => registry.signal_queue_bytes,
        "registry.ping_interval_secs" => registry.ping_interval_secs,
        "registry.idle_timeout_secs" => registry.idle_timeout_secs,
        "registry.join_timeout_secs" => registry.join_timeout_secs,
        "registry.ice_servers" => registry.ice_servers,
        "registry.token_warning_secs" => registry.token_warning_secs,
        "registry.relay_warn_bytes_per_sec" => registry.relay_warn_bytes_per_sec,
        "cluster.redis_url" => cluster.redis_url,
        "cluster.node_id" => cluster.node_id,
        "cluster.presence_ttl_secs" => cluster.presence_ttl_secs,
        "cluster.forward_queue_bytes" => cluster.forward_queue_bytes,
        "cluster.max_remote_peers" => cluster.max_remote_peers,
        "fleet.alternate_servers" => fleet.alternate_servers,
        "fleet.load_ttl_secs" => fleet.load_ttl_secs,
        "fleet.ice_servers_nodes" => fleet.ice_servers_nodes,
    );
    Merged {
        config,
        live,
        restart,
    }
}

/// The core's settings as `config` describes them, with the relay addresses chosen at start,
/// the host's interface addresses (`interfaces`, read by the service) and the process's nonce
/// key. Built at start, at every reload and when the interface addresses change.
pub fn core_settings(
    config: &Config,
    relays: &RelayAddresses,
    interfaces: &[IpAddr],
    nonce_key: [u8; 32],
) -> Settings {
    let users: HashMap<String, String> = config
        .auth
        .users
        .iter()
        .map(|(u, p)| (u.clone(), p.clone()))
        .collect();
    let secrets = config
        .auth
        .secrets
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let limits = &config.limits;
    let mut own_relay_ips: Vec<IpAddr> = relays
        .all()
        .flat_map(|(bind, advertised)| [bind, advertised])
        .filter(|ip| !ip.is_unspecified())
        .collect();
    own_relay_ips.sort();
    own_relay_ips.dedup();
    let mut own_addresses: Vec<IpAddr> = interfaces
        .iter()
        .copied()
        .chain(config.listen.iter().map(|l| l.address.ip()))
        .chain(config.relay.external_ip)
        .chain(config.relay.external_ipv6)
        .filter(|ip| !ip.is_unspecified() && !own_relay_ips.contains(ip))
        .collect();
    own_addresses.sort();
    own_addresses.dedup();
    Settings {
        auth: Authenticator::new(
            config.realm.clone(),
            secrets,
            &users,
            // A fleet's shared key when `auth.nonce_key` is set, else this process's own.
            NonceKey::new(
                config
                    .auth
                    .nonce_key
                    .as_deref()
                    .map_or(nonce_key, |k| derive_nonce_key(k.as_bytes())),
                config.auth.nonce_lifetime_secs,
            ),
        ),
        policy: config.peer_policy(),
        own_relay_ips,
        own_addresses,
        relay_ports: (config.relay.ports.start, config.relay.ports.end),
        tcp_allocations: config.relay.tcp_allocations,
        limits: Limits {
            default_lifetime: Duration::from_secs(limits.default_allocation_lifetime_secs as u64),
            max_lifetime: Duration::from_secs(limits.max_allocation_lifetime_secs as u64),
            bandwidth_bps: limits.bandwidth_bps,
            permissions_per_allocation: limits.permissions_per_allocation as usize,
            channels_per_allocation: limits.channels_per_allocation as usize,
            unauthenticated_rate: limits.unauthenticated_rate,
            verified_credit: limits.verified_credit,
            rate_limit_table_size: limits.rate_limit_table_size as usize,
        },
        software: config.server.software.clone(),
        families: [relays.bind_v4.is_some(), relays.bind_v6.is_some()],
    }
}

/// A configuration error for the log, with every double-quoted value blanked: the TOML
/// parser quotes a value of the wrong type (`invalid type: string "…", expected a sequence`),
/// and that value may be a secret. Keys are quoted with backticks and stay.
pub fn redacted(error: &ConfigError) -> String {
    let text = error.to_string();
    if !matches!(error, ConfigError::Parse { .. }) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}
