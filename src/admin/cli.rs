//! `turnpike admin`: the admin API from the command line, with a table (or `--json`, the API's
//! own answer) for each command. Plain HTTP/1.1 to the API (by default the local
//! `http.address` of `--config`), with the key from `--key` or `TURNPIKE_ADMIN_KEY`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::time::format_utc;

/// Longest wait for the API's answer (listing waits up to 3 s for the cores).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read (a page of 1,000 allocations with their permissions fits).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// `turnpike admin` arguments.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// The HTTP API, e.g. http://127.0.0.1:9641. Default: http.address of --config (a
    /// wildcard address is reached on loopback).
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,

    /// An admin key (one of http.admin_keys). Prefer the environment variable.
    #[arg(
        long,
        value_name = "KEY",
        env = "TURNPIKE_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    pub key: Option<String>,

    /// The configuration file whose http.address is used when --url is not given.
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "TURNPIKE_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,

    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin commands.
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// List allocations (user, client, transport, relayed addresses, age, expiry, traffic
    /// each way, permissions, channels), in pages sorted by allocation id.
    Sessions {
        /// Only the allocations of this user (the USER of REST usernames EXPIRY:USER, a static
        /// user, or a whole username).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Page size (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// The next page: the cursor the previous page printed.
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// End allocations: every allocation of a user, or one allocation. The clients get
    /// nothing more relayed (they may allocate again unless the user is revoked).
    Kill {
        /// The user whose allocations end.
        #[arg(
            long,
            value_name = "USER",
            required_unless_present = "id",
            conflicts_with = "id"
        )]
        user: Option<String>,
        /// One allocation, by the id `sessions` shows (its relayed address).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Revoke a user (every credential of it) or one username until a time: its Allocate and
    /// Refresh requests get 403 and its allocations end. Survives restarts.
    Revoke {
        /// The user to revoke.
        #[arg(
            long,
            value_name = "USER",
            required_unless_present = "username",
            conflicts_with = "username"
        )]
        user: Option<String>,
        /// One username (one REST credential, EXPIRY:USER).
        #[arg(long, value_name = "USERNAME")]
        username: Option<String>,
        /// Until when: UNIX seconds, 2026-12-31T23:59:59Z, 2026-12-31, or a duration (30m,
        /// 12h, 7d). Default: no end for a user; a REST username's own expiry.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
    /// Lift a revocation.
    Unrevoke {
        /// The user.
        #[arg(
            long,
            value_name = "USER",
            required_unless_present = "username",
            conflicts_with = "username"
        )]
        user: Option<String>,
        /// The username.
        #[arg(long, value_name = "USERNAME")]
        username: Option<String>,
    },
    /// List the revocations in force.
    Revocations,
    /// List the peers joined to a registry project on this node.
    Peers {
        /// The project.
        #[arg(long, value_name = "PROJECT")]
        project: String,
    },
    /// Disconnect a registry peer (WebSocket close code 4006, `disconnected`: the SDKs report
    /// it and do not reconnect).
    Disconnect {
        /// The project.
        #[arg(long, value_name = "PROJECT")]
        project: String,
        /// The peer id.
        #[arg(long, value_name = "ID")]
        peer: String,
    },
}

/// Runs `turnpike admin`.
pub fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let config = match &args.config {
                Some(path) => {
                    crate::config::Config::load(path).context("cannot load the configuration")?
                }
                None => crate::config::Config::embedded_default(),
            };
            let mut address = config.http.address;
            if address.ip().is_unspecified() {
                address.set_ip(match address {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{address}")
        }
    };
    let Some(key) = args.key.clone().filter(|k| !k.is_empty()) else {
        bail!("no admin key: pass --key or set TURNPIKE_ADMIN_KEY (a key of http.admin_keys)");
    };
    let (method, path, body) = request_for(&args.command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(call(&base, &key, method, &path, body))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print_table(&args.command, &answer);
    Ok(())
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn request_for(command: &AdminCommand) -> anyhow::Result<(Method, String, Option<Value>)> {
    Ok(match command {
        AdminCommand::Sessions { user, limit, after } => {
            let mut q = format!("limit={limit}");
            if let Some(u) = user {
                q += &format!("&user={}", enc(u));
            }
            if let Some(a) = after {
                q += &format!("&after={}", enc(a));
            }
            (Method::GET, format!("/admin/v1/allocations?{q}"), None)
        }
        AdminCommand::Kill { user, id } => {
            let q = match (user, id) {
                (Some(u), _) => format!("user={}", enc(u)),
                (None, Some(i)) => format!("id={}", enc(i)),
                (None, None) => bail!("give --user or --id"),
            };
            (Method::DELETE, format!("/admin/v1/allocations?{q}"), None)
        }
        AdminCommand::Revoke {
            user,
            username,
            until,
        } => {
            let mut body = match (user, username) {
                (Some(u), _) => json!({ "user": u }),
                (None, Some(n)) => json!({ "username": n }),
                (None, None) => bail!("give --user or --username"),
            };
            if let Some(t) = until {
                body["until"] = json!(t);
            }
            (Method::POST, "/admin/v1/revocations".to_owned(), Some(body))
        }
        AdminCommand::Unrevoke { user, username } => {
            let q = match (user, username) {
                (Some(u), _) => format!("user={}", enc(u)),
                (None, Some(n)) => format!("username={}", enc(n)),
                (None, None) => bail!("give --user or --username"),
            };
            (Method::DELETE, format!("/admin/v1/revocations?{q}"), None)
        }
        AdminCommand::Revocations => (Method::GET, "/admin/v1/revocations".to_owned(), None),
        AdminCommand::Peers { project } => (
            Method::GET,
            format!("/admin/v1/registry/peers?project={}", enc(project)),
            None,
        ),
        AdminCommand::Disconnect { project, peer } => (
            Method::DELETE,
            format!(
                "/admin/v1/registry/peers?project={}&peer={}",
                enc(project),
                enc(peer)
            ),
            None,
        ),
    })
}

async fn call(
    base: &str,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let uri: Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("`{base}` is not a URL such as http://127.0.0.1:9641"))?;
    if uri.scheme_str() != Some("http") {
        bail!(
            "`{base}`: only http:// URLs are supported (the admin API is meant for loopback or a private network)"
        );
    }
    let host = uri.host().context("the URL names no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let host_for_connect = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host_for_connect.as_str(), port))
            .await
            .with_context(|| format!("cannot reach the admin API at {base}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(header::HOST, authority)
            .header(header::AUTHORIZATION, format!("Bearer {key}"));
        let body = match body {
            Some(v) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let response = sender
            .send_request(request.body(body)?)
            .await
            .with_context(|| format!("no answer from {base}"))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), MAX_ANSWER_BYTES)
            .await
            .context("reading the answer")?;
        anyhow::Ok((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{base} did not answer within {REQUEST_TIMEOUT:?}"))??;
    let value: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!("{base} answered HTTP {status} without JSON: is it turnpike's HTTP API?")
    })?;
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("");
        bail!("{message} ({code}, HTTP {})", status.as_u16());
    }
    Ok(value)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Prints rows as columns separated by two spaces.
fn print_rows(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<width$}", width = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn until_text(v: &Value) -> String {
    v.as_u64()
        .map(format_utc)
        .unwrap_or_else(|| "no end".to_owned())
}

fn print_table(command: &AdminCommand, answer: &Value) {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    match command {
        AdminCommand::Sessions { user, .. } => {
            let list = answer["allocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                match user {
                    Some(user) => println!("no allocation of user `{user}` on this node"),
                    None => println!("no allocation on this node"),
                }
            } else {
                let mut rows = vec![
                    [
                        "ID",
                        "USER",
                        "CLIENT",
                        "TRANSPORT",
                        "RELAYED",
                        "AGE",
                        "EXPIRES",
                        "TO PEER",
                        "TO CLIENT",
                        "PERMS",
                        "CHANNELS",
                    ]
                    .map(String::from)
                    .to_vec(),
                ];
                for a in &list {
                    let way = |w: &Value| {
                        format!(
                            "{} / {} pkts",
                            human_bytes(u(&w["bytes"])),
                            u(&w["packets"])
                        )
                    };
                    let relays: Vec<String> = a["relays"]
                        .as_array()
                        .map(|r| r.iter().map(s).collect())
                        .unwrap_or_default();
                    let mut transport = s(&a["transport"]);
                    if a["tcp_relay"].as_bool() == Some(true) {
                        transport += "→tcp";
                    }
                    rows.push(vec![
                        s(&a["id"]),
                        s(&a["user"]),
                        s(&a["client"]),
                        transport,
                        relays.join(","),
                        human_secs(u(&a["age_secs"])),
                        format!("in {}", human_secs(u(&a["expires_in_secs"]))),
                        way(&a["to_peer"]),
                        way(&a["to_client"]),
                        a["permissions"].as_array().map_or(0, Vec::len).to_string(),
                        a["channels"].as_array().map_or(0, Vec::len).to_string(),
                    ]);
                }
                print_rows(&rows);
            }
            println!("{} shown of {} matching", list.len(), u(&answer["total"]));
            if let Some(next) = answer["next"].as_str() {
                println!("next page: --after {next}");
            }
            if u(&answer["answered"]) < u(&answer["cores"]) {
                println!(
                    "warning: {} of {} cores answered in time: the list may be incomplete",
                    u(&answer["answered"]),
                    u(&answer["cores"])
                );
            }
        }
        AdminCommand::Kill { .. } => {
            println!("ended {} allocation(s)", u(&answer["ended"]));
        }
        AdminCommand::Revoke { .. } => {
            let r = &answer["revocation"];
            println!(
                "revoked {} `{}` until {}; ended {} allocation(s)",
                s(&r["kind"]),
                s(&r["name"]),
                until_text(&r["until"]),
                u(&answer["ended"])
            );
            if answer["persisted"].as_bool() == Some(false) {
                println!(
                    "warning: the server keeps no revocation file (http.revocations_file, $STATE_DIRECTORY): this revocation ends at its restart"
                );
            }
        }
        AdminCommand::Unrevoke { .. } => {
            let r = &answer["removed"];
            println!(
                "lifted the revocation of {} `{}`",
                s(&r["kind"]),
                s(&r["name"])
            );
        }
        AdminCommand::Revocations => {
            let list = answer["revocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                println!("no revocation in force");
                return;
            }
            let mut rows = vec![["KIND", "NAME", "UNTIL"].map(String::from).to_vec()];
            for r in &list {
                rows.push(vec![s(&r["kind"]), s(&r["name"]), until_text(&r["until"])]);
            }
            print_rows(&rows);
        }
        AdminCommand::Peers { project } => {
            let list = answer["peers"].as_array().cloned().unwrap_or_default();
            let mut rows = vec![
                [
                    "PEER",
                    "IP",
                    "CONNECTED",
                    "ATTESTED",
                    "TOKEN EXPIRES",
                    "PUBLIC KEY",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for p in &list {
                rows.push(vec![
                    s(&p["peer_id"]),
                    s(&p["ip"]),
                    human_secs(u(&p["connected_secs"])),
                    if p["attested"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_owned(),
                    until_text(&p["token_expires_at"]),
                    s(&p["public_key"]),
                ]);
            }
            print_rows(&rows);
            println!("{} peer(s) in project `{project}`", list.len());
        }
        AdminCommand::Disconnect { .. } => {
            println!(
                "disconnected peer `{}` of project `{}` (close code {})",
                s(&answer["peer_id"]),
                s(&answer["project"]),
                u(&answer["close_code"])
            );
        }
    }
}
