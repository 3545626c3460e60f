//! The `[cluster]` section: several turnpike nodes sharing state through one Redis, and its
//! validation. Without `redis_url` a node runs alone and never talks to Redis.

use serde::Deserialize;

use super::validate::{Invalid, invalid};

/// The `[cluster]` section. Its `Debug` output never shows the Redis URL's password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis the nodes share (`redis://[:PASSWORD@]HOST:PORT[/DB]`); unset: no cluster.
    pub redis_url: Option<String>,
    /// This node's name in the cluster, unique among its nodes; unset: the host name.
    pub node_id: Option<String>,
    /// Seconds a node's registry presence lives in Redis without a refresh: the peers of a
    /// node silent for longer (dead, or cut off from Redis) leave the other nodes' view.
    pub presence_ttl_secs: u64,
    /// The most bytes of registry messages and presence changes waiting to be sent to Redis.
    pub forward_queue_bytes: u64,
    /// The most peers of other nodes a node's registry keeps in its view.
    pub max_remote_peers: u32,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            redis_url: None,
            node_id: None,
            presence_ttl_secs: 10,
            forward_queue_bytes: 4 * 1024 * 1024,
            max_remote_peers: 100_000,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact_password))
            .field("node_id", &self.node_id)
            .field("presence_ttl_secs", &self.presence_ttl_secs)
            .field("forward_queue_bytes", &self.forward_queue_bytes)
            .field("max_remote_peers", &self.max_remote_peers)
            .finish()
    }
}

/// The URL with any password (`redis://user:secret@host`) replaced by `***`, for logs.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The longest node id accepted.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Checks the section: a `redis://` URL (TLS to Redis, `rediss://`, is not built in), and a node
/// id of letters, digits, `.`, `_` and `-`.
pub(super) fn validate(cluster: &ClusterConfig) -> Result<(), Invalid> {
    if let Some(url) = &cluster.redis_url {
        let Some(rest) = url.strip_prefix("redis://") else {
            return Err(invalid(
                "cluster.redis_url",
                format!(
                    "{}: must be a redis:// URL (rediss:// is not supported)",
                    redact_password(url)
                ),
            ));
        };
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("cluster.redis_url", "names no host"));
        }
    }
    if !(1..=3600).contains(&cluster.presence_ttl_secs) {
        return Err(invalid(
            "cluster.presence_ttl_secs",
            "must be between 1 and 3600 seconds",
        ));
    }
    if !(64 * 1024..=1 << 30).contains(&cluster.forward_queue_bytes) {
        return Err(invalid(
            "cluster.forward_queue_bytes",
            "must be between 65536 and 1073741824",
        ));
    }
    if cluster.max_remote_peers == 0 {
        return Err(invalid("cluster.max_remote_peers", "must be at least 1"));
    }
    if let Some(id) = &cluster.node_id {
        let valid = !id.is_empty()
            && id.len() <= MAX_NODE_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(invalid(
                "cluster.node_id",
                format!("{id:?}: 1-{MAX_NODE_ID_LEN} letters, digits, '.', '_' or '-'"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(url: Option<&str>, id: Option<&str>) -> ClusterConfig {
        ClusterConfig {
            redis_url: url.map(str::to_owned),
            node_id: id.map(str::to_owned),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn accepts_redis_urls_and_plain_node_ids() {
        assert!(validate(&cluster(None, None)).is_ok());
        assert!(
            validate(&cluster(
                Some("redis://127.0.0.1:6379"),
                Some("turn-1.eu_w")
            ))
            .is_ok()
        );
        assert!(validate(&cluster(Some("redis://:pw@10.0.0.5:6379/2"), None)).is_ok());
    }

    #[test]
    fn refuses_other_schemes_missing_hosts_and_odd_node_ids() {
        for url in [
            "rediss://h:6379",
            "http://h",
            "redis://",
            "redis:///0",
            "127.0.0.1:6379",
        ] {
            let error = validate(&cluster(Some(url), None)).unwrap_err();
            assert_eq!(error.key, "cluster.redis_url", "{url}");
        }
        for id in ["", "a b", "x/y", &"n".repeat(MAX_NODE_ID_LEN + 1)] {
            let error = validate(&cluster(None, Some(id))).unwrap_err();
            assert_eq!(error.key, "cluster.node_id", "{id:?}");
        }
    }

    #[test]
    fn passwords_never_reach_debug_output_or_errors() {
        let config = cluster(Some("redis://admin:hunter2@h:6379"), None);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(redact_password("redis://:hunter2@h"), "redis://:***@h");
        let error = validate(&cluster(Some("rediss://:hunter2@h"), None)).unwrap_err();
        assert!(!error.message.contains("hunter2"), "{}", error.message);
    }
}
