//! Where a draining server sends new allocations: the ALTERNATE-SERVER of a 300 Try Alternate
//! (RFC 8489 §10, RFC 8656 §7.2), chosen from a list of other servers' transport addresses.
//!
//! ALTERNATE-SERVER carries an IP address and a port, not a transport: the client reaches the
//! alternate over the transport it used for the request (RFC 8489 §10). So an alternate is only
//! good for requests of its own transport (UDP 3478 is not TLS 5349) and of the client's address
//! family (RFC 8489 §14.15: the same family as the request's source). [`Alternates::choose`]
//! applies both rules; the list comes from `fleet.alternate_servers` or from the live nodes of
//! the fleet (`crate::fleet`), as TURN URIs with IP-literal hosts ([`parse_turn_address`]).

use std::net::{IpAddr, SocketAddr};

use super::Transport;

/// Most alternates a list holds (more are ignored): the core scans it on a refused Allocate.
pub const MAX_ALTERNATES: usize = 32;

/// One other server: its transport and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Alternate {
    /// The transport it listens on.
    pub transport: Transport,
    /// Its address (an IP literal and port).
    pub address: SocketAddr,
}

/// The alternates a draining core may send clients to, best first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alternates(Vec<Alternate>);

impl Alternates {
    /// A list (cut to [`MAX_ALTERNATES`]), best first.
    pub fn new(mut list: Vec<Alternate>) -> Alternates {
        list.truncate(MAX_ALTERNATES);
        Alternates(list)
    }

    /// The alternates, best first.
    pub fn as_slice(&self) -> &[Alternate] {
        &self.0
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first alternate a client of `transport` at `client` can use: same transport, same
    /// address family, and not `own` (the listener the request reached, so a node never sends
    /// a client back to itself).
    pub fn choose(
        &self,
        transport: Transport,
        client: SocketAddr,
        own: SocketAddr,
    ) -> Option<SocketAddr> {
        let v4 = as_v4_family(client.ip());
        self.0
            .iter()
            .find(|a| {
                a.transport == transport && as_v4_family(a.address.ip()) == v4 && a.address != own
            })
            .map(|a| a.address)
    }
}

/// True for IPv4 and IPv4-mapped IPv6 addresses (a dual-stack listener sees IPv4 clients as
/// mapped ones).
fn as_v4_family(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    }
}

/// Why a TURN URI cannot name an alternate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlternateUriError {
    /// Not `turn:` or `turns:` with an optional `?transport=udp|tcp`.
    #[error("not a turn: or turns: URI")]
    Scheme,
    /// The host is a name: ALTERNATE-SERVER carries an IP address.
    #[error("the host must be an IP address (ALTERNATE-SERVER carries no name)")]
    NotAnIp,
    /// The port is missing a number, or 0.
    #[error("bad port")]
    Port,
    /// `turns:...?transport=udp` (DTLS) is not served.
    #[error("turns: over UDP (DTLS) is not supported")]
    Dtls,
}

/// Parses `turn:IP[:PORT][?transport=udp|tcp]` or `turns:IP[:PORT][?transport=tcp]` (RFC 7065;
/// IPv6 in brackets) into an [`Alternate`]. The default ports are 3478 and 5349.
pub fn parse_turn_address(uri: &str) -> Result<Alternate, AlternateUriError> {
    let (scheme, rest) = uri.split_once(':').ok_or(AlternateUriError::Scheme)?;
    let tls = match scheme {
        "turn" => false,
        "turns" => true,
        _ => return Err(AlternateUriError::Scheme),
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let transport = match (tls, query) {
        (false, None | Some("transport=udp")) => Transport::Udp,
        (false, Some("transport=tcp")) => Transport::Tcp,
        (true, None | Some("transport=tcp")) => Transport::Tls,
        (true, Some("transport=udp")) => return Err(AlternateUriError::Dtls),
        _ => return Err(AlternateUriError::Scheme),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or(AlternateUriError::NotAnIp)?;
        match p {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or(AlternateUriError::Port)?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| AlternateUriError::NotAnIp)?;
    if ip.is_ipv6() && !hostport.starts_with('[') {
        return Err(AlternateUriError::NotAnIp);
    }
    let port = match port {
        None if tls => 5349,
        None => 3478,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(AlternateUriError::Port),
            Ok(p) => p,
        },
    };
    Ok(Alternate {
        transport,
        address: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(transport: Transport, address: &str) -> Alternate {
        Alternate {
            transport,
            address: address.parse().unwrap(),
        }
    }

    #[test]
    fn parses_turn_uris_with_ip_hosts() {
        let cases = [
            ("turn:192.0.2.7", alt(Transport::Udp, "192.0.2.7:3478")),
            (
                "turn:192.0.2.7:3479?transport=udp",
                alt(Transport::Udp, "192.0.2.7:3479"),
            ),
            (
                "turn:192.0.2.7:3478?transport=tcp",
                alt(Transport::Tcp, "192.0.2.7:3478"),
            ),
            ("turns:192.0.2.7", alt(Transport::Tls, "192.0.2.7:5349")),
            (
                "turns:[2001:db8::7]:443?transport=tcp",
                alt(Transport::Tls, "[2001:db8::7]:443"),
            ),
            (
                "turn:[2001:db8::7]",
                alt(Transport::Udp, "[2001:db8::7]:3478"),
            ),
        ];
        for (uri, want) in cases {
            assert_eq!(parse_turn_address(uri), Ok(want), "{uri}");
        }
    }

    #[test]
    fn refuses_names_odd_schemes_ports_and_dtls() {
        use AlternateUriError::*;
        let cases = [
            ("stun:192.0.2.7", Scheme),
            ("turn:turn.example.com:3478", NotAnIp),
            ("turn:2001:db8::7", NotAnIp),
            ("turn:192.0.2.7:0", Port),
            ("turn:192.0.2.7:x", Port),
            ("turn:[2001:db8::7]x", Port),
            ("turns:192.0.2.7?transport=udp", Dtls),
            ("turn:192.0.2.7?transport=sctp", Scheme),
            ("192.0.2.7:3478", Scheme),
        ];
        for (uri, want) in cases {
            assert_eq!(parse_turn_address(uri), Err(want), "{uri}");
        }
    }

    #[test]
    fn chooses_the_first_of_the_same_transport_and_family_but_never_itself() {
        let own: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let list = Alternates::new(vec![
            alt(Transport::Udp, "192.0.2.1:3478"),
            alt(Transport::Tcp, "192.0.2.2:3478"),
            alt(Transport::Udp, "[2001:db8::3]:3478"),
            alt(Transport::Udp, "192.0.2.4:3478"),
            alt(Transport::Udp, "192.0.2.5:3478"),
            alt(Transport::Tls, "192.0.2.6:5349"),
        ]);
        let v4: SocketAddr = "198.51.100.9:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:198.51.100.9]:5000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::99]:5000".parse().unwrap();
        let pick = |t, c| list.choose(t, c, own).map(|a| a.to_string());
        assert_eq!(pick(Transport::Udp, v4).as_deref(), Some("192.0.2.4:3478"));
        assert_eq!(
            pick(Transport::Udp, mapped).as_deref(),
            Some("192.0.2.4:3478")
        );
        assert_eq!(
            pick(Transport::Udp, v6).as_deref(),
            Some("[2001:db8::3]:3478")
        );
        assert_eq!(pick(Transport::Tcp, v4).as_deref(), Some("192.0.2.2:3478"));
        assert_eq!(pick(Transport::Tls, v4).as_deref(), Some("192.0.2.6:5349"));
        assert_eq!(pick(Transport::Tcp, v6), None);
        assert_eq!(Alternates::default().choose(Transport::Udp, v4, own), None);
    }

    #[test]
    fn a_list_is_bounded() {
        let many = (0..100)
            .map(|i| alt(Transport::Udp, &format!("192.0.2.{i}:3478")))
            .collect();
        assert_eq!(Alternates::new(many).as_slice().len(), MAX_ALTERNATES);
    }
}
