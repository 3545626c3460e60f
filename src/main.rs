//! The `turnpike` command: run the server, check a configuration, mint credentials.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use turnpike::config::Config;
use turnpike::proto::credentials;

#[cfg(feature = "webrtc")]
mod link_cli;
mod peer_cli;

/// A self-hosted STUN/TURN relay (RFC 8489, RFC 8656) with REST credentials, safe by default.
#[derive(Debug, Parser)]
#[command(name = "turnpike", version, arg_required_else_help = true)]
#[command(
    after_help = "Run `turnpike serve` to start with the built-in configuration (UDP and TCP \
3478, TLS 5349, private peers denied); see `turnpike help <COMMAND>` for each command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the STUN/TURN server until SIGTERM or SIGINT (and the drain that follows).
    ///
    /// Without --config (or TURNPIKE_CONFIG) the server runs with the configuration built into
    /// the binary, the one documented in config/turnpike.toml: UDP and TCP on port 3478 and
    /// TLS on port 5349 of every IPv4 and IPv6 address, private and loopback peers denied.
    /// When neither auth.secrets nor auth.users is configured, a random REST secret is
    /// generated for this run and logged once, with a warning; when [tls] names no
    /// certificate, TLS listeners use a self-signed one generated at start, with a warning.
    /// SIGHUP reads the configuration file again and applies what can change live (REST
    /// secrets, users, peer policy, limits, HTTP API keys, registry token keys, log level) and
    /// reloads the TLS certificate (as does a change of its files on disk); a file that does
    /// not load is refused and the running configuration stays; keys that need a restart are
    /// named in a warning. SIGTERM or SIGINT drains: new allocations are refused (508), the
    /// existing ones are served until they end or server.drain_timeout_secs passes (default
    /// 30 s), then the server stops; a second signal stops it at once. Logs go to standard
    /// error; RUST_LOG overrides [log] level. Under systemd (Type=notify) it reports READY=1
    /// once every listener is bound, RELOADING=1 and READY=1 around a reload, STOPPING=1 when
    /// the drain starts, and feeds the watchdog.
    /// It also serves the HTTP API ([http], default 127.0.0.1:9641): credentials for WebRTC
    /// apps (/api/v1/ice-servers), Prometheus metrics (/metrics), /healthz and /readyz, the
    /// browser SDK (/sdk/turnpike.js), the registry (/v1/registry) when [registry] enabled and
    /// its demo (/demo) when [http] demo; a TLS listener with serve_http = true serves the
    /// same API on its port (443 shared).
    Serve {
        /// The configuration file (TOML), read again on SIGHUP. Default: the built-in
        /// configuration.
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: Option<PathBuf>,
    },

    /// Check a configuration file: print "FILE: ok", or the first problem and exit with 1.
    ///
    /// A syntax error, an unknown key or a value of the wrong form is reported as
    /// FILE:LINE:COLUMN; a value out of range as FILE: KEY: PROBLEM. Nothing is bound or
    /// started.
    CheckConfig {
        /// The configuration file (TOML) to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Convert a coturn turnserver.conf into a turnpike configuration.
    ///
    /// Writes the equivalent TOML (to standard output, or to --output with mode 0600, since it
    /// may hold secrets) with a comment at its top for every option that has no equivalent or
    /// changes meaning, and for the defaults that differ (turnpike denies private peers and
    /// offers no TCP relays unless told). The result is checked as `check-config` would; the
    /// notes are also printed to standard error. README: "Migrating from coturn".
    ImportCoturn {
        /// The coturn configuration file (turnserver.conf).
        #[arg(value_name = "FILE")]
        file: PathBuf,

        /// Where to write the TOML (refused if it exists, unless --force). Default: standard
        /// output.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,

        /// Overwrite --output if it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },

    /// Mint a time-limited REST credential and print it as JSON.
    ///
    /// Prints {"username", "password", "ttl", "uris"}: username is "EXPIRY:USER", password is
    /// base64(HMAC-SHA1(secret, username)), ttl is the lifetime in seconds, and uris lists the
    /// turn:/turns:/stun: URIs of the configured listeners. The host in the URIs is
    /// relay.external_ip (relay.external_ipv6 for IPv6 listeners), else the listener's address,
    /// else 127.0.0.1. The credential is signed with --secret, or else with the first entry of
    /// auth.secrets in the configuration.
    Credentials {
        /// The user the credential is for; per-user quotas count it.
        #[arg(short, long, value_name = "USER")]
        user: String,

        /// How long the credential is valid: seconds ("90", "90s") or minutes, hours or days
        /// ("15m", "24h", "7d").
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_ttl)]
        ttl: u64,

        /// The configuration file whose secret, listeners and external address are used.
        /// Default: the built-in configuration.
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: Option<PathBuf>,

        /// The REST secret to sign with, instead of the first of auth.secrets. Prefer the
        /// environment variable: command lines are visible to other users of the machine.
        #[arg(
            long,
            value_name = "SECRET",
            env = "TURNPIKE_SECRET",
            hide_env_values = true
        )]
        secret: Option<String>,
    },

    /// Generate an X25519 key pair for a registry peer; prints {"public_key", "secret_key"}
    /// (base64) as JSON.
    Keygen {
        /// Print `export TURNPIKE_KEY='…'` and `export TURNPIKE_PUBLIC_KEY='…'` instead, for a
        /// shell to source (`turnpike peer` reads TURNPIKE_KEY).
        #[arg(long)]
        shell: bool,
    },

    /// Mint a registry token for tests and trials; prints the token.
    ///
    /// The token is an HS256 JWT signed with --secret or the first of registry.jwt_secrets, or,
    /// with --signing-key, an EdDSA JWT signed with that Ed25519 key (the server verifies it
    /// with the public key in registry.jwt_public_keys: `openssl pkey -in issuer.key -pubout`).
    /// With --attest (needs --signing-key) it prints one JSON object instead:
    /// {"token", "attestation", "public_key"} plus "secret_key" when the key pair was
    /// generated: the attestation is an EdDSA JWT (header typ "turnpike-attest+jwt", claims
    /// sub, project, pk, exp, iat) that lets other peers check the public key without trusting
    /// the server; it attests --pk when given, else a new X25519 key pair, and the token pins
    /// the same key. --issuer-public-key prints the public key of --signing-key as base64 of
    /// its raw 32 bytes (the form SDKs take as trusted issuer keys) and mints nothing.
    Token {
        /// The peer id (the `sub` claim).
        #[arg(
            long,
            value_name = "PEER_ID",
            required_unless_present = "issuer_public_key"
        )]
        sub: Option<String>,

        /// The project (the `project` claim).
        #[arg(
            long,
            value_name = "PROJECT",
            required_unless_present = "issuer_public_key"
        )]
        project: Option<String>,

        /// How long the token (and the attestation) is valid (90, 90s, 15m, 24h, 7d).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,

        /// Pin the peer's X25519 public key (base64): its join must announce exactly this key.
        /// With --attest, the key attested.
        #[arg(long, value_name = "PUBLIC_KEY")]
        pk: Option<String>,

        /// The configuration file whose registry.jwt_secrets signs. Default: the built-in one.
        #[arg(short, long, value_name = "FILE", env = "TURNPIKE_CONFIG")]
        config: Option<PathBuf>,

        /// The HS256 secret, instead of the first of registry.jwt_secrets (unused with
        /// --signing-key).
        #[arg(
            long,
            value_name = "SECRET",
            env = "TURNPIKE_REGISTRY_SECRET",
            hide_env_values = true
        )]
        secret: Option<String>,

        /// The issuer's Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519
        /// -out issuer.key`): sign EdDSA tokens and attestations with it.
        #[arg(long, value_name = "PATH", env = "TURNPIKE_SIGNING_KEY")]
        signing_key: Option<PathBuf>,

        /// Also mint a key attestation; print {"token", "attestation", "public_key",
        /// "secret_key" (when generated)} as JSON. Needs --signing-key.
        #[arg(long, requires = "signing_key")]
        attest: bool,

        /// Print the public key of --signing-key (base64 of the raw 32 bytes) and exit.
        #[arg(long, requires = "signing_key", conflicts_with_all = ["attest", "pk"])]
        issuer_public_key: bool,
    },

    /// Join a registry as a peer: send one message to another peer, or print what arrives.
    Peer(peer_cli::PeerArgs),

    /// Operate a running server through its admin API (docs/admin-api.md): list allocations
    /// (`sessions`), end them (`kill`), revoke credentials (`revoke`, `unrevoke`,
    /// `revocations`), list and disconnect registry peers (`peers`, `disconnect`). Needs a key of http.admin_keys (--key or TURNPIKE_ADMIN_KEY); talks to
    /// --url, or else to http.address of --config. Prints a table, or the API's JSON with
    /// --json; exits 1 with the API's error message when a request is refused.
    Admin(turnpike::admin::cli::AdminArgs),

    /// Open a link to another peer (docs/link-protocol.md): direct when a WebRTC path is
    /// available, else through the registry's end-to-end encrypted relay after
    /// --fallback-after. Each line of standard input is one text message, delivered in order
    /// and exactly once. Standard output carries one JSON object per line:
    /// {"event":"mode","mode":"connecting"|"p2p"|"relay"|"closed"},
    /// {"event":"message","from":PEER,"message":TEXT}, {"event":"closed","reason":R} and
    /// {"event":"error","code":C,"message":M}. When standard input closes, waits until the
    /// peer acknowledged every message and exits 0; after --flush-timeout it prints an
    /// `unacknowledged` error and exits 1 (so a peer that never answers ends the command).
    #[cfg(feature = "webrtc")]
    Link(link_cli::LinkArgs),
    /// Check that a TURN server works, as a WebRTC client would use it; exits 1 when it does not.
    ///
    /// Against any TURN server (turnpike, coturn, eturnal, ...): connects (TCP, and TLS for
    /// turns: URLs, checking the certificate against the system's authorities and --ca),
    /// asks for the STUN mapped address (Binding), allocates a UDP relay, allocates a second
    /// one on a second connection, has each permit the other, sends data through the first to
    /// the second's relayed address and back (three times, timed), and releases both. Prints
    /// a table of the steps with their times and the relayed round-trip time (--json for
    /// machines); the first step that fails ends the probe and says why (with the STUN error
    /// code: 401 means the credentials were refused). Exits 0 when every step succeeded, 1
    /// when one failed, 2 when the probe could not run (bad URL, unreadable --ca).
    Probe {
        /// The server: turn:HOST[:PORT][?transport=udp|tcp] (default port 3478, UDP) or
        /// turns:HOST[:PORT] (TLS, default port 5349).
        #[arg(value_name = "URL")]
        url: String,

        /// A REST shared secret (the probe mints a ten-minute credential for user "probe").
        /// Prefer the environment variable.
        #[arg(
            long,
            value_name = "SECRET",
            env = "TURNPIKE_SECRET",
            hide_env_values = true,
            conflicts_with = "user"
        )]
        secret: Option<String>,

        /// A long-term username, or a minted REST username (with --password).
        #[arg(long, value_name = "USER", requires = "password")]
        user: Option<String>,

        /// The password of --user.
        #[arg(
            long,
            value_name = "PASSWORD",
            env = "TURNPIKE_PASSWORD",
            hide_env_values = true
        )]
        password: Option<String>,

        /// A PEM file of certificate authorities to trust for turns: (besides the system's).
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,

        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Check any TURN server from the outside, as an attacker would; exits 1 on an exposure.
    ///
    /// Measures the amplification of unauthenticated answers (Binding, and the 401 to an
    /// Allocate: bytes out per byte in, over 3x is an exposure), then allocates with the given
    /// credentials and asks for permissions to loopback, the server's own address (the IP it
    /// was reached on), private ranges, cloud metadata addresses (169.254.169.254,
    /// 168.63.129.16, fd00:ec2::254) and every IPv6 spelling of an IPv4 address (mapped, SIIT,
    /// compatible, NAT64, 6to4, Teredo): a permission granted means the server relays there.
    /// When the server runs on this machine, loopback and its own address are also tried for
    /// real: the audit listens there and sends through the relay. Checked on a UDP allocation
    /// and, when the server offers them, an RFC 6062 TCP allocation. Prints a table (--json
    /// for machines); exits 0 when nothing is exposed, 1 on any exposure, 2 when the audit
    /// could not run (unreachable server, refused credentials).
    Audit {
        /// The server: turn:HOST[:PORT][?transport=udp|tcp] (default port 3478, UDP).
        #[arg(value_name = "URL")]
        url: String,

        /// A REST shared secret (the audit mints a one-hour credential with it). Prefer the
        /// environment variable.
        #[arg(
            long,
            value_name = "SECRET",
            env = "TURNPIKE_SECRET",
            hide_env_values = true,
            conflicts_with = "user"
        )]
        secret: Option<String>,

        /// A long-term username (with --password).
        #[arg(long, value_name = "USER", requires = "password")]
        user: Option<String>,

        /// The password of --user.
        #[arg(
            long,
            value_name = "PASSWORD",
            env = "TURNPIKE_PASSWORD",
            hide_env_values = true
        )]
        password: Option<String>,

        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::CheckConfig { file } => check_config(&file),
        Command::ImportCoturn {
            file,
            output,
            force,
        } => import_coturn(&file, output.as_deref(), force),
        Command::Credentials {
            user,
            ttl,
            config,
            secret,
        } => print_credentials(&user, ttl, config.as_deref(), secret),
        Command::Keygen { shell } => peer_cli::keygen(shell),
        Command::Token {
            sub,
            project,
            ttl,
            pk,
            config,
            secret,
            signing_key,
            attest,
            issuer_public_key,
        } => token(TokenCommand {
            sub,
            project,
            ttl,
            pk,
            config,
            secret,
            signing_key,
            attest,
            issuer_public_key,
        }),
        Command::Peer(args) => peer_cli::peer(args),
        Command::Admin(args) => turnpike::admin::cli::admin(args),
        #[cfg(feature = "webrtc")]
        Command::Link(args) => link_cli::link(args),
        Command::Audit {
            url,
            secret,
            user,
            password,
            json,
        } => return audit(&url, secret, user, password, json),
        Command::Probe {
            url,
            secret,
            user,
            password,
            ca,
            json,
        } => return probe(&url, secret, user, password, ca.as_deref(), json),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `turnpike audit`: 0 no exposure, 1 an exposure, 2 the audit could not run.
fn audit(
    url: &str,
    secret: Option<String>,
    user: Option<String>,
    password: Option<String>,
    json: bool,
) -> ExitCode {
    use turnpike::audit::{Credentials, run};
    let credentials = match (secret, user, password) {
        (Some(secret), None, _) => Credentials::Secret(secret),
        (None, Some(user), Some(password)) => Credentials::User { user, password },
        _ => {
            eprintln!("error: give --secret, or --user and --password");
            return ExitCode::from(2);
        }
    };
    match run(url, &credentials) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", report.table());
            }
            if report.exposures == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `turnpike probe`: 0 the server works, 1 a step failed, 2 the probe could not run.
fn probe(
    url: &str,
    secret: Option<String>,
    user: Option<String>,
    password: Option<String>,
    ca: Option<&Path>,
    json: bool,
) -> ExitCode {
    use turnpike::probe::{Credentials, run, tls_config};
    let credentials = match (secret, user, password) {
        (Some(secret), None, _) => Credentials::Secret(secret),
        (None, Some(user), Some(password)) => Credentials::User { user, password },
        _ => {
            eprintln!("error: give --secret, or --user and --password");
            return ExitCode::from(2);
        }
    };
    let report = tls_config(ca).and_then(|tls| run(url, &credentials, Some(tls)));
    match report {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", report.table());
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads the configuration file, or the built-in one when there is none.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::load(path).context("cannot load the configuration"),
        None => Ok(Config::embedded_default()),
    }
}

fn serve(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let log = turnpike::logging::init(&config.log)?;
    match config_path {
        Some(path) => tracing::info!(path = %path.display(), "configuration loaded"),
        None => tracing::info!("no --config given: running with the built-in configuration"),
    }
    let options = turnpike::service::RunOptions {
        config_path: config_path.map(Path::to_path_buf),
        log: Some(log),
    };
    turnpike::service::run(config, options)
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    Config::load(file)?;
    println!("{}: ok", file.display());
    Ok(())
}

/// `turnpike import-coturn`: converts, checks, writes, and lists the notes on standard error.
fn import_coturn(file: &Path, output: Option<&Path>, force: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let import = turnpike::import::convert_coturn(&text, &file.display().to_string());
    let origin = output.map_or_else(|| "(output)".to_owned(), |p| p.display().to_string());
    Config::from_toml_str(&import.toml, &origin).context(
        "the imported configuration does not load (a bug of the importer: please report it \
         with the input file)",
    )?;
    match output {
        None => print!("{}", import.toml),
        Some(path) => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).mode(0o600);
            if force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            let mut out = options.open(path).with_context(|| {
                format!("cannot create {} (--force overwrites)", path.display())
            })?;
            out.write_all(import.toml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    for note in &import.notes {
        match note.line {
            0 => eprintln!("note: {}", note.message),
            n => eprintln!(
                "note: {}:{n}: {}: {}",
                file.display(),
                note.option,
                note.message
            ),
        }
    }
    if let Some(path) = output {
        eprintln!(
            "{}: written ({} notes); check it with `turnpike check-config {}`",
            path.display(),
            import.notes.len(),
            path.display()
        );
    }
    Ok(())
}

/// The options of `turnpike token`.
struct TokenCommand {
    sub: Option<String>,
    project: Option<String>,
    ttl: u64,
    pk: Option<String>,
    config: Option<PathBuf>,
    secret: Option<String>,
    signing_key: Option<PathBuf>,
    attest: bool,
    issuer_public_key: bool,
}

/// `turnpike token`: the signer from the options, then [`peer_cli::token`].
fn token(options: TokenCommand) -> anyhow::Result<()> {
    let signer = match &options.signing_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --signing-key {}", path.display()))?;
            let issuer = turnpike::registry::issuer::Issuer::from_pkcs8_pem(&pem)
                .with_context(|| format!("--signing-key {}", path.display()))?;
            peer_cli::Signer::Issuer(issuer)
        }
        None => {
            peer_cli::Signer::Secret(registry_secret(options.config.as_deref(), options.secret)?)
        }
    };
    if options.issuer_public_key {
        return match signer {
            peer_cli::Signer::Issuer(issuer) => {
                println!("{}", issuer.public_key_base64());
                Ok(())
            }
            peer_cli::Signer::Secret(_) => bail!("--issuer-public-key needs --signing-key"),
        };
    }
    let (Some(sub), Some(project)) = (options.sub, options.project) else {
        bail!("--sub and --project are required");
    };
    peer_cli::token(
        &signer,
        &sub,
        &project,
        options.ttl,
        options.pk,
        options.attest,
    )
}

/// The secret `turnpike token` signs with: --secret, else the first registry.jwt_secrets.
fn registry_secret(config_path: Option<&Path>, secret: Option<String>) -> anyhow::Result<String> {
    let config = load_config(config_path)?;
    match secret.or_else(|| config.registry.jwt_secrets.first().cloned()) {
        Some(secret) if !secret.is_empty() => Ok(secret),
        Some(_) => bail!("--secret must not be empty"),
        None => bail!(
            "no registry secret to sign with: configure registry.jwt_secrets (--config FILE) \
             or pass --secret (or set TURNPIKE_REGISTRY_SECRET)"
        ),
    }
}

/// What `turnpike credentials` prints.
#[derive(Debug, Serialize)]
struct CredentialOutput {
    username: String,
    password: String,
    /// Seconds the credential stays valid.
    ttl: u64,
    uris: Vec<String>,
}

fn print_credentials(
    user: &str,
    ttl_secs: u64,
    config_path: Option<&Path>,
    secret: Option<String>,
) -> anyhow::Result<()> {
    if user.is_empty() {
        bail!("--user must not be empty");
    }
    let config = load_config(config_path)?;
    let secret = match secret.or_else(|| config.auth.secrets.first().cloned()) {
        Some(secret) if !secret.is_empty() => secret,
        Some(_) => bail!("--secret must not be empty"),
        None => bail!(
            "no REST secret to sign with: configure auth.secrets in the configuration file \
             (--config FILE) or pass --secret (or set TURNPIKE_SECRET)"
        ),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is set before 1970")?
        .as_secs();
    let credential = credentials::mint(secret.as_bytes(), user, now, ttl_secs);
    let output = CredentialOutput {
        username: credential.username,
        password: credential.password,
        ttl: ttl_secs,
        uris: turnpike::config::client_uris(&config),
    };
    let json = serde_json::to_string_pretty(&output).context("cannot encode the credential")?;
    println!("{json}");
    Ok(())
}

/// Parses a credential lifetime: `90`, `90s`, `15m`, `24h` or `7d`, into seconds (at least 1).
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit_secs) = match text.char_indices().last() {
        Some((index, 's')) => (&text[..index], 1),
        Some((index, 'm')) => (&text[..index], 60),
        Some((index, 'h')) => (&text[..index], 3600),
        Some((index, 'd')) => (&text[..index], 86_400),
        _ => (text, 1),
    };
    let usage = || {
        format!(
            "`{text}` is not a duration: use seconds (90, 90s), minutes (15m), hours (24h) or days (7d)"
        )
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(usage());
    }
    let count: u64 = digits.parse().map_err(|_| usage())?;
    let secs = count
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    if secs == 0 {
        return Err("the lifetime must be at least one second".to_owned());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("24h"), Ok(86_400));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        for bad in [
            "",
            "s",
            "0",
            "0h",
            "-5",
            "1.5h",
            "5w",
            "h5",
            "1 h",
            "99999999999999999999",
            "é",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert!(parse_ttl("18446744073709551615d").is_err());
    }

    #[test]
    fn arguments_parse() {
        let cli =
            Cli::try_parse_from(["turnpike", "credentials", "--user", "alice", "--ttl", "15m"])
                .unwrap();
        match cli.command {
            Command::Credentials { user, ttl, .. } => {
                assert_eq!(user, "alice");
                assert_eq!(ttl, 900);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["turnpike", "credentials", "-u", "bob"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Credentials { ttl: 86_400, .. }
        ));
        let cli = Cli::try_parse_from(["turnpike", "check-config", "x.toml"]).unwrap();
        assert!(matches!(cli.command, Command::CheckConfig { .. }));
        assert!(
            Cli::try_parse_from(["turnpike", "credentials"]).is_err(),
            "--user is required"
        );
        assert!(
            Cli::try_parse_from(["turnpike", "check-config"]).is_err(),
            "FILE is required"
        );
    }
}
