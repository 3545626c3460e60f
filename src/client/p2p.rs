//! The seam where a WebRTC implementation plugs into a link session: the session creates one
//! [`P2pPath`] per link through a [`P2pConnector`], hands it the link's signaling payloads
//! (docs/link-protocol.md §6) and frames to send, and reads back what it reports through its
//! [`P2pSink`]: DataChannel open/closed, ICE states, received frames, `bufferedAmount`, and
//! signaling payloads to send. Without a connector a link has no p2p path and falls back to
//! the relay after `fallback_after`.

use tokio::sync::mpsc;

use crate::link::{IceState, P2pEvent};
use crate::proto::credentials::IceServer;
use crate::registry::messages::SignalKind;

/// Which ICE candidates a peer connection may use (`iceTransportPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IceTransportPolicy {
    /// Every candidate (host, server-reflexive, relay).
    #[default]
    All,
    /// TURN relay candidates only.
    Relay,
}

/// What a connector needs to build the peer connection of one link end.
#[derive(Clone, Debug)]
pub struct P2pParams {
    /// This peer's id.
    pub local_peer_id: String,
    /// The other peer's id.
    pub remote_peer_id: String,
    /// This link end's epoch (the `epoch` of every signaling payload it sends).
    pub local_epoch: u32,
    /// This end opened the link: it creates the offer (and restarts ICE in relay).
    pub offerer: bool,
    /// Perfect negotiation: this end's peer id is the lower one (byte-wise), so it rolls back
    /// its own offer on glare.
    pub polite: bool,
    /// ICE servers: the application's, else the registry's `welcome.ice_servers`.
    pub ice_servers: Vec<IceServer>,
    /// `iceTransportPolicy`.
    pub ice_transport_policy: IceTransportPolicy,
}

/// What a p2p path reports to its link.
#[derive(Clone, Debug, PartialEq)]
pub enum P2pOutput {
    /// DataChannel open or closed, ICE state, `bufferedAmount`.
    Event(P2pEvent),
    /// A DataChannel message: one link frame.
    Frame(Vec<u8>),
    /// A signaling payload to send to the peer: the body of §6 without `link` and `epoch`
    /// (the session adds them), e.g. `{"description":{…}}` or `{"candidate":{…}}`.
    Signal {
        /// Offer, answer or candidate.
        kind: SignalKind,
        /// The JSON body.
        body: serde_json::Value,
    },
    /// The candidate types of the selected pair, for `stats()` (`host`, `srflx`, `relay`...).
    SelectedPair {
        /// The local candidate's type.
        local: String,
        /// The remote candidate's type.
        remote: String,
    },
}

impl From<IceState> for P2pOutput {
    fn from(state: IceState) -> Self {
        P2pOutput::Event(P2pEvent::Ice(state))
    }
}

/// Where a p2p path sends its reports; cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct P2pSink {
    pub(crate) peer: String,
    pub(crate) generation: u64,
    pub(crate) tx: mpsc::Sender<(String, u64, P2pOutput)>,
}

impl P2pSink {
    /// Reports to the link; `false` once the link (or its session) is gone.
    pub async fn report(&self, output: P2pOutput) -> bool {
        self.tx
            .send((self.peer.clone(), self.generation, output))
            .await
            .is_ok()
    }

    /// Reports without waiting; `false` when the session's queue is full or gone.
    pub fn try_report(&self, output: P2pOutput) -> bool {
        self.tx
            .try_send((self.peer.clone(), self.generation, output))
            .is_ok()
    }
}

/// One link end's WebRTC peer connection with its negotiated DataChannel (§1: `negotiated`,
/// id 0, ordered, label and protocol `turnpike.link.v1`). Calls come from the session's task
/// and must not block; the path reports through its [`P2pSink`].
pub trait P2pPath: Send {
    /// A signaling payload for this link from the peer (§6), already checked for
    /// `"link": 1`, with the peer's `epoch`; the body is the whole payload object.
    fn handle_signal(&mut self, kind: SignalKind, remote_epoch: u32, payload: serde_json::Value);

    /// Sends one link frame on the DataChannel. `false` when the channel cannot take it now
    /// (the link core treats the frame as lost with the channel).
    fn send_frame(&mut self, frame: &[u8]) -> bool;

    /// `restartIce()`: a new offer with new ICE credentials (only the offering side is asked).
    fn restart_ice(&mut self);

    /// Closes the DataChannel and the peer connection.
    fn close(&mut self);
}

/// Creates the p2p path of each link end.
pub trait P2pConnector: Send + Sync {
    /// A path for one link end; it reports through `sink`.
    fn create(&self, params: P2pParams, sink: P2pSink) -> Box<dyn P2pPath>;
}
