//! The process's logging: one global `tracing` subscriber writing to standard error (so, under
//! systemd, to the journal), in text or JSON, filtered by `RUST_LOG` when it is set and by
//! `[log] level` otherwise. The filter sits behind a `tracing_subscriber` reload layer, so a
//! configuration reload can change `log.level` without a restart ([`LogHandle::set_level`]).

use std::io::IsTerminal as _;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

/// Why logging could not be set up or its filter changed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG={directives:?} is not a valid log filter: {reason}")]
    Env {
        /// The variable's value.
        directives: String,
        /// The parser's message.
        reason: String,
    },
    /// `log.level` does not parse (the configuration's validation normally catches it).
    #[error("log.level = {level:?} is not a valid log filter: {reason}")]
    Level {
        /// The configured filter.
        level: String,
        /// The parser's message.
        reason: String,
    },
    /// A global subscriber is already installed, or the filter's subscriber is gone.
    #[error("cannot set up logging: {0}")]
    Install(String),
}

/// What a call to [`LogHandle::set_level`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelChange {
    /// The new filter is in force.
    Applied,
    /// `RUST_LOG` is set and takes precedence: nothing changed.
    OverriddenByEnv,
}

/// Changes the filter of the installed subscriber.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    /// True when `RUST_LOG` chose the filter at start (it then wins over `log.level`).
    from_env: bool,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("from_env", &self.from_env)
            .finish_non_exhaustive()
    }
}

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`; `log.format` picks
/// text or JSON lines. Colours only for a person at a terminal, not for journald or a file.
pub fn init(log: &LogConfig) -> Result<LogHandle, LogError> {
    let env = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|d| !d.trim().is_empty() && crate::config::check_log_directives(d).is_ok());
    // The parser's error repeats its cause in its own message: format it, do not chain it.
    let filter = match &env {
        Some(directives) => EnvFilter::builder()
            .with_regex(false)
            .parse(directives)
            .map_err(|e| LogError::Env {
                directives: directives.clone(),
                reason: e.to_string(),
            })?,
        None => parse_level(&log.level)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match log.format {
        LogFormat::Text => (
            Some(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| LogError::Install(e.to_string()))?;
    Ok(LogHandle {
        filter: handle,
        from_env: env.is_some(),
    })
}

fn parse_level(level: &str) -> Result<EnvFilter, LogError> {
    // The grammar `config::validate` checks (tracing's parser misbehaves on some span and
    // field filters).
    if let Err(reason) = crate::config::check_log_directives(level) {
        return Err(LogError::Level {
            level: level.to_owned(),
            reason,
        });
    }
    // Literal field values, as `config::validate` checks them (regexes could take minutes).
    EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map_err(|e| LogError::Level {
            level: level.to_owned(),
            reason: e.to_string(),
        })
}

impl LogHandle {
    /// Makes `level` (an `EnvFilter` directive, a new `log.level`) the filter, unless
    /// `RUST_LOG` chose it at start.
    pub fn set_level(&self, level: &str) -> Result<LevelChange, LogError> {
        if self.from_env {
            return Ok(LevelChange::OverriddenByEnv);
        }
        let filter = parse_level(level)?;
        self.filter
            .reload(filter)
            .map_err(|e| LogError::Install(e.to_string()))?;
        Ok(LevelChange::Applied)
    }
}
