//! The `[cluster]` section: several turnpike nodes sharing state through one Redis, and its
//! validation. Without `redis_url` a node runs alone and never talks to Redis.

use serde::Deserialize;

use super::validate::{Invalid, invalid};

/// The `[cluster]` section. Its `Debug` output never shows the Redis URL's password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The Redis the nodes share (`redis://[:PASSWORD@]HOST:PORT[/DB]`); unset: no cluster.
    pub redis_url: Option<String>,
    /// This node's name in the cluster, unique among its nodes; unset: the host name.
    pub node_id: Option<String>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &self.redis_url.as_deref().map(redact_password))
            .field("node_id", &self.node_id)
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
