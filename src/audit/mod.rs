//! `turnpike audit`: checks any TURN server from the outside, as an attacker would.
//!
//! - **Amplification** (UDP): how many bytes an unauthenticated Binding request and an
//!   unauthenticated Allocate (answered 401) get back per byte sent. More than
//!   [`MAX_AMPLIFICATION`] times is an exposure: a reflector for spoofed-source floods.
//! - **Relaying** to places a TURN server must not reach: loopback, the server's own address
//!   (the IP it was reached on), private ranges, cloud metadata addresses (169.254.169.254,
//!   168.63.129.16, fd00:ec2::254) and each IPv6 spelling of an IPv4 address (mapped, SIIT,
//!   compatible, NAT64, 6to4, Teredo). A CreatePermission that succeeds means the server relays
//!   there (RFC 8656 §9: the permission is what lets data through); for loopback and the own
//!   address, when the server runs on this machine, the audit also opens a listener there and
//!   sends to it through the relay, and reports whether the data arrived. Checked on a UDP
//!   allocation and, when the server offers them, an RFC 6062 TCP allocation.
//!
//! The report is a table or JSON; the command exits non-zero on any exposure.

pub(crate) mod client;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::proto::stun::{Class, Writer, attr, method};
use client::{Answer, Attr, Conn, Session};

/// Bytes out per byte in, for an unauthenticated request, above which the server is a useful
/// reflector.
pub const MAX_AMPLIFICATION: f64 = 3.0;

/// How the audit authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A REST shared secret: the audit mints a one-hour credential for user `audit`.
    Secret(String),
    /// A long-term user and password.
    User {
        /// The username.
        user: String,
        /// The password.
        password: String,
    },
}

/// The server to audit, from a `turn:HOST[:PORT][?transport=udp|tcp]` URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The address reached.
    pub server: SocketAddr,
    /// True for `transport=tcp`.
    pub tcp: bool,
}

/// Parses and resolves a `turn:` URL.
pub fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("turn:")
        .with_context(|| format!("`{url}`: expected turn:HOST[:PORT][?transport=udp|tcp]"))?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let tcp = match query {
        "" | "transport=udp" => false,
        "transport=tcp" => true,
        other => bail!("`{url}`: unsupported query `{other}` (transport=udp or transport=tcp)"),
    };
    let with_port = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{hostport}:3478")
    } else {
        hostport.to_owned()
    };
    let server = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{hostport}`"))?
        .next()
        .with_context(|| format!("`{hostport}` has no address"))?;
    Ok(Target { server, tcp })
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// What was checked: `amplification`, `udp relay`, `tcp relay`, `tcp allocations`.
    pub check: String,
    /// The class of target: `binding`, `401`, `loopback`, `own address`, `private`,
    /// `metadata`, `ipv4-in-ipv6`, ...
    pub category: String,
    /// The request or the peer address tried.
    pub target: String,
    /// What happened, in words.
    pub result: String,
    /// True when this is an exposure.
    pub exposed: bool,
}

/// The audit's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The server audited.
    pub server: String,
    /// How many findings are exposures.
    pub exposures: usize,
    /// Every check, in order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let mut out = format!("turnpike audit of {}\n", self.server);
        let width =
            |f: fn(&Finding) -> &str| self.findings.iter().map(|x| f(x).len()).max().unwrap_or(0);
        let (c, k, t) = (
            width(|f| &f.check),
            width(|f| &f.category),
            width(|f| &f.target),
        );
        for f in &self.findings {
            let mark = if f.exposed { "EXPOSED" } else { "ok" };
            out.push_str(&format!(
                "{:<7}  {:<c$}  {:<k$}  {:<t$}  {}\n",
                mark, f.check, f.category, f.target, f.result
            ));
        }
        out.push_str(&match self.exposures {
            0 => "no exposure found\n".to_owned(),
            n => format!("{n} exposure(s) found\n"),
        });
        out
    }
}

/// Runs every check against `url` and returns the report. Fails when the server cannot be
/// reached or the credentials are refused (then nothing about relaying can be said).
pub fn run(url: &str, credentials: &Credentials) -> anyhow::Result<Report> {
    let target = parse_url(url)?;
    let mut findings = Vec::new();
    if target.tcp {
        findings.push(finding(
            "amplification",
            "udp",
            "-",
            "not checked over TCP".into(),
            false,
        ));
    } else {
        amplification(target.server, &mut findings)?;
    }
    let (user, password) = match credentials {
        Credentials::Secret(secret) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let c = crate::proto::credentials::mint(secret.as_bytes(), "audit", now, 3600);
            (c.username, c.password)
        }
        Credentials::User { user, password } => (user.clone(), password.clone()),
    };
    let conn = if target.tcp {
        Conn::tcp(target.server)
    } else {
        Conn::udp(target.server)
    }
    .with_context(|| format!("cannot reach {}", target.server))?;
    let mut udp = Session::new(conn, user.clone(), password.clone());
    let dual = [Attr::Raw(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])];
    let allocated = match udp.allocate(17, &dual) {
        Some(a) if a.code == 0 => a,
        _ => udp.allocate(17, &[]).context("no answer to Allocate")?,
    };
    match allocated.code {
        0 => {}
        401 => bail!("the server refused the credentials (401)"),
        code => bail!("the server refused a UDP allocation ({code})"),
    }
    let families = client::relayed(&allocated);
    relaying("udp relay", &mut udp, target, &families, &mut findings);
    release(&mut udp);

    // RFC 6062: a TCP allocation needs a TCP control connection to the same address.
    match Conn::tcp(target.server) {
        Err(_) => findings.push(finding(
            "tcp allocations",
            "rfc 6062",
            &target.server.to_string(),
            "not offered (no TCP listener)".into(),
            false,
        )),
        Ok(conn) => {
            let mut tcp = Session::new(conn, user, password);
            match tcp.allocate(6, &[]) {
                Some(a) if a.code == 0 => {
                    findings.push(finding(
                        "tcp allocations",
                        "rfc 6062",
                        &target.server.to_string(),
                        "offered".into(),
                        false,
                    ));
                    let families = client::relayed(&a);
                    relaying("tcp relay", &mut tcp, target, &families, &mut findings);
                    release(&mut tcp);
                }
                Some(a) => findings.push(finding(
                    "tcp allocations",
                    "rfc 6062",
                    &target.server.to_string(),
                    format!("not offered ({})", a.code),
                    false,
                )),
                None => findings.push(finding(
                    "tcp allocations",
                    "rfc 6062",
                    &target.server.to_string(),
                    "no answer".into(),
                    false,
                )),
            }
        }
    }
    let exposures = findings.iter().filter(|f| f.exposed).count();
    Ok(Report {
        server: url.to_owned(),
        exposures,
        findings,
    })
}

fn finding(check: &str, category: &str, target: &str, result: String, exposed: bool) -> Finding {
    Finding {
        check: check.into(),
        category: category.into(),
        target: target.into(),
        result,
        exposed,
    }
}

/// Bytes out per byte in for an unauthenticated Binding and an unauthenticated Allocate.
fn amplification(server: SocketAddr, findings: &mut Vec<Finding>) -> anyhow::Result<()> {
    let mut conn = Conn::udp(server).with_context(|| format!("cannot reach {server}"))?;
    /// A request's name, method and attributes.
    type Probe<'a> = (&'a str, u16, &'a [(u16, [u8; 4])]);
    let requests: [Probe<'_>; 2] = [
        ("binding", method::BINDING, &[]),
        (
            "401",
            method::ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, [17, 0, 0, 0])],
        ),
    ];
    for (name, m, attrs) in requests {
        let t = client::tid();
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, m, t);
        for (ty, v) in attrs {
            w.attr(*ty, v);
        }
        let label = format!("{} bytes", buf.len());
        match conn.exchange(&buf, t) {
            Some(answer) => {
                let ratio = answer.bytes.len() as f64 / buf.len() as f64;
                findings.push(finding(
                    "amplification",
                    name,
                    &label,
                    format!("{} bytes back: {ratio:.1}x", answer.bytes.len()),
                    ratio > MAX_AMPLIFICATION,
                ));
            }
            None => findings.push(finding(
                "amplification",
                name,
                &label,
                "no answer".into(),
                false,
            )),
        }
    }
    Ok(())
}

/// The peer addresses to try, by category, with the server's own address and port.
fn targets(server: SocketAddr) -> Vec<(&'static str, SocketAddr)> {
    let a = |s: &str| -> SocketAddr { s.parse().expect("a literal address") };
    vec![
        ("loopback", a("127.0.0.1:9")),
        ("loopback", a("[::1]:9")),
        ("own address", server),
        ("private", a("10.0.0.1:80")),
        ("private", a("172.16.0.1:80")),
        ("private", a("192.168.0.1:80")),
        ("private", a("100.64.0.1:80")),
        ("private", a("[fc00::1]:80")),
        ("metadata", a("169.254.169.254:80")),
        ("metadata", a("168.63.129.16:80")),
        ("metadata", a("[fd00:ec2::254]:80")),
        ("ipv4-in-ipv6", a("[::ffff:127.0.0.1]:9")),
        ("ipv4-in-ipv6", a("[::ffff:169.254.169.254]:80")),
        ("ipv4-in-ipv6", a("[::ffff:0:127.0.0.1]:9")),
        ("ipv4-in-ipv6", a("[::127.0.0.1]:9")),
        ("ipv4-in-ipv6", a("[64:ff9b::127.0.0.1]:9")),
        ("ipv4-in-ipv6", a("[2002:7f00:1::1]:9")),
        // Teredo: server 8.8.8.8, client 127.0.0.1 (stored complemented).
        ("ipv4-in-ipv6", a("[2001:0:808:808::80ff:fffe]:9")),
    ]
}

/// True when `ip` is an address of this machine (so the audit can listen there).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || crate::net::addr::interface_addresses().contains(&ip)
}

/// Tries a permission for every target on the session's allocation; for loopback and the own
/// address on this machine, also sends through the relay to a listener of ours.
fn relaying(
    check: &str,
    session: &mut Session,
    target: Target,
    relays: &[SocketAddr],
    findings: &mut Vec<Finding>,
) {
    for (category, mut peer) in targets(target.server) {
        // Loopback and the own address get a real listener when they are on this machine.
        let listener = (matches!(category, "loopback" | "own address") && is_local(peer.ip()))
            .then(|| UdpSocket::bind(SocketAddr::new(peer.ip(), 0)).ok())
            .flatten();
        if let Some(port) = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
        {
            peer.set_port(port);
        }
        let family_served = relays.iter().any(|r| r.is_ipv4() == peer.is_ipv4())
            || (peer.is_ipv6() && relays.iter().any(|r| r.is_ipv6()));
        let answer = session.call(
            method::CREATE_PERMISSION,
            &[Attr::Address(attr::XOR_PEER_ADDRESS, peer)],
        );
        let (result, exposed) = match answer.as_ref().map(|a: &Answer| a.code) {
            None => ("no answer".to_owned(), false),
            Some(0) => {
                let mut text = "relays (permission granted)".to_owned();
                if let Some(l) = &listener {
                    text.push_str(if delivered(session, l, peer) {
                        "; data delivered to our listener"
                    } else {
                        "; data not seen at our listener"
                    });
                }
                (text, true)
            }
            Some(443) if !family_served => ("n/a: no relay of that family (443)".into(), false),
            Some(code) => (format!("refused ({code})"), false),
        };
        findings.push(finding(check, category, &peer.to_string(), result, exposed));
    }
}

/// Sends a marker to `peer` through the relay and waits up to a second for `listener` to get it.
fn delivered(session: &mut Session, listener: &UdpSocket, peer: SocketAddr) -> bool {
    const MARK: &[u8] = b"turnpike-audit";
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        session.send_indication(peer, MARK);
        let wait = Duration::from_millis(300);
        if listener.set_read_timeout(Some(wait)).is_err() {
            return false;
        }
        if let Ok((n, _)) = listener.recv_from(&mut buf) {
            if &buf[..n] == MARK {
                return true;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    false
}

/// Ends the session's allocation (Refresh with LIFETIME 0), so the audit leaves nothing behind.
fn release(session: &mut Session) {
    let _ = session.call(method::REFRESH, &[Attr::Raw(attr::LIFETIME, vec![0; 4])]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = parse_url("turn:127.0.0.1:3479?transport=udp").unwrap();
        assert_eq!(t.server, "127.0.0.1:3479".parse().unwrap());
        assert!(!t.tcp);
        let t = parse_url("turn:[::1]?transport=tcp").unwrap();
        assert_eq!(t.server, "[::1]:3478".parse().unwrap());
        assert!(t.tcp);
        assert_eq!(
            parse_url("turn:127.0.0.1").unwrap().server,
            "127.0.0.1:3478".parse().unwrap()
        );
        assert!(parse_url("stun:127.0.0.1").is_err());
        assert!(parse_url("turn:127.0.0.1?transport=sctp").is_err());
    }

    #[test]
    fn every_target_the_policy_knows_is_denied_by_default() {
        let policy = crate::proto::policy::PeerPolicy::default();
        for (category, peer) in targets("198.51.100.1:3478".parse().unwrap()) {
            if category != "own address" {
                assert!(!policy.permits(peer.ip()), "{peer}");
            }
        }
    }
}
