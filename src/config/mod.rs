//! The server's configuration: a TOML file, parsed strictly, validated before use.
//!
//! - [`Config`] and its sections define the keys and their defaults. Every section and field
//!   has a default, so an empty file is a complete configuration (UDP on port 3478, private
//!   peers denied).
//! - Unknown keys are errors, reported with the file, line and column ([`ConfigError::Parse`]).
//! - [`validate`] checks values after parsing and names the offending key
//!   ([`ConfigError::Invalid`]).
//!
//! `config/turnpike.toml` in the repository documents every option; it is compiled in as
//! [`EMBEDDED_DEFAULT`], the configuration `turnpike serve` runs with when given no file.

mod cluster;
mod fleet;
pub mod fuzzing;
mod http;
mod schema;
#[cfg(test)]
mod tests;
mod uris;
pub mod validate;

use std::path::{Path, PathBuf};

pub use crate::registry::RegistryConfig;
pub use cluster::{ClusterConfig, redact_password};
pub use fleet::FleetConfig;
pub use http::{HttpConfig, JwtConfig};
pub use schema::{
    AuthConfig, Config, ConnectionsConfig, LimitsConfig, Listen, ListenTransport, LogConfig,
    LogFormat, PeersConfig, PortRange, PortRangeError, RelayConfig, ServerConfig, TlsConfig,
    default_listeners,
};
pub use uris::client_uris;
pub(crate) use validate::check_log_directives;

/// The reference configuration, with every option and its default, compiled into the binary.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/turnpike.toml");

/// The origin [`Config::embedded_default`] reports in errors.
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason (part of the message, so not also a `source()`).
        reason: std::io::Error,
    },
    /// The text is not valid TOML, has an unknown key, or a value of the wrong type or form.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// Where the text came from (a file path, or `<embedded default>`).
        origin: String,
        /// 1-based line of the problem (0 when the parser gave no position).
        line: usize,
        /// 1-based column, in characters (0 when the parser gave no position).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The TOML is well-formed but a value is out of range or contradicts another.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// Where the text came from.
        origin: String,
        /// The dotted key, such as `relay.ports`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl Config {
    /// The configuration compiled into the binary ([`EMBEDDED_DEFAULT`]). Equal to
    /// [`Config::default`]; a unit test holds the file and the code defaults together.
    pub fn embedded_default() -> Config {
        Config::from_toml_str(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).unwrap_or_default()
    }

    /// Parses and validates a configuration. `origin` names the text in errors (a path).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map(|span| line_and_column(text, span.start))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                origin: origin.to_owned(),
                line,
                column,
                message: one_line(error.message()),
            }
        })?;
        validate::validate(&config).map_err(|problem| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: problem.key,
            message: problem.message,
        })?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_owned(),
            reason,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// The peer policy `[peers]` describes.
    pub fn peer_policy(&self) -> crate::proto::policy::PeerPolicy {
        self.peers.policy()
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (index, character) in text.char_indices() {
        if index >= offset {
            break;
        }
        if character == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Joins a multi-line parser message into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
