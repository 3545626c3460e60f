//! `turnpike probe`: does this TURN server work? Checked from the outside, against any server
//! (ours, coturn, eturnal, ...), the way a WebRTC client uses it:
//!
//! 1. `connect`: TCP connect and TLS handshake (for `?transport=tcp` and `turns:`);
//! 2. `binding`: a STUN Binding request, its XOR-MAPPED-ADDRESS (the server-reflexive
//!    address) and round-trip time;
//! 3. `allocate`: an authenticated Allocate (a UDP relay), its relayed address and lifetime;
//! 4. `allocate 2`: a second allocation on a second connection of the same transport;
//! 5. `permission`: each allocation permits the other's relayed address;
//! 6. `relay`: data sent through the first allocation to the second's relayed address arrives
//!    on the second connection, and the answer sent back arrives on the first: the relayed
//!    round trip, timed (the median of [`ROUND_TRIPS`]);
//! 7. `release`: both allocations are ended (Refresh with lifetime 0).
//!
//! The first step that fails ends the probe; the report says which and why (with the STUN
//! error code and what it usually means). Built on the audit's blocking client, so every wait
//! is bounded.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::audit::client::{Answer, Attr, Conn, Session, relayed, tid};
use crate::proto::stun::{Class, Message, Writer, attr, method};

/// Relayed round trips timed (the report gives their median).
pub const ROUND_TRIPS: usize = 3;
/// How long one relayed message may take to arrive.
const RELAY_WAIT: Duration = Duration::from_secs(2);

/// The transport a probe uses to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `turn:...` or `turn:...?transport=udp`.
    Udp,
    /// `turn:...?transport=tcp`.
    Tcp,
    /// `turns:...` (TLS over TCP).
    Tls,
}

/// A parsed `turn:`/`turns:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The host as written (a name or an IP address, without brackets).
    pub host: String,
    /// The port (3478 for `turn:`, 5349 for `turns:` when none is written).
    pub port: u16,
    /// The transport.
    pub transport: Transport,
}

/// Parses `turn:HOST[:PORT][?transport=udp|tcp]` or `turns:HOST[:PORT][?transport=tcp]`.
pub fn parse_url(url: &str) -> anyhow::Result<Url> {
    let usage = "expected turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]";
    let (tls, rest) = if let Some(rest) = url.strip_prefix("turns:") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("turn:") {
        (false, rest)
    } else {
        bail!("`{url}`: {usage}");
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let transport = match (tls, query) {
        (false, "" | "transport=udp") => Transport::Udp,
        (false, "transport=tcp") => Transport::Tcp,
        (true, "" | "transport=tcp") => Transport::Tls,
        _ => bail!("`{url}`: unsupported query `{query}` ({usage})"),
    };
    let default_port = if tls { 5349 } else { 3478 };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .with_context(|| format!("`{url}`: unclosed `[`"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .with_context(|| format!("`{url}`: {usage}"))?,
                ),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        bail!("`{url}`: no host ({usage})");
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .with_context(|| format!("`{url}`: `{p}` is not a port"))?,
    };
    Ok(Url {
        host: host.to_owned(),
        port,
        transport,
    })
}

/// How the probe authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A REST shared secret: the probe mints a credential of ten minutes for user `probe`.
    Secret(String),
    /// A long-term (or already minted REST) username and password.
    User {
        /// The username.
        user: String,
        /// The password.
        password: String,
    },
}

/// One step of the probe.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// `connect`, `binding`, `allocate`, `allocate 2`, `permission`, `relay`, `release`.
    pub step: &'static str,
    /// Whether it succeeded.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub ms: f64,
}

/// The outcome of a probe.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The URL probed.
    pub url: String,
    /// The address it resolved to.
    pub server: String,
    /// The transport used.
    pub transport: Transport,
    /// True when every step succeeded.
    pub ok: bool,
    /// The server-reflexive address (XOR-MAPPED-ADDRESS of the Binding answer).
    pub mapped_address: Option<String>,
    /// The relayed addresses of the first allocation.
    pub relayed_addresses: Vec<String>,
    /// The Binding request's round-trip time, in milliseconds.
    pub binding_rtt_ms: Option<f64>,
    /// The median relayed round-trip time (client -> relay -> relay -> client and back), in
    /// milliseconds.
    pub relay_rtt_ms: Option<f64>,
    /// The step that failed and why, when one did.
    pub failed: Option<String>,
    /// Every step run, in order.
    pub steps: Vec<Step>,
}

impl Report {
    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "turnpike probe of {} ({}, {:?})\n",
            self.url, self.server, self.transport
        );
        out.push_str(&format!(
            "{:<10}  {:<6}  {:>9}  DETAIL\n",
            "STEP", "RESULT", "TIME"
        ));
        for s in &self.steps {
            out.push_str(&format!(
                "{:<10}  {:<6}  {:>7.1}ms  {}\n",
                s.step,
                if s.ok { "ok" } else { "FAILED" },
                s.ms,
                s.detail
            ));
        }
        match &self.failed {
            None => out.push_str(&format!(
                "ok: STUN, allocation and relayed round trip work (relay RTT {:.1} ms)\n",
                self.relay_rtt_ms.unwrap_or_default()
            )),
            Some(why) => out.push_str(&format!("FAILED: {why}\n")),
        }
        out
    }
}

/// TLS trust for `turns:`: the system's certificate authorities plus `ca_file` (PEM).
pub fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(certs) = CertificateDer::pem_file_iter(path) {
            let (added, _) = roots.add_parsable_certificates(certs.flatten());
            if added > 0 {
                break;
            }
        }
    }
    if let Some(path) = ca_file {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read --ca {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("--ca {}: not PEM certificates", path.display()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            bail!("--ca {}: no certificate in it", path.display());
        }
    }
    Ok(crate::client::turn::tls_client_config(roots))
}

/// Runs the probe. Fails only on a URL that cannot be resolved or TLS trust that cannot be
/// set up; a server that does not work gives a report with `ok: false`.
pub fn run(
    url: &str,
    credentials: &Credentials,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Report> {
    let parsed = parse_url(url)?;
    let server = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{}`", parsed.host))?
        .next()
        .with_context(|| format!("`{}` has no address", parsed.host))?;
    let tls = match (parsed.transport, tls) {
        (Transport::Tls, Some(config)) => Some(config),
        (Transport::Tls, None) => Some(tls_config(None)?),
        _ => None,
    };
    let (user, password) = match credentials {
        Credentials::Secret(secret) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let c = crate::proto::credentials::mint(secret.as_bytes(), "probe", now, 600);
            (c.username, c.password)
        }
        Credentials::User { user, password } => (user.clone(), password.clone()),
    };
    let mut probe = Probe {
        url: &parsed,
        server,
        tls,
        report: Report {
            url: url.to_owned(),
            server: server.to_string(),
            transport: parsed.transport,
            ok: false,
            mapped_address: None,
            relayed_addresses: Vec::new(),
            binding_rtt_ms: None,
            relay_rtt_ms: None,
            failed: None,
            steps: Vec::new(),
        },
    };
    let outcome = probe.steps(&user, &password);
    let mut report = probe.report;
    match outcome {
        Ok(()) => report.ok = true,
        Err(Failed(step, why)) => {
            report.steps.push(Step {
                step,
                ok: false,
                detail: why.clone(),
                ms: 0.0,
            });
            report.failed = Some(format!("{step}: {why}"));
        }
    }
    Ok(report)
}

/// A failed step and why.
struct Failed(&'static str, String);

struct Probe<'a> {
    url: &'a Url,
    server: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    report: Report,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

impl Probe<'_> {
    fn ok(&mut self, step: &'static str, started: Instant, detail: String) {
        self.report.steps.push(Step {
            step,
            ok: true,
            detail,
            ms: ms(started),
        });
    }

    fn connect(&self) -> Result<Conn, String> {
        let result = match self.url.transport {
            Transport::Udp => Conn::udp(self.server),
            Transport::Tcp => Conn::tcp(self.server),
            Transport::Tls => {
                let name = match self.url.host.parse::<IpAddr>() {
                    Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                    Err(_) => rustls::pki_types::ServerName::try_from(self.url.host.clone())
                        .map_err(|e| format!("`{}`: {e}", self.url.host))?,
                };
                let config = self.tls.clone().expect("TLS config set for turns:");
                Conn::tls(self.server, name, config)
            }
        };
        result.map_err(|e| format!("cannot connect to {}: {e}", self.server))
    }

    fn steps(&mut self, user: &str, password: &str) -> Result<(), Failed> {
        let started = Instant::now();
        let conn = self.connect().map_err(|e| Failed("connect", e))?;
        if self.url.transport != Transport::Udp {
            let what = match self.url.transport {
                Transport::Tls => "TCP connected, TLS handshake done, certificate trusted",
                _ => "TCP connected",
            };
            self.ok("connect", started, what.into());
        }
        let mut a = Session::new(conn, user.to_owned(), password.to_owned());

        let started = Instant::now();
        let t = tid();
        let mut request = Vec::new();
        Writer::new(&mut request, Class::Request, method::BINDING, t).fingerprint();
        let answer = a.conn.exchange(&request, t).ok_or_else(|| {
            Failed(
                "binding",
                "no answer to a STUN Binding request (server down, port closed or filtered?)"
                    .into(),
            )
        })?;
        if answer.code != 0 {
            return Err(Failed("binding", describe(&answer)));
        }
        let mapped = {
            let msg = answer.message();
            msg.get(attr::XOR_MAPPED_ADDRESS)
                .and_then(|v| msg.xor_address(v))
        };
        self.report.binding_rtt_ms = Some(ms(started));
        self.report.mapped_address = mapped.map(|m| m.to_string());
        self.ok(
            "binding",
            started,
            match mapped {
                Some(m) => format!("mapped address {m}"),
                None => "answered without XOR-MAPPED-ADDRESS".into(),
            },
        );

        let relay_a = self.allocate("allocate", &mut a)?;
        self.report.relayed_addresses = relay_a.iter().map(ToString::to_string).collect();
        let second = self
            .connect()
            .map_err(|e| Failed("allocate 2", e))
            .and_then(|conn| {
                let mut b = Session::new(conn, user.to_owned(), password.to_owned());
                let relay_b = self.allocate("allocate 2", &mut b)?;
                Ok((b, relay_b))
            });
        let (mut b, relay_b) = match second {
            Ok(second) => second,
            Err(failed) => {
                let _ = release(&mut a);
                return Err(failed);
            }
        };
        let relayed = self.relay(&mut a, &mut b, relay_a[0], relay_b[0]);
        if relayed.is_err() {
            // Leave nothing behind on the server (quotas count allocations).
            let _ = release(&mut a);
            let _ = release(&mut b);
            return relayed;
        }

        let started = Instant::now();
        let released = [release(&mut a), release(&mut b)];
        if let Some(Err(e)) = released.into_iter().find(Result::is_err) {
            return Err(Failed("release", e));
        }
        self.ok("release", started, "both allocations ended".into());
        Ok(())
    }

    /// Permissions both ways, then the timed round trips between the two allocations.
    fn relay(
        &mut self,
        a: &mut Session,
        b: &mut Session,
        ra: SocketAddr,
        rb: SocketAddr,
    ) -> Result<(), Failed> {
        let started = Instant::now();
        permit(a, rb).map_err(|e| Failed("permission", e))?;
        permit(b, ra).map_err(|e| Failed("permission", e))?;
        self.ok(
            "permission",
            started,
            format!("{ra} may reach {} and {rb} may reach {}", rb.ip(), ra.ip()),
        );

        let started = Instant::now();
        let mut rtts = Vec::with_capacity(ROUND_TRIPS);
        for round in 0..ROUND_TRIPS {
            let t0 = Instant::now();
            let ping = format!("turnpike probe ping {round}");
            a.send_indication(rb, ping.as_bytes());
            expect_data(b, ra, ping.as_bytes()).map_err(|e| {
                Failed("relay", format!("{e} (sent through {ra} to {rb}; a firewall between the relay ports, or a peer policy that denies the server's own relayed addresses?)"))
            })?;
            let pong = format!("turnpike probe pong {round}");
            b.send_indication(ra, pong.as_bytes());
            expect_data(a, rb, pong.as_bytes()).map_err(|e| {
                Failed(
                    "relay",
                    format!("{e} (the answer sent through {rb} to {ra})"),
                )
            })?;
            rtts.push(ms(t0));
        }
        rtts.sort_by(f64::total_cmp);
        let median = rtts[rtts.len() / 2];
        self.report.relay_rtt_ms = Some(median);
        self.ok(
            "relay",
            started,
            format!(
                "{ROUND_TRIPS} round trips {ra} <-> {rb}: median {median:.1} ms, max {:.1} ms",
                rtts[rtts.len() - 1]
            ),
        );

        Ok(())
    }

    /// Allocates a UDP relay; its relayed addresses (at least one).
    fn allocate(
        &mut self,
        step: &'static str,
        session: &mut Session,
    ) -> Result<Vec<SocketAddr>, Failed> {
        let started = Instant::now();
        let answer = session
            .allocate(17, &[])
            .ok_or_else(|| Failed(step, "no answer to Allocate".into()))?;
        if answer.code != 0 {
            return Err(Failed(step, describe(&answer)));
        }
        let relays = relayed(&answer);
        if relays.is_empty() {
            return Err(Failed(step, "success without XOR-RELAYED-ADDRESS".into()));
        }
        let lifetime = answer
            .message()
            .get(attr::LIFETIME)
            .and_then(|v| v.try_into().ok())
            .map(u32::from_be_bytes);
        let list: Vec<String> = relays.iter().map(ToString::to_string).collect();
        self.ok(
            step,
            started,
            format!(
                "relayed address {}{}",
                list.join(", "),
                lifetime.map_or_else(String::new, |l| format!(", lifetime {l} s"))
            ),
        );
        Ok(relays)
    }
}

/// A permission for `peer`'s IP address. The port is sent too: RFC 8656 ignores it, but a
/// server may use it to tell its own live relayed address from another port of its host.
fn permit(session: &mut Session, peer: SocketAddr) -> Result<(), String> {
    let answer = session
        .call(
            method::CREATE_PERMISSION,
            &[Attr::Address(attr::XOR_PEER_ADDRESS, peer)],
        )
        .ok_or("no answer to CreatePermission")?;
    match answer.code {
        0 => Ok(()),
        _ => Err(format!(
            "CreatePermission for {peer}: {}",
            describe(&answer)
        )),
    }
}

/// Waits for a Data indication from `from` carrying `data` (other messages are skipped).
fn expect_data(session: &mut Session, from: SocketAddr, data: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + RELAY_WAIT;
    // Bounded: at most 32 other messages (retransmitted answers, stale data).
    for _ in 0..32 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let Some(bytes) = session.conn.receive(left) else {
            break;
        };
        let Ok(msg) = Message::parse(&bytes) else {
            continue;
        };
        if msg.class() != Class::Indication || msg.method() != method::DATA {
            continue;
        }
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| msg.xor_address(v));
        if peer == Some(from) && msg.get(attr::DATA) == Some(data) {
            return Ok(());
        }
    }
    Err(format!(
        "the relayed data did not arrive within {} s",
        RELAY_WAIT.as_secs()
    ))
}

fn release(session: &mut Session) -> Result<(), String> {
    let answer = session
        .call(
            method::REFRESH,
            &[Attr::Raw(attr::LIFETIME, 0u32.to_be_bytes().to_vec())],
        )
        .ok_or("no answer to Refresh (lifetime 0)")?;
    match answer.code {
        0 => Ok(()),
        _ => Err(format!("Refresh (lifetime 0): {}", describe(&answer))),
    }
}

/// An error answer in words: code, reason phrase and what it usually means.
fn describe(answer: &Answer) -> String {
    let reason = answer
        .message()
        .get(attr::ERROR_CODE)
        .and_then(|v| v.get(4..))
        .map(|r| String::from_utf8_lossy(r).trim().to_owned())
        .unwrap_or_default();
    let meaning = match answer.code {
        300 => "the server is draining and names another (Try Alternate)",
        400 => "the server could not parse the request",
        401 => {
            "the credentials were refused: wrong password or secret, unknown or revoked user, or expired REST credential"
        }
        403 => "forbidden by the server's policy",
        420 => "the server does not know a required attribute",
        437 => "allocation mismatch",
        438 => "stale nonce twice in a row",
        440 => "address family not supported",
        441 => "wrong credentials for this allocation",
        442 => "unsupported transport protocol",
        486 => "allocation quota reached for this user",
        508 => "the server is out of capacity (or draining)",
        _ => "",
    };
    let mut out = answer.code.to_string();
    if !reason.is_empty() {
        out.push_str(&format!(" {reason}"));
    }
    if !meaning.is_empty() {
        out.push_str(&format!(" ({meaning})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = parse_url("turn:example.org").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("example.org", 3478, Transport::Udp)
        );
        let u = parse_url("turn:127.0.0.1:3479?transport=tcp").unwrap();
        assert_eq!((u.port, u.transport), (3479, Transport::Tcp));
        let u = parse_url("turns:turn.example.org").unwrap();
        assert_eq!((u.port, u.transport), (5349, Transport::Tls));
        let u = parse_url("turns:[::1]:443?transport=tcp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("::1", 443, Transport::Tls)
        );
        let u = parse_url("turn:[2001:db8::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 3478));
        for bad in [
            "stun:example.org",
            "turn:",
            "turn:host:0",
            "turn:host:99999",
            "turn:host?transport=sctp",
            "turns:host?transport=udp",
            "turn:[::1",
            "turn:[::1]x",
            "turn:user@host",
            "http://host",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
