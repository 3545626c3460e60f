//! The sans-IO protocol core: STUN codec, credentials, peer policy and the TURN server state
//! machine (`server` and its `fuzzing` entry point: feature `server`). Nothing in here
//! imports tokio, opens a socket or reads a clock.

pub mod alternate;
pub mod channel;
pub mod cidr;
pub mod credentials;
pub mod framing;
#[cfg(feature = "server")]
pub mod fuzzing;
pub mod nonce;
pub mod policy;
pub mod ratelimit;
#[cfg(feature = "server")]
pub mod server;
pub mod stun;

/// The transport a client reached us over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain UDP.
    Udp,
    /// TCP (RFC 8656 §3.1, STUN framed by its length).
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// True for stream transports, where ChannelData is padded to a multiple of 4 bytes.
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}
