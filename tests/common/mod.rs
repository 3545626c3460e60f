//! The integration-test harness: runs the real `turnpike` binary on loopback and drives it with
//! real clients (coturn's `turnutils_*` tools, and Rust STUN/TURN codecs that are not ours).
//!
//! Every test gets its own server with its own config file, listener port and relay port range,
//! so tests run in parallel (threads of one test binary, or processes under cargo-nextest)
//! without colliding, and never touch the default port 3478. Every process this harness starts
//! is killed when its handle is dropped, and every wait is bounded in count and time.
//!
//! When a test fails, the server's log (stdout and stderr) is printed from `Drop`, so the
//! failure report shows what the server said.
//!
//! The modules: [`ports`] (port blocks), [`conf`] (what a test wants, as a config file),
//! [`server`] (the process under test), [`tools`] and [`uclient`] (coturn's tools), [`stun`],
//! [`turn_tcp`] and [`stream_clients`] (clients), [`scrape`] (`/metrics`), [`http`], [`pki`],
//! [`netns`] (network namespaces, NAT routers and firewall rules; root only), [`browser`]
//! (Chromium through playwright-core).
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod browser;
mod conf;
pub mod coturn;
pub mod http;
pub mod netns;
pub mod pki;
mod ports;
pub mod scrape;
mod server;
pub mod stream_clients;
pub mod stun;
mod tools;
pub mod turn;
pub mod turn_tcp;
mod uclient;

// What the test binaries use most, at `common::`. A binary that uses part of it would warn
// about the rest, as with `dead_code` above.
#[allow(unused_imports)]
pub use conf::Conf;
#[allow(unused_imports)]
pub use ports::{PortBlock, free_udp_port};
#[allow(unused_imports)]
pub use server::{Server, binding_request, is_binding_success};
#[allow(unused_imports)]
pub use tools::{KillOnDrop, Peer, ToolRun, run_tool, tool};
#[allow(unused_imports)]
pub use uclient::{Uclient, UclientSummary, parse_uclient_summary};

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The realm every test server uses.
pub const REALM: &str = "harness.test";
/// The REST secrets every test server accepts (a rotation list: both validate).
pub const SECRET_ONE: &str = "secret-one";
pub const SECRET_TWO: &str = "secret-two";
/// A static long-term user every test server knows.
pub const STATIC_USER: &str = "alice";
pub const STATIC_PASSWORD: &str = "alicepass";

/// The path of the binary under test. `TURNPIKE_BIN` overrides it (to test a release build, or
/// any other binary that takes `serve --config FILE`).
pub fn turnpike_bin() -> PathBuf {
    match std::env::var_os("TURNPIKE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_turnpike")),
    }
}

/// The current UNIX time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
