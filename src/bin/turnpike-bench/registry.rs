//! `turnpike-bench registry`: the registry against what an app developer would write instead,
//! a room relay on Node's `ws` (benches/node-ws-relay/relay.js, run with the system's `node`).
//!
//! Two measures, the servers interleaved round after round (A B A B ...):
//! - signaling: `peers` peers of one project each send `offers` offers (a 400-byte SDP-like
//!   payload) to the others in turn, flat out; every offer must arrive. Reported: wall time
//!   from the first offer sent to the last one received, server CPU time (user + system, from
//!   /proc), and messages delivered per server CPU-second;
//! - idle: `idle` peers connected and joined (projects of `idle_project`, default 100: each
//!   welcome lists up to 99 peers, each peer hears of up to 99 joins), doing nothing; reported: the
//!   server's RSS growth per connection.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use turnpike::registry::auth::{Claims, mint_hs256};

use crate::proc::{cpu_time, rss_bytes};

const JWT_SECRET: &str = "bench-registry-secret";
/// Handshakes in flight at once while connecting peers.
const CONNECT_WINDOW: usize = 200;

/// A server the registry bench can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistryServer {
    /// `turnpike serve` with the registry on its HTTP listener.
    Turnpike,
    /// benches/node-ws-relay/relay.js on Node's `ws`.
    NodeWs,
}

impl RegistryServer {
    fn name(self) -> &'static str {
        match self {
            RegistryServer::Turnpike => "turnpike",
            RegistryServer::NodeWs => "node-ws",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct RegistrySpec {
    pub servers: Vec<RegistryServer>,
    pub peers: usize,
    pub offers: usize,
    pub idle: usize,
    /// Peers per project in the idle measure (a welcome lists the project's peers).
    pub idle_project: usize,
    pub rounds: usize,
    /// Seconds one measure may take at most.
    pub limit: u64,
}

/// One started server.
struct Running {
    kind: RegistryServer,
    child: Child,
    port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The WebSocket request for `peer` of `project`.
    fn request(
        &self,
        peer: &str,
        project: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        match self.kind {
            RegistryServer::Turnpike => {
                let mut request = format!("ws://127.0.0.1:{}/v1/registry", self.port)
                    .into_client_request()
                    .expect("a valid URL");
                let token = mint_hs256(
                    JWT_SECRET.as_bytes(),
                    &Claims {
                        sub: Some(peer.into()),
                        project: Some(project.into()),
                        exp: Some(
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_secs())
                                + 3600,
                        ),
                        nbf: None,
                        pk: None,
                    },
                );
                request.headers_mut().insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {token}")).expect("a header"),
                );
                request
            }
            RegistryServer::NodeWs => format!(
                "ws://127.0.0.1:{}/?peer={peer}&project={project}",
                self.port
            )
            .into_client_request()
            .expect("a valid URL"),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The directory of the Node relay (with its `node_modules`, from `npm ci`).
fn relay_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/node-ws-relay")
}

fn start(kind: RegistryServer) -> anyhow::Result<Running> {
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!(
        "turnpike-bench-registry-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = match kind {
        RegistryServer::Turnpike => {
            let config = dir.join("turnpike.toml");
            // Limits out of the way: the bench measures the relay, not its refusals.
            std::fs::write(
                &config,
                format!(
                    "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:{udp}\"\n\
                     [auth]\nsecrets = [\"bench\"]\n[log]\nlevel = \"warn\"\n\
                     [http]\naddress = \"127.0.0.1:{port}\"\n\
                     [registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n\
                     ice_servers = false\nmax_connections = 100000\n\
                     max_connections_per_ip = 100000\nmax_peers_per_project = 10000\n\
                     messages_per_sec = 1000000\nproject_messages_per_sec = 0\n\
                     signal_queue_messages = 1000000\nsignal_queue_bytes = 1000000000\n\
                     peer_budget_bytes = 1000000000\nbudget_bytes = 4000000000\n\
                     token_warning_secs = 0\n",
                    udp = free_port()?,
                ),
            )?;
            let program = std::env::current_exe()?.with_file_name("turnpike");
            if !program.exists() {
                bail!(
                    "{} not found: build it with cargo build --release",
                    program.display()
                );
            }
            Command::new(program)
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?
        }
        RegistryServer::NodeWs => {
            let relay = relay_dir();
            if !relay.join("node_modules/ws").exists() {
                bail!(
                    "{} has no node_modules/ws: run `npm ci` there",
                    relay.display()
                );
            }
            Command::new("node")
                .arg(relay.join("relay.js"))
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting node (Debian's nodejs)")?
        }
    };
    let running = Running {
        kind,
        child,
        port,
        _dir: tempdir::Dir(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{} did not listen on {port} within 10 s", kind.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(running)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and joins `peer` of `project`; returns the socket once the welcome came.
async fn join(server: &Running, peer: &str, project: &str) -> anyhow::Result<Socket> {
    // TCP_NODELAY, as browsers and the servers themselves set it.
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(server.request(peer, project), None, true)
            .await
            .with_context(|| format!("connecting {peer}"))?;
    // Any 32-byte key: the relay never reads it.
    let join = r#"{"type":"join","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
    socket.send(Message::text(join)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"welcome\"") => {
                return Ok(socket);
            }
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"error\"") => {
                bail!("{peer}: {}", text.as_str())
            }
            Some(Ok(_)) => {}
            other => bail!("{peer}: the connection ended before the welcome: {other:?}"),
        }
    }
}

/// Joins `count` peers (`peer{i}` of `project(i)`), at most [`CONNECT_WINDOW`] at once.
async fn join_all(
    server: &Running,
    count: usize,
    project: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<Socket>> {
    let names: Vec<(String, String)> = (0..count)
        .map(|i| (format!("peer{i}"), project(i)))
        .collect();
    futures_util::stream::iter(names.iter())
        .map(|(peer, project)| join(server, peer, project))
        .buffered(CONNECT_WINDOW)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The figures of one signaling run.
struct SignalRun {
    wall: Duration,
    cpu: Duration,
    delivered: usize,
}

async fn signaling(server: &Running, spec: &RegistrySpec) -> anyhow::Result<SignalRun> {
    let n = spec.peers;
    if n < 2 {
        bail!("--peers must be at least 2");
    }
    let sockets = join_all(server, n, |_| "bench".to_owned()).await?;
    let sdp = "a".repeat(384);
    let cpu_before = cpu_time(server.pid()).context("server CPU time")?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, socket) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = socket.split();
        let offers = spec.offers;
        let texts: Vec<String> = (0..offers)
            .map(|k| {
                let to = (i + 1 + k % (n - 1)) % n;
                format!(
                    r#"{{"type":"webrtc_offer","to_peer_id":"peer{to}","payload":{{"type":"offer","sdp":"{sdp}"}}}}"#
                )
            })
            .collect();
        let writer = tokio::spawn(async move {
            for text in texts {
                sink.feed(Message::text(text)).await?;
            }
            sink.flush().await?;
            anyhow::Ok(sink)
        });
        // Each peer receives exactly `offers` offers: peer j gets one from every sender whose
        // turn k has (i + 1 + k mod (n-1)) mod n = j.
        let reader = tokio::spawn(async move {
            let mut received = 0;
            while received < offers {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        if text.starts_with(r#"{"type":"webrtc_offer""#) {
                            received += 1;
                        } else if text.contains("\"error\"") {
                            bail!("an error: {text}");
                        }
                    }
                    Some(Ok(_)) => {}
                    other => bail!("the connection ended: {other:?}"),
                }
            }
            anyhow::Ok((received, Instant::now(), stream))
        });
        tasks.push((writer, reader));
    }
    let limit = Duration::from_secs(spec.limit);
    let mut delivered = 0;
    let mut last = started;
    let mut keep = Vec::new();
    for (writer, reader) in tasks {
        let sink = tokio::time::timeout(limit, writer)
            .await
            .context("the senders took too long")???;
        let (received, at, stream) = tokio::time::timeout(limit, reader)
            .await
            .context("the offers did not all arrive in time")???;
        delivered += received;
        last = last.max(at);
        keep.push((sink, stream));
    }
    let wall = last - started;
    let cpu = cpu_time(server.pid()).context("server CPU time")? - cpu_before;
    drop(keep);
    Ok(SignalRun {
        wall,
        cpu,
        delivered,
    })
}

/// RSS growth per idle joined connection, in bytes.
async fn idle(server: &Running, spec: &RegistrySpec) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes(server.pid()).context("server RSS")?;
    let sockets = join_all(server, spec.idle, |i| {
        format!("idle{}", i / spec.idle_project.max(1))
    })
    .await?;
    // Keep answering pings while the server settles.
    let mut readers = Vec::with_capacity(sockets.len());
    for socket in sockets {
        readers.push(tokio::spawn(async move {
            let mut socket = socket;
            while let Some(Ok(_)) = socket.next().await {}
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(server.pid()).context("server RSS")?;
    let held = spec.idle;
    for reader in &readers {
        if reader.is_finished() {
            bail!("an idle connection ended before the measure");
        }
    }
    for reader in readers {
        reader.abort();
    }
    Ok(after.saturating_sub(before) as f64 / held as f64)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Per server, per round: wall seconds, server CPU seconds, offers per CPU-second, RSS bytes
/// per idle connection.
type Samples = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Runs the bench; prints one line per run and a summary with ratios to the first server.
pub fn run(spec: &RegistrySpec) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results: Vec<Samples> = vec![Default::default(); spec.servers.len()];
    for round in 1..=spec.rounds {
        for (index, &kind) in spec.servers.iter().enumerate() {
            let server = start(kind)?;
            let signal = runtime.block_on(signaling(&server, spec))?;
            let expected = spec.peers * spec.offers;
            if signal.delivered != expected {
                bail!(
                    "{}: {} of {expected} offers delivered",
                    kind.name(),
                    signal.delivered
                );
            }
            let per_cpu = signal.delivered as f64 / signal.cpu.as_secs_f64().max(1e-3);
            drop(server);
            let per_idle = if spec.idle > 0 {
                let server = start(kind)?;
                runtime.block_on(idle(&server, spec))?
            } else {
                0.0
            };
            println!(
                "round {round} {:<9} signaling: {} offers, wall {:.2} s, server CPU {:.2} s, \
                 {:.0} msg per CPU-s; idle: {} peers, {:.0} B RSS per connection",
                kind.name(),
                signal.delivered,
                signal.wall.as_secs_f64(),
                signal.cpu.as_secs_f64(),
                per_cpu,
                spec.idle,
                per_idle
            );
            let r = &mut results[index];
            r.0.push(signal.wall.as_secs_f64());
            r.1.push(signal.cpu.as_secs_f64());
            r.2.push(per_cpu);
            r.3.push(per_idle);
        }
    }
    let (first_wall, first_rate) = {
        let r = &mut results[0];
        (median(&mut r.0.clone()), median(&mut r.2.clone()))
    };
    println!("median over {} rounds:", spec.rounds);
    for (index, kind) in spec.servers.iter().enumerate() {
        let r = &mut results[index];
        let (wall, cpu, rate, idle) = (
            median(&mut r.0),
            median(&mut r.1),
            median(&mut r.2),
            median(&mut r.3),
        );
        println!(
            "  {:<9} wall {wall:.2} s, server CPU {cpu:.2} s, {rate:.0} msg per CPU-s, \
             {:.1} KiB per idle connection; {} against it: {:.2}x per CPU-s, {:.2}x in wall time",
            kind.name(),
            idle / 1024.0,
            spec.servers[0].name(),
            first_rate / rate,
            wall / first_wall,
        );
    }
    println!("registry bench: ok");
    Ok(())
}
