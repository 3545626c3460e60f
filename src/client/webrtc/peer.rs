//! The sans-IO WebRTC peer: str0m's `Rtc` with the link's negotiated DataChannel, JSEP
//! offers/answers and trickle candidates in the link's payloads, ICE restart, and the
//! relay-only policy. Time comes in as arguments; nothing here touches a socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::signal::{CandidateInit, LinkSignal};
use super::{CHANNEL_ID, CHANNEL_LABEL, WebRtcError};

/// Remote candidates held until the remote description arrives (link protocol §6).
const MAX_QUEUED_CANDIDATES: usize = 256;
/// The link's frame limit on the DataChannel (link protocol §1).
pub const MAX_MESSAGE: usize = 16_384;

/// How a peer behaves.
#[derive(Clone, Copy, Debug)]
pub struct RtcPeerConfig {
    /// Our link epoch (sent in every signaling payload).
    pub epoch: u32,
    /// `iceTransportPolicy: "relay"`: only relay candidates are offered.
    pub relay_only: bool,
    /// Perfect negotiation: the polite side drops its own offer on glare and answers.
    pub polite: bool,
    /// SCTP bytes str0m buffers before it refuses a write ([`SCTP_MAX_BUFFERED`] by
    /// default); a refused frame is held by the driver and sent when room comes, in order.
    pub sctp_max_buffered: usize,
}

/// The ICE connection state (as `RTCPeerConnection.iceConnectionState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceState {
    /// Gathering, nothing checked yet.
    New,
    /// Checking pairs.
    Checking,
    /// A pair works.
    Connected,
    /// All pairs checked, one works.
    Completed,
    /// Consent lost; may come back.
    Disconnected,
    /// No pair works.
    Failed,
}

/// What the peer tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A payload to send to the other peer through the registry.
    Signal(LinkSignal),
    /// The ICE connection state changed.
    Ice(IceState),
    /// The DataChannel is open.
    ChannelOpen,
    /// The DataChannel closed.
    ChannelClosed,
    /// A binary message arrived on the DataChannel.
    Message(Vec<u8>),
    /// The buffered amount fell below the low threshold.
    BufferedAmountLow,
    /// A remote candidate was added (the driver installs TURN permissions for it).
    RemoteCandidate(SocketAddr),
    /// The candidate pair that carries the DataChannel changed (`stats()`): the types of its
    /// local and remote candidates (`host`, `srflx`, `prflx`, `relay`).
    SelectedPair {
        /// Our candidate's type.
        local: String,
        /// The other side's candidate's type (`prflx` when it never signaled that address).
        remote: String,
    },
}

/// What to do next.
#[derive(Debug)]
pub enum PeerOutput {
    /// Send `data` from our candidate `source` to `destination`.
    Transmit {
        /// Our candidate address (a host socket, or the relayed address of a TURN relay).
        source: SocketAddr,
        /// The remote address.
        destination: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Something happened.
    Event(PeerEvent),
    /// Nothing more until this time (or an input).
    Timeout(Instant),
}

/// A WebRTC peer with the link's one negotiated DataChannel.
pub struct RtcPeer {
    rtc: Rtc,
    config: RtcPeerConfig,
    channel: Option<ChannelId>,
    /// The channel was added by the pending offer (dropped with it on a glare rollback).
    channel_in_pending_offer: bool,
    /// The `a=mid:` of the data section, once an offer named it.
    mid: Option<String>,
    /// Our candidates, to add again to a rebuilt `Rtc`.
    local_candidates: Vec<Candidate>,
    channel_open: bool,
    pending_offer: Option<SdpPendingOffer>,
    remote_description: bool,
    queued: Vec<Candidate>,
    /// The remote candidates' addresses and types (bounded: [`MAX_QUEUED_CANDIDATES`]).
    remote_kinds: Vec<(SocketAddr, String)>,
    /// The (source, destination) of the last DTLS/SCTP datagram str0m sent: the pair it
    /// nominated (str0m 0.24 has no event for it; connectivity checks are STUN and skipped).
    selected: Option<(SocketAddr, SocketAddr)>,
    events: VecDeque<PeerEvent>,
    dropped_inputs: u64,
    /// The latest time an input brought (for a bounded poll that must yield).
    now: Instant,
}

/// The first `a=mid:` of an SDP (the link's one data section).
fn mid_of(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .map(str::to_owned)
}

/// SCTP bytes str0m buffers before it refuses a write: above what the link core lets out
/// (1 MiB of `bufferedAmount` plus a frame), so a frame it sends is rarely refused (and one
/// that is, is held and sent later: see the driver).
pub const SCTP_MAX_BUFFERED: usize = 2 << 20;

fn new_rtc(now: Instant, sctp_max_buffered: usize) -> Rtc {
    Rtc::builder()
        .set_sctp_max_buffered_amount(sctp_max_buffered)
        .build(now)
}

/// A local candidate's type as the selected pair's: a relayed address is `relay`; a datagram
/// from a host socket is `host` (server-reflexive candidates send from their base, the host
/// socket, so a pair through one reports `host`, as RFC 8445 §6.1.2.4 prunes them to it).
fn kind_of_local(c: &Candidate) -> String {
    match c.kind() {
        str0m::CandidateKind::Relayed => "relay".to_owned(),
        _ => "host".to_owned(),
    }
}

fn channel_config() -> ChannelConfig {
    ChannelConfig {
        label: CHANNEL_LABEL.into(),
        ordered: true,
        reliability: Reliability::Reliable,
        negotiated: Some(CHANNEL_ID),
        protocol: CHANNEL_LABEL.into(),
    }
}

impl RtcPeer {
    /// A peer with no description yet.
    pub fn new(now: Instant, config: RtcPeerConfig) -> Self {
        let rtc = new_rtc(now, config.sctp_max_buffered);
        RtcPeer {
            rtc,
            config,
            channel: None,
            channel_in_pending_offer: false,
            local_candidates: Vec::new(),
            mid: None,
            channel_open: false,
            pending_offer: None,
            remote_description: false,
            queued: Vec::new(),
            remote_kinds: Vec::new(),
            selected: None,
            events: VecDeque::new(),
            dropped_inputs: 0,
            now,
        }
    }

    /// Our epoch.
    pub fn epoch(&self) -> u32 {
        self.config.epoch
    }

    /// Adds a host candidate (ignored under the relay-only policy) and trickles it.
    pub fn add_host_candidate(&mut self, addr: SocketAddr) -> Result<(), WebRtcError> {
        if self.config.relay_only {
            return Ok(());
        }
        let c = Candidate::host(addr, "udp").map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.add_local(c);
        Ok(())
    }

    /// Adds a server-reflexive candidate (`mapped`: our address as a STUN server saw it;
    /// `base`: the host socket it was learned through, which str0m sends from) and trickles
    /// it; ignored under the relay-only policy.
    pub fn add_srflx_candidate(
        &mut self,
        mapped: SocketAddr,
        base: SocketAddr,
    ) -> Result<(), WebRtcError> {
        if self.config.relay_only {
            return Ok(());
        }
        let c = Candidate::server_reflexive(mapped, base, "udp")
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.add_local(c);
        Ok(())
    }

    /// Adds a relay candidate for a TURN allocation's relayed address and trickles it. What
    /// str0m sends from it comes out of [`poll_output`](Self::poll_output) with `source` =
    /// `relayed`, and what the relay receives goes to [`handle_receive`](Self::handle_receive)
    /// with `destination` = `relayed`.
    pub fn add_relay_candidate(&mut self, relayed: SocketAddr) -> Result<(), WebRtcError> {
        let c = Candidate::relayed(relayed, relayed, "udp")
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.add_local(c);
        Ok(())
    }

    fn add_local(&mut self, c: Candidate) {
        if self.local_candidates.len() < 16 {
            self.local_candidates.push(c.clone());
        }
        self.trickle_local(c);
    }

    fn trickle_local(&mut self, c: Candidate) {
        let ufrag = self.rtc.direct_api().local_ice_credentials().ufrag;
        if let Some(added) = self.rtc.add_local_candidate(c) {
            let init = CandidateInit {
                candidate: added.to_sdp_string(),
                // The data section's mid once an offer named it; before, the m-line index
                // alone (browsers take either).
                sdp_mid: self.mid.clone(),
                sdp_m_line_index: Some(0),
                username_fragment: Some(ufrag),
            };
            self.signal_candidate(Some(init));
        }
    }

    fn signal_candidate(&mut self, candidate: Option<CandidateInit>) {
        self.events
            .push_back(PeerEvent::Signal(LinkSignal::Candidate {
                epoch: self.config.epoch,
                candidate,
            }));
    }

    /// Tells the other side that no more candidates come (`"candidate": null`).
    pub fn end_of_candidates(&mut self) {
        self.signal_candidate(None);
    }

    /// Creates the offer (the side that opens the link offers); the first one adds the
    /// negotiated DataChannel.
    pub fn create_offer(&mut self) -> Result<(), WebRtcError> {
        let mut api = self.rtc.sdp_api();
        if self.channel.is_none() {
            self.channel = Some(api.add_channel_with_config(channel_config()));
            self.channel_in_pending_offer = true;
        }
        let applied = api.apply();
        self.offered(applied)
    }

    /// Restarts ICE: new credentials in a new offer (keeping our candidates).
    pub fn restart_ice(&mut self) -> Result<(), WebRtcError> {
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let applied = api.apply();
        self.offered(applied)
    }

    fn offered(&mut self, applied: Option<(SdpOffer, SdpPendingOffer)>) -> Result<(), WebRtcError> {
        let Some((offer, pending)) = applied else {
            return Ok(());
        };
        self.pending_offer = Some(pending);
        let sdp = offer.to_sdp_string();
        self.mid = mid_of(&sdp).or(self.mid.take());
        self.events.push_back(PeerEvent::Signal(LinkSignal::Offer {
            epoch: self.config.epoch,
            sdp,
        }));
        Ok(())
    }

    /// Handles a payload from the other peer (its epoch was checked by the link layer).
    pub fn handle_signal(&mut self, signal: LinkSignal) -> Result<(), WebRtcError> {
        let bad = |e: &dyn std::fmt::Display| WebRtcError::Signal(e.to_string());
        match signal {
            LinkSignal::Offer { sdp, .. } => {
                if self.pending_offer.is_some() {
                    if !self.config.polite {
                        // Glare: the impolite side keeps its offer and ignores theirs.
                        return Ok(());
                    }
                    // Glare, polite side: our offer is rolled back. When it was the first one
                    // (it added the channel, which str0m keeps allocated, so the answer could
                    // not open it), the whole `Rtc` starts over: new DTLS identity and ICE
                    // credentials, our candidates trickled again, the channel created by the
                    // answer below.
                    self.pending_offer = None;
                    if std::mem::take(&mut self.channel_in_pending_offer) {
                        self.rebuild();
                    }
                }
                let offer = SdpOffer::from_sdp_string(&sdp).map_err(|e| bad(&e))?;
                self.mid = mid_of(&sdp).or(self.mid.take());
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
                if self.channel.is_none() {
                    self.channel =
                        Some(self.rtc.direct_api().create_data_channel(channel_config()));
                }
                self.events.push_back(PeerEvent::Signal(LinkSignal::Answer {
                    epoch: self.config.epoch,
                    sdp: answer.to_sdp_string(),
                }));
                self.remote_ready();
            }
            LinkSignal::Answer { sdp, .. } => {
                let Some(pending) = self.pending_offer.take() else {
                    return Err(WebRtcError::Signal("an answer without an offer".into()));
                };
                let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| bad(&e))?;
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
                self.channel_in_pending_offer = false;
                self.remote_ready();
            }
            LinkSignal::Candidate { candidate, .. } => {
                let Some(init) = candidate else {
                    return Ok(());
                };
                let line = init.candidate.strip_prefix("a=").unwrap_or(&init.candidate);
                if line.is_empty() {
                    return Ok(()); // a browser's empty end-of-candidates
                }
                let mut c = Candidate::from_sdp_string(line).map_err(|e| bad(&e))?;
                if let Some(u) = &init.username_fragment {
                    c.set_ufrag(u);
                }
                if self.remote_description {
                    self.add_remote(c);
                } else if self.queued.len() < MAX_QUEUED_CANDIDATES {
                    self.queued.push(c);
                }
            }
        }
        Ok(())
    }

    fn rebuild(&mut self) {
        self.rtc = new_rtc(self.now, self.config.sctp_max_buffered);
        self.selected = None;
        self.mid = None; // their offer names it
        self.channel = None;
        self.channel_open = false;
        self.remote_description = false;
        for c in self.local_candidates.clone() {
            self.trickle_local(c);
        }
        self.end_of_candidates();
    }

    fn remote_ready(&mut self) {
        self.remote_description = true;
        for c in std::mem::take(&mut self.queued) {
            self.add_remote(c);
        }
    }

    fn add_remote(&mut self, c: Candidate) {
        let addr = c.addr();
        if self.remote_kinds.len() < MAX_QUEUED_CANDIDATES {
            self.remote_kinds.push((addr, c.kind().to_string()));
        }
        self.rtc.add_remote_candidate(c);
        self.events.push_back(PeerEvent::RemoteCandidate(addr));
    }

    /// A datagram that arrived from `source` on our candidate address `destination`.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.now = now;
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.dropped_inputs += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::debug!(error = %e, "str0m refused a datagram");
                self.dropped_inputs += 1;
            }
        } else {
            self.dropped_inputs += 1;
        }
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "str0m timeout");
        }
    }

    /// The next output: events first, then str0m's transmits, events and timeout.
    pub fn poll_output(&mut self) -> PeerOutput {
        if let Some(e) = self.events.pop_front() {
            return PeerOutput::Event(e);
        }
        // Bounded: str0m's events we do not use are skipped, at most this many in a row.
        for _ in 0..1024 {
            let out = match self.rtc.poll_output() {
                Ok(out) => out,
                Err(e) => {
                    tracing::debug!(error = %e, "str0m poll_output");
                    return PeerOutput::Event(PeerEvent::Ice(IceState::Failed));
                }
            };
            match out {
                Output::Timeout(t) => return PeerOutput::Timeout(t),
                Output::Transmit(t) => {
                    self.note_pair(t.source, t.destination, &t.contents);
                    return PeerOutput::Transmit {
                        source: t.source,
                        destination: t.destination,
                        data: t.contents.to_vec(),
                    };
                }
                Output::Event(e) => {
                    if let Some(e) = self.map_event(e) {
                        return PeerOutput::Event(e);
                    }
                }
            }
        }
        PeerOutput::Timeout(self.now)
    }

    /// Notes the pair a DTLS/SCTP datagram goes out on (RFC 7983: first byte 20-63); a new
    /// one is reported as [`PeerEvent::SelectedPair`].
    fn note_pair(&mut self, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        if !data.first().is_some_and(|b| (20..=63).contains(b)) {
            return; // STUN checks go out on every pair
        }
        if self.selected == Some((source, destination)) {
            return;
        }
        self.selected = Some((source, destination));
        let local = self
            .local_candidates
            .iter()
            .find(|c| c.local() == source)
            .map_or_else(|| "host".to_owned(), kind_of_local);
        let remote = self
            .remote_kinds
            .iter()
            .find(|(addr, _)| *addr == destination)
            .map_or_else(|| "prflx".to_owned(), |(_, kind)| kind.clone());
        self.events
            .push_back(PeerEvent::SelectedPair { local, remote });
    }

    /// The selected pair's (local, remote) addresses, once a DTLS/SCTP datagram went out.
    pub fn selected_pair(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.selected
    }

    fn map_event(&mut self, e: Event) -> Option<PeerEvent> {
        match e {
            Event::IceConnectionStateChange(s) => Some(PeerEvent::Ice(match s {
                IceConnectionState::New => IceState::New,
                IceConnectionState::Checking => IceState::Checking,
                IceConnectionState::Connected => IceState::Connected,
                IceConnectionState::Completed => IceState::Completed,
                IceConnectionState::Disconnected => IceState::Disconnected,
            })),
            Event::ChannelOpen(id, _) if Some(id) == self.channel => {
                self.channel_open = true;
                if let Some(mut ch) = self.rtc.channel(id) {
                    ch.set_buffered_amount_low_threshold(256 * 1024);
                }
                Some(PeerEvent::ChannelOpen)
            }
            Event::ChannelData(d) if Some(d.id) == self.channel => Some(PeerEvent::Message(d.data)),
            Event::ChannelClose(id) if Some(id) == self.channel => {
                self.channel_open = false;
                Some(PeerEvent::ChannelClosed)
            }
            Event::ChannelBufferedAmountLow(id) if Some(id) == self.channel => {
                Some(PeerEvent::BufferedAmountLow)
            }
            _ => None,
        }
    }

    /// True while the DataChannel is open.
    pub fn is_open(&self) -> bool {
        self.channel_open
    }

    /// Sends a binary message on the DataChannel (at most 16,384 bytes, one link frame).
    pub fn send(&mut self, data: &[u8]) -> Result<(), WebRtcError> {
        if data.len() > MAX_MESSAGE {
            return Err(WebRtcError::TooLarge(data.len()));
        }
        let id = self
            .channel
            .filter(|_| self.channel_open)
            .ok_or(WebRtcError::NotOpen)?;
        let mut ch = self.rtc.channel(id).ok_or(WebRtcError::NotOpen)?;
        match ch.write(true, data) {
            Ok(true) => Ok(()),
            Ok(false) => Err(WebRtcError::Full),
            Err(e) => Err(WebRtcError::Rtc(e.to_string())),
        }
    }

    /// Bytes written to the DataChannel and not yet sent (as `RTCDataChannel.bufferedAmount`).
    pub fn buffered_amount(&mut self) -> usize {
        match self.channel.filter(|_| self.channel_open) {
            Some(id) => self
                .rtc
                .channel(id)
                .map_or(0, |mut ch| ch.buffered_amount()),
            None => 0,
        }
    }

    /// Inputs str0m did not take (not STUN/DTLS, for no candidate of ours, refused).
    pub fn dropped_inputs(&self) -> u64 {
        self.dropped_inputs
    }

    /// Closes the peer connection.
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.channel_open = false;
    }
}
