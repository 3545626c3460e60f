//! `turnpike link`: one link to a peer from a terminal or a script. Each line of standard
//! input is one text message; every event is one JSON object per line on standard output.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::io::AsyncBufReadExt as _;
use turnpike::client::p2p::IceTransportPolicy;
use turnpike::client::{Incoming, Session, SessionConfig, SessionEvent, TokenSource};
use turnpike::link::SendError;

use crate::peer_cli::RegistryArgs;

/// Options of `turnpike link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    #[command(flatten)]
    registry: RegistryArgs,

    /// The other peer.
    #[arg(long, value_name = "PEER_ID")]
    to: String,

    /// Fall back to the relay when no direct path is up within this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10")]
    fallback_after: f64,

    /// Which ICE candidates the direct path may use.
    #[arg(long, value_enum, default_value = "all")]
    ice_transport_policy: Policy,

    /// After standard input closes, how many seconds to wait for the peer to acknowledge
    /// every message; then exit 1 with an `unacknowledged` error event.
    #[arg(long, value_name = "SECS", default_value = "30")]
    flush_timeout: f64,

    /// Once every message is acknowledged, keep receiving until the peer closes the link or
    /// sent no frame for this many seconds (at most `--flush-timeout`): a peer that stops
    /// writing at the same moment still gets its last lines to us, and a peer whose
    /// acknowledgements were lost gets them again when it resends (relay resends back off
    /// to 2 s and more under loss), before we close.
    #[arg(long, value_name = "SECS", default_value = "3")]
    linger: f64,
}

/// `--ice-transport-policy`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Policy {
    /// Every candidate.
    All,
    /// TURN relay candidates only.
    Relay,
}

/// The longest wait of each step after the flush (stats, close, the printers).
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the linger looks whether the peer sent a frame.
const LINGER_POLL: Duration = Duration::from_millis(50);

fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn error_event(code: &str, message: &str) {
    emit(serde_json::json!({"event": "error", "code": code, "message": message}));
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{name} must be a number of seconds"))
}

/// `turnpike link`: exits 0 when standard input closed and the peer acknowledged every
/// message; 1 with an `error` event otherwise.
pub fn link(args: LinkArgs) -> anyhow::Result<()> {
    // Diagnostics on standard error, only when asked for (`RUST_LOG`): standard output carries
    // the events.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let result = runtime.block_on(run(args));
    // Bounded: a blocking read of standard input still pending (the link closed before
    // standard input did) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn run(args: LinkArgs) -> anyhow::Result<()> {
    let registry = &args.registry;
    let mut config = SessionConfig::new(
        &registry.url,
        TokenSource::Fixed(registry.token.clone()),
        registry.keys()?,
    );
    config.fallback_after = seconds(args.fallback_after, "--fallback-after")?;
    config.ice_transport_policy = match args.ice_transport_policy {
        Policy::All => IceTransportPolicy::All,
        Policy::Relay => IceTransportPolicy::Relay,
    };
    #[cfg(feature = "webrtc")]
    {
        // The direct path: WebRTC on str0m, relay candidates from turnpike's TURN client.
        config.p2p = Some(std::sync::Arc::new(
            turnpike::client::webrtc::WebRtcConnector::new(),
        ));
    }
    let flush_timeout = seconds(args.flush_timeout, "--flush-timeout")?;
    let linger = seconds(args.linger, "--linger")?;
    let session = match Session::connect(config).await {
        Ok(session) => session,
        Err(error) => {
            error_event("connect_failed", &error.to_string());
            anyhow::bail!("cannot join the registry at {}: {error}", registry.url);
        }
    };
    let session = std::sync::Arc::new(session);
    let link = match session.link(&args.to).await {
        Ok(link) => link,
        Err(error) => {
            error_event("bad_peer", &error.to_string());
            session.close().await;
            anyhow::bail!("{error}");
        }
    };

    // Session events are drained all the time (while standard input blocks, while a send
    // waits for room, while flushing), so the session never waits on us; its errors are
    // printed as they come.
    let events = session.clone();
    let session_printer = tokio::spawn(async move {
        while let Some(event) = events.next_event().await {
            match event {
                SessionEvent::Error { code, message } => error_event(&code, &message),
                SessionEvent::RelayUsage { bytes_per_sec } => {
                    tracing::info!(bytes_per_sec, "this peer relays more than the threshold");
                }
                _ => {}
            }
        }
    });
    let mut modes = link.mode();
    let mode_printer = tokio::spawn(async move {
        loop {
            let mode = *modes.borrow_and_update();
            emit(serde_json::json!({"event": "mode", "mode": mode.as_str()}));
            if modes.changed().await.is_err() {
                return;
            }
        }
    });
    let receiver = link.clone();
    let from = args.to.clone();
    // When the peer's last message arrived (for `--linger`).
    let (last_heard_tx, last_heard) = tokio::sync::watch::channel(tokio::time::Instant::now());
    let printer = tokio::spawn(async move {
        while let Some(incoming) = receiver.recv().await {
            last_heard_tx.send_replace(tokio::time::Instant::now());
            match incoming {
                Incoming::Message(message) => {
                    let text = match message.text() {
                        Some(text) => text.to_owned(),
                        None => String::from_utf8_lossy(&message.data).into_owned(),
                    };
                    emit(serde_json::json!({"event": "message", "from": from, "message": text}));
                }
                Incoming::Error(error) => error_event(error.code.as_str(), &error.message),
                Incoming::Closed(reason) => {
                    emit(serde_json::json!({"event": "closed", "reason": reason.as_str()}));
                    return;
                }
            }
        }
    });

    let mut failed = false;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading standard input")? {
        match link.send_text(line).await {
            Ok(()) => {}
            Err(SendError::LinkClosed) => {
                // Nothing more can go: say so once and stop reading.
                error_event("link_closed", "the link closed before every line was sent");
                failed = true;
                break;
            }
            Err(error) => {
                error_event(error.code(), &error.to_string());
                failed = true;
            }
        }
    }
    let flush_started = tokio::time::Instant::now();
    let flushed = tokio::time::timeout(flush_timeout, link.flush()).await;
    if matches!(flushed, Ok(Ok(()))) {
        // Linger (bounded): until the peer closed, or sent nothing for `--linger`. Any frame
        // counts, a resent one too: a peer resending what we acknowledged lost our ACK, and
        // needs us here to answer its resend.
        let give_up = flush_started + flush_timeout;
        let mut frames_seen = None;
        let mut heard = *last_heard.borrow();
        loop {
            let frames = tokio::time::timeout(STEP_TIMEOUT, link.stats())
                .await
                .ok()
                .flatten()
                .map(|s| s.received_frames);
            let now = tokio::time::Instant::now();
            if frames != frames_seen {
                frames_seen = frames;
                heard = now;
            }
            heard = heard.max(*last_heard.borrow());
            let quiet_until = heard + linger;
            if printer.is_finished() || now >= quiet_until || now >= give_up {
                break;
            }
            tokio::time::sleep_until(quiet_until.min(give_up).min(now + LINGER_POLL)).await;
        }
    }
    let outcome = match flushed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(("link_closed", error.to_string())),
        Err(_) => {
            let stats = tokio::time::timeout(STEP_TIMEOUT, link.stats()).await;
            let left = stats.ok().flatten().map_or(0, |s| s.unacked_messages);
            let message = format!(
                "{left} messages were not acknowledged by `{}` within {} s",
                args.to,
                flush_timeout.as_secs_f64()
            );
            Err(("unacknowledged", message))
        }
    };
    // Every step of the way out is bounded: the final ACK and CLOSE go out, the registry
    // connection closes (`CLOSE_TIMEOUT`), the printers finish.
    let _ = tokio::time::timeout(STEP_TIMEOUT, link.close()).await;
    session.close().await;
    let _ = tokio::time::timeout(STEP_TIMEOUT, printer).await;
    mode_printer.abort();
    session_printer.abort();
    match outcome {
        Err((code, message)) => {
            error_event(code, &message);
            anyhow::bail!("{message}");
        }
        Ok(()) if failed => anyhow::bail!("some messages were refused (see the error events)"),
        Ok(()) => Ok(()),
    }
}
