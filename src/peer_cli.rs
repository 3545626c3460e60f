//! `turnpike keygen`, `turnpike token` and `turnpike peer`: try the registry from a terminal.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use turnpike::client::{ClientConfig, Event, KeyPair, RegistryClient};
use turnpike::registry::attest::AttestationClaims;
use turnpike::registry::auth::{Claims, mint_hs256};
use turnpike::registry::issuer::Issuer;
use turnpike::registry::messages::{SignalKind, valid_id};

/// How to reach the registry and who to be: the options `turnpike peer` and `turnpike link`
/// share.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry endpoint.
    #[arg(
        long,
        value_name = "URL",
        env = "TURNPIKE_REGISTRY_URL",
        default_value = "ws://127.0.0.1:9641/v1/registry"
    )]
    pub url: String,

    /// The peer's token (`turnpike token`). Prefer the environment variable: command lines
    /// are visible to other users of the machine.
    #[arg(
        long,
        value_name = "JWT",
        env = "TURNPIKE_TOKEN",
        hide_env_values = true
    )]
    pub token: String,

    /// The peer's X25519 secret key, base64 (`turnpike keygen`). Default: a new key for this
    /// run (fine unless the token pins a key with `pk`).
    #[arg(
        long,
        value_name = "SECRET",
        env = "TURNPIKE_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,
}

impl RegistryArgs {
    /// The key pair of `--key`, or a new one.
    pub fn keys(&self) -> anyhow::Result<KeyPair> {
        match &self.key {
            Some(secret) => KeyPair::from_secret_base64(secret).context("--key"),
            None => Ok(KeyPair::generate()),
        }
    }
}

/// Options of `turnpike peer`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(flatten)]
    registry: RegistryArgs,

    /// The other peer: the destination of `send`; with `recv`, only its messages are printed.
    #[arg(long, value_name = "PEER_ID")]
    to: Option<String>,

    #[command(subcommand)]
    action: PeerAction,
}

/// What `turnpike peer` does.
#[derive(Debug, Subcommand)]
pub enum PeerAction {
    /// Send one message to --to and exit: a relay blob (end-to-end encrypted) or a signaling
    /// message whose payload is MESSAGE parsed as JSON (or as a JSON string if it is not).
    Send {
        /// What to send.
        #[arg(long, value_enum, default_value = "relay")]
        kind: SendKind,
        /// Seconds to wait for --to to join the project.
        #[arg(long, value_name = "SECONDS", default_value = "10")]
        wait: u64,
        /// The message.
        message: String,
    },
    /// Print what arrives, one JSON object per line, until --count messages or --timeout.
    Recv {
        /// Stop after this many relay or signaling messages (0 = never).
        #[arg(long, default_value = "0")]
        count: u64,
        /// Stop after this many seconds (0 = never).
        #[arg(long, value_name = "SECONDS", default_value = "0")]
        timeout: u64,
    },
}

/// The kinds `peer send` can send.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SendKind {
    /// An encrypted relay blob.
    Relay,
    /// `webrtc_offer`.
    Offer,
    /// `webrtc_answer`.
    Answer,
    /// `webrtc_ice_candidate`.
    Candidate,
}

/// `turnpike keygen`: prints a new X25519 key pair as JSON (or as shell exports).
pub fn keygen(shell: bool) -> anyhow::Result<()> {
    let keys = KeyPair::generate();
    if shell {
        println!("export TURNPIKE_KEY='{}'", keys.secret_base64());
        println!("export TURNPIKE_PUBLIC_KEY='{}'", keys.public_base64());
        return Ok(());
    }
    let output = serde_json::json!({
        "public_key": keys.public_base64(),
        "secret_key": keys.secret_base64(),
    });
    println!("{output}");
    Ok(())
}

/// What `turnpike token` signs with.
pub enum Signer {
    /// An HS256 secret.
    Secret(String),
    /// An Ed25519 key (`--signing-key`): EdDSA tokens, and attestations.
    Issuer(Issuer),
}

/// `turnpike token`: prints a registry token, or with `attest` a JSON object with the token,
/// a key attestation and the key pair (the secret key only when generated here).
pub fn token(
    signer: &Signer,
    sub: &str,
    project: &str,
    ttl: u64,
    pk: Option<String>,
    attest: bool,
) -> anyhow::Result<()> {
    if !valid_id(sub) || !valid_id(project) {
        bail!("--sub and --project must be 1 to 64 bytes of printable ASCII without spaces");
    }
    if let Some(pk) = &pk {
        turnpike::client::seal::public_key_from_base64(pk)
            .map_err(|_| anyhow::anyhow!("--pk must be a base64 X25519 public key (32 bytes)"))?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is set before 1970")?
        .as_secs();
    let exp = now.saturating_add(ttl);
    // With --attest and no --pk, a new key pair: the attestation and the token's pin name it.
    let generated = (attest && pk.is_none()).then(KeyPair::generate);
    let pk = pk.or_else(|| generated.as_ref().map(KeyPair::public_base64));
    let claims = Claims {
        sub: Some(sub.to_owned()),
        project: Some(project.to_owned()),
        exp: Some(exp),
        nbf: None,
        pk: pk.clone(),
    };
    let token = match signer {
        Signer::Secret(secret) => mint_hs256(secret.as_bytes(), &claims),
        Signer::Issuer(issuer) => issuer.mint_token(&claims),
    };
    if !attest {
        println!("{token}");
        return Ok(());
    }
    let (Signer::Issuer(issuer), Some(pk)) = (signer, pk) else {
        bail!("--attest needs --signing-key (an attestation is signed with an Ed25519 key)");
    };
    let attestation = issuer.mint_attestation(&AttestationClaims {
        sub: sub.to_owned(),
        project: project.to_owned(),
        pk: pk.clone(),
        exp,
        iat: Some(now),
    });
    let mut output = serde_json::json!({
        "token": token,
        "attestation": attestation,
        "public_key": pk,
    });
    if let Some(keys) = generated {
        output["secret_key"] = keys.secret_base64().into();
    }
    println!("{output}");
    Ok(())
}

/// `turnpike peer`.
pub fn peer(args: PeerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(run_peer(args))
}

async fn run_peer(args: PeerArgs) -> anyhow::Result<()> {
    let registry = &args.registry;
    let mut config = ClientConfig::new(&registry.url, &registry.token, registry.keys()?);
    config.reconnect = matches!(args.action, PeerAction::Recv { .. });
    let mut client = RegistryClient::connect(config)
        .await
        .with_context(|| format!("cannot join the registry at {}", registry.url))?;
    match args.action {
        PeerAction::Send {
            kind,
            wait,
            message,
        } => {
            let Some(to) = args.to else {
                bail!("send needs --to PEER_ID");
            };
            send(&mut client, &to, kind, wait, &message).await
        }
        PeerAction::Recv { count, timeout } => recv(&mut client, args.to, count, timeout).await,
    }
}

async fn send(
    client: &mut RegistryClient,
    to: &str,
    kind: SendKind,
    wait: u64,
    message: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // The welcome lists who is there; otherwise wait for `to` to join.
    let mut present = false;
    while !present {
        let event = tokio::time::timeout_at(deadline, client.next_event()).await;
        match event {
            Ok(Some(Event::Welcome { peers, .. })) => present = peers.iter().any(|(p, _)| p == to),
            Ok(Some(Event::PeerJoined { peer_id, .. })) => present = peer_id == to,
            Ok(Some(Event::Closed { reason, .. })) => bail!("the registry closed: {reason}"),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the registry connection ended"),
            Err(_) => bail!("`{to}` did not join the project within {wait} s"),
        }
    }
    let signal = match kind {
        SendKind::Relay => None,
        SendKind::Offer => Some(SignalKind::Offer),
        SendKind::Answer => Some(SignalKind::Answer),
        SendKind::Candidate => Some(SignalKind::IceCandidate),
    };
    match signal {
        None => client.relay(to, message.as_bytes()).await?,
        Some(kind) => {
            let payload = serde_json::from_str(message)
                .unwrap_or_else(|_| serde_json::Value::String(message.to_owned()));
            client.signal(kind, to, &payload, Some(1)).await?;
        }
    }
    // An error about the message comes back quickly; silence means it was queued.
    let settle = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(event)) = tokio::time::timeout_at(settle, client.next_event()).await {
        if let Event::Error { code, message, .. } = event {
            bail!("the registry refused the message: {code}: {message}");
        }
    }
    client.close().await;
    eprintln!("sent to {to}");
    Ok(())
}

async fn recv(
    client: &mut RegistryClient,
    only: Option<String>,
    count: u64,
    timeout: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut received = 0u64;
    loop {
        let left = if timeout == 0 {
            Duration::from_secs(86_400 * 365)
        } else {
            match Duration::from_secs(timeout).checked_sub(started.elapsed()) {
                Some(left) => left,
                None => return Ok(()),
            }
        };
        let event = match tokio::time::timeout(left, client.next_event()).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("the registry connection ended"),
            Err(_) => return Ok(()),
        };
        let from_other = |from: &str| only.as_deref().is_some_and(|o| o != from);
        let line = match event {
            Event::Welcome {
                peer_id,
                project,
                peers,
                ..
            } => {
                let ids: Vec<&str> = peers.iter().map(|(p, _)| p.as_str()).collect();
                eprintln!("joined {project} as {peer_id}; peers: {ids:?}");
                continue;
            }
            Event::Relay { from, message } if !from_other(&from) => {
                received += 1;
                serde_json::json!({"event": "relay", "from": from,
                    "message": String::from_utf8_lossy(&message)})
            }
            Event::Signal {
                kind,
                from,
                payload,
            } if !from_other(&from) => {
                received += 1;
                let payload: serde_json::Value =
                    serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
                serde_json::json!({"event": kind.as_str(), "from": from, "payload": payload})
            }
            Event::RelayRejected { from, reason } => {
                serde_json::json!({"event": "relay_rejected", "from": from, "reason": reason})
            }
            Event::PeerJoined { peer_id, .. } => {
                serde_json::json!({"event": "peer_joined", "peer_id": peer_id})
            }
            Event::PeerLeft { peer_id } => {
                serde_json::json!({"event": "peer_left", "peer_id": peer_id})
            }
            Event::Error { code, message, .. } => {
                serde_json::json!({"event": "error", "code": code, "message": message})
            }
            Event::TokenExpiring { expires_at } => {
                serde_json::json!({"event": "token_expiring", "expires_at": expires_at})
            }
            Event::RelayUsage {
                bytes_per_sec,
                threshold,
                ..
            } => serde_json::json!({"event": "relay_usage", "bytes_per_sec": bytes_per_sec,
                                    "threshold": threshold}),
            Event::Disconnected { reason, .. } => {
                eprintln!("disconnected ({reason}); reconnecting");
                continue;
            }
            Event::Closed { reason, .. } => bail!("the registry closed: {reason}"),
            _ => continue,
        };
        println!("{line}");
        if count != 0 && received >= count {
            client.close().await;
            return Ok(());
        }
    }
}
