//! Placeholder until the service (start-up, signals, reload, drain) lands.

/// Runs the server with `config` until it is told to stop. Not implemented yet.
pub fn run(_config: crate::config::Config) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
