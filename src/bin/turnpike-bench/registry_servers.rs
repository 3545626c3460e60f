//! The servers `turnpike-bench registry` starts: one turnpike, a cluster of turnpike nodes
//! sharing a `redis-server` of their own, or the Node `ws` relay.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use turnpike::registry::auth::{Claims, mint_hs256};

const JWT_SECRET: &str = "bench-registry-secret";

/// A server the registry bench can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistryServer {
    /// `turnpike serve` with the registry on its HTTP listener.
    Turnpike,
    /// `--nodes` turnpike nodes sharing a `redis-server` (`[cluster] redis_url`); peers join
    /// the nodes in turn, so most messages cross nodes.
    TurnpikeCluster,
    /// benches/node-ws-relay/relay.js on Node's `ws`.
    NodeWs,
}

impl RegistryServer {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            RegistryServer::Turnpike => "turnpike",
            RegistryServer::TurnpikeCluster => "turnpike-cluster",
            RegistryServer::NodeWs => "node-ws",
        }
    }
}

/// A scratch directory removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A started process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One node peers connect to.
struct Node {
    proc: Proc,
    port: u16,
}

/// The started server(s): the nodes, and the cluster's `redis-server`.
pub struct Deployment {
    kind: RegistryServer,
    // Dropped in this order: the nodes before Redis, the directory last.
    nodes: Vec<Node>,
    redis: Option<Proc>,
    _dir: Dir,
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

fn wait_listening(what: &str, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until `GET /readyz?require=cluster` answers 200 on `port` (the node is linked to
/// Redis).
fn wait_cluster_ready(port: u16) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = (|| -> std::io::Result<bool> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(
                b"GET /readyz?require=cluster HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
            )?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer.starts_with("HTTP/1.1 200"))
        })()
        .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node on {port} did not link to Redis within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_turnpike(dir: &std::path::Path, index: usize, redis: Option<u16>) -> anyhow::Result<Node> {
    let port = free_port()?;
    let config = dir.join(format!("turnpike-{index}.toml"));
    let cluster = match redis {
        // Its forwarding queue out of the way too, like the registry's queues.
        Some(redis) => format!(
            "[cluster]\nredis_url = \"redis://127.0.0.1:{redis}\"\nnode_id = \"bench-{index}\"\n\
             forward_queue_bytes = 1000000000\n"
        ),
        None => String::new(),
    };
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
             token_warning_secs = 0\n{cluster}",
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
    let log = std::fs::File::create(dir.join(format!("turnpike-{index}.log")))?;
    let proc = Proc(
        Command::new(program)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    wait_listening("turnpike", port)?;
    Ok(Node { proc, port })
}

/// Starts `redis-server` (Debian's) on a free loopback port, with no persistence, in `dir`.
fn start_redis(dir: &std::path::Path) -> anyhow::Result<(Proc, u16)> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let proc = Proc(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting redis-server (Debian's redis-server package)")?,
    );
    wait_listening("redis-server", port)?;
    Ok((proc, port))
}

impl Deployment {
    /// Starts `kind` (`nodes` turnpike nodes for the cluster).
    pub fn start(kind: RegistryServer, nodes: usize) -> anyhow::Result<Deployment> {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "turnpike-bench-registry-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let dir = Dir(dir);
        match kind {
            RegistryServer::Turnpike => Ok(Deployment {
                kind,
                nodes: vec![start_turnpike(&dir.0, 0, None)?],
                redis: None,
                _dir: dir,
            }),
            RegistryServer::TurnpikeCluster => {
                if nodes < 2 {
                    bail!("--nodes must be at least 2");
                }
                let (redis, redis_port) = start_redis(&dir.0)?;
                let nodes = (0..nodes)
                    .map(|index| start_turnpike(&dir.0, index, Some(redis_port)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                for node in &nodes {
                    wait_cluster_ready(node.port)?;
                }
                Ok(Deployment {
                    kind,
                    nodes,
                    redis: Some(redis),
                    _dir: dir,
                })
            }
            RegistryServer::NodeWs => {
                let relay = relay_dir();
                if !relay.join("node_modules/ws").exists() {
                    bail!(
                        "{} has no node_modules/ws: run `npm ci` there",
                        relay.display()
                    );
                }
                let port = free_port()?;
                let log = std::fs::File::create(dir.0.join("node.log"))?;
                let proc = Proc(
                    Command::new("node")
                        .arg(relay.join("relay.js"))
                        .arg(port.to_string())
                        .stdin(Stdio::null())
                        .stdout(log.try_clone()?)
                        .stderr(log)
                        .spawn()
                        .context("starting node (Debian's nodejs)")?,
                );
                wait_listening("node", port)?;
                Ok(Deployment {
                    kind,
                    nodes: vec![Node { proc, port }],
                    redis: None,
                    _dir: dir,
                })
            }
        }
    }

    /// How many nodes peers connect to.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The process id of node `index`.
    pub fn node_pid(&self, index: usize) -> u32 {
        self.nodes[index].proc.0.id()
    }

    /// Every server process whose CPU time counts: the nodes, and Redis.
    pub fn server_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.nodes.iter().map(|n| n.proc.0.id()).collect();
        pids.extend(self.redis.as_ref().map(|r| r.0.id()));
        pids
    }

    /// The WebSocket request for `peer` of `project` on node `node`.
    pub fn request(&self, node: usize, peer: &str, project: &str) -> Request {
        let port = self.nodes[node].port;
        match self.kind {
            RegistryServer::Turnpike | RegistryServer::TurnpikeCluster => {
                let mut request = format!("ws://127.0.0.1:{port}/v1/registry")
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
            RegistryServer::NodeWs => {
                format!("ws://127.0.0.1:{port}/?peer={peer}&project={project}")
                    .into_client_request()
                    .expect("a valid URL")
            }
        }
    }
}
