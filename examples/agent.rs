//! A Rust agent that serves browsers over the link: it joins the registry as one peer, accepts
//! every link a page opens to it, and echoes each message back with the path it travelled
//! (`[p2p] hello` or `[relay] hello`), so the page shows both the answer and the mode. Mode
//! changes are printed on the agent's terminal.
//!
//! ```sh
//! export TURNPIKE_TOKEN=$(turnpike token --config demo.toml --sub agent --project demo)
//! cargo run --release --example agent -- ws://127.0.0.1:9641/v1/registry
//! ```
//!
//! Then open the demo page (`[http] demo = true`), connect as any name and click `agent`.
//! `TURNPIKE_ICE_POLICY=relay` keeps the direct path on TURN relay candidates.

use std::sync::Arc;

use turnpike::client::p2p::IceTransportPolicy;
use turnpike::client::webrtc::WebRtcConnector;
use turnpike::client::{
    Incoming, KeyPair, Link, Session, SessionConfig, SessionEvent, TokenSource,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9641/v1/registry".into());
    let token = std::env::var("TURNPIKE_TOKEN")
        .map_err(|_| "set TURNPIKE_TOKEN (turnpike token --sub agent --project demo)")?;
    let mut config = SessionConfig::new(url, TokenSource::Fixed(token), KeyPair::generate());
    if std::env::var("TURNPIKE_ICE_POLICY").as_deref() == Ok("relay") {
        config.ice_transport_policy = IceTransportPolicy::Relay;
    }
    // The direct path: WebRTC (str0m) with the ICE servers of the registry's welcome.
    config.p2p = Some(Arc::new(WebRtcConnector::new()));
    let session = Session::connect(config).await?;
    println!("agent `{}` is serving; links echo back", session.peer_id());
    while let Some(event) = session.next_event().await {
        match event {
            SessionEvent::Link(link) => {
                println!("{}: link opened", link.peer());
                tokio::spawn(watch_mode(link.clone()));
                tokio::spawn(echo(link));
            }
            SessionEvent::Error { code, message } => eprintln!("session error {code}: {message}"),
            SessionEvent::Closed(reason) => {
                println!("session closed: {reason}");
                break;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Prints each mode change of `link`.
async fn watch_mode(link: Link) {
    let mut mode = link.mode();
    loop {
        println!(
            "{}: mode {}",
            link.peer(),
            mode.borrow_and_update().as_str()
        );
        if mode.changed().await.is_err() {
            return;
        }
    }
}

/// Echoes every message, prefixed with the mode it is sent back on.
async fn echo(link: Link) {
    while let Some(incoming) = link.recv().await {
        match incoming {
            Incoming::Message(message) => {
                let mode = link.mode().borrow().as_str();
                let sent = match message.text() {
                    Some(text) => link.send_text(format!("[{mode}] {text}")).await,
                    None => link.send(message.data).await, // bytes (files) go back as they came
                };
                if let Err(error) = sent {
                    eprintln!("{}: not echoed: {error}", link.peer());
                }
            }
            Incoming::Error(error) => eprintln!("{}: {error}", link.peer()),
            Incoming::Closed(reason) => {
                println!("{}: link closed ({})", link.peer(), reason.as_str());
                return;
            }
        }
    }
}
