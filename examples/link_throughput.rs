//! Link throughput between two Rust agents on loopback, for docs/performance.md: a turnpike
//! server (the binary, given with `--turnpike` or found next to this example) with the registry
//! on, two in-process sessions, one link; alice sends `COUNT` binary messages of `SIZE` bytes
//! and bob reads them. Once on the p2p path (WebRTC DataChannel through turnpike's TURN,
//! relay policy) and once forced onto the registry's relay. Prints messages/s, MB/s and the
//! CPU time (getrusage of this process: both agents, not the server) per MB.
//!
//! ```sh
//! cargo build --release --bin turnpike --example link_throughput
//! target/release/examples/link_throughput [COUNT] [SIZE]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike::client::p2p::IceTransportPolicy;
use turnpike::client::webrtc::WebRtcConnector;
use turnpike::client::{
    Incoming, KeyPair, Link, Session, SessionConfig, SessionEvent, TokenSource,
};
use turnpike::link::Mode;

const JWT_SECRET: &str = "link-throughput-secret-0123456789abcdef";

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn token(sub: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64.encode(format!(
        r#"{{"sub":"{sub}","project":"bench","exp":{exp}}}"#
    ));
    let input = format!("{header}.{claims}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64.encode(mac.finalize().into_bytes()))
}

async fn session(url: &str, me: &str) -> Session {
    let mut config = SessionConfig::new(url, TokenSource::Fixed(token(me)), KeyPair::generate());
    config.ice_transport_policy = IceTransportPolicy::Relay;
    config.fallback_after = Duration::from_secs(5);
    config.relay_bytes_per_sec = 1 << 30; // the server's limit below
    config.p2p = Some(Arc::new(WebRtcConnector::new()));
    Session::connect(config).await.expect("connect")
}

async fn measure(what: &str, to_bob: &Link, from_alice: &Link, count: usize, size: usize) {
    let start = Instant::now();
    let cpu = cpu_seconds();
    let sender = to_bob.clone();
    let send = tokio::spawn(async move {
        for i in 0..count {
            let mut m = vec![(i % 251) as u8; size];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            sender.send(m).await.expect("send");
        }
    });
    for i in 0..count {
        let got = tokio::time::timeout(Duration::from_secs(60), from_alice.recv())
            .await
            .expect("in time")
            .expect("open");
        let Incoming::Message(m) = got else {
            panic!("{got:?}")
        };
        assert_eq!(m.data[..8], (i as u64).to_be_bytes());
    }
    send.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let mb = (count * size) as f64 / 1e6;
    println!(
        "{what}: {count} messages of {size} B in {secs:.2} s: {:.0} messages/s, {:.1} MB/s, \
         {:.3} CPU s per MB (both agents), mode {:?}",
        count as f64 / secs,
        mb / secs,
        cpu / mb,
        *to_bob.mode().borrow()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let bin = std::env::var("TURNPIKE_BIN").unwrap_or_else(|_| {
        let me = std::env::current_exe().unwrap();
        me.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("turnpike")
            .display()
            .to_string()
    });
    let dir = std::env::temp_dir().join(format!("link-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("turnpike.toml");
    std::fs::write(
        &conf,
        format!(
            "[[listen]]\naddress = \"127.0.0.1:34780\"\n[auth]\nsecrets = [\"bench-secret\"]\n\
             [relay]\nbind_ip = \"127.0.0.1\"\n[http]\naddress = \"127.0.0.1:34781\"\n\
             [registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n\
             relay_bytes_per_sec = 1073741824\n"
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = "ws://127.0.0.1:34781/v1/registry";
    let alice = session(url, "alice").await;
    let bob = session(url, "bob").await;
    let to_bob = alice.link("bob").await.unwrap();
    to_bob.send_text("hello").await.unwrap();
    let from_alice = loop {
        if let Some(SessionEvent::Link(link)) = bob.next_event().await {
            break link;
        }
    };
    from_alice.recv().await;
    let mut mode = to_bob.mode();
    tokio::time::timeout(Duration::from_secs(20), mode.wait_for(|m| *m == Mode::P2p))
        .await
        .expect("p2p in time")
        .unwrap();
    measure("p2p", &to_bob, &from_alice, count, size).await;
    to_bob.force_relay(true).await;
    from_alice.force_relay(true).await;
    measure("relay", &to_bob, &from_alice, count, size).await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
