//! What the server sends: responses (the 401/438 rounds, successes, refusals), Data
//! indications and ChannelData.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::{
    Auth, CHANNEL_REBIND, DEFAULT_LIFETIME, Kind, MAX_AUTH_ROUNDS, MAX_REASON, Method,
    PERMISSION_REFRESH, State, TurnClient, TurnError, TurnEvent, allocated, message_method,
};
use crate::proto::channel;
use crate::proto::stun::{Class, Integrity, Message, attr, method};

impl TurnClient {
    /// Handles one message from the server: a STUN message or one ChannelData message (over a
    /// stream, one frame from [`StreamDecoder`](super::StreamDecoder)). Anything else, and
    /// anything that answers nothing we asked, is ignored and counted.
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) {
        if channel::looks_like_channel_data(bytes) {
            self.handle_channel_data(bytes);
            return;
        }
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.ignored += 1;
            return;
        };
        match msg.class() {
            Class::Indication if msg.method() == method::DATA => self.handle_data_indication(&msg),
            Class::Success | Class::Error => self.handle_response(now, &msg),
            _ => self.stats.ignored += 1,
        }
    }

    fn handle_channel_data(&mut self, bytes: &[u8]) {
        let Some((number, len)) = channel::parse(bytes) else {
            self.stats.ignored += 1;
            return;
        };
        let peer = match self.by_channel.get(&number) {
            Some(peer) if self.channels.get(peer).is_some_and(|c| c.bound) => *peer,
            _ => {
                self.stats.ignored += 1;
                return;
            }
        };
        let data = bytes[channel::HEADER_LEN..channel::HEADER_LEN + len].to_vec();
        self.push_data(peer, data);
    }

    fn handle_data_indication(&mut self, msg: &Message<'_>) {
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| msg.xor_address(v));
        match (peer, msg.get(attr::DATA), self.relayed()) {
            (Some(peer), Some(data), Some(_)) => self.push_data(peer, data.to_vec()),
            _ => self.stats.ignored += 1,
        }
    }

    fn push_data(&mut self, peer: SocketAddr, data: Vec<u8>) {
        if self.event_bytes + data.len() > self.config.max_queued_bytes {
            self.stats.dropped += 1;
            return;
        }
        self.event_bytes += data.len();
        self.events.push_back(TurnEvent::Data { peer, data });
    }

    fn handle_response(&mut self, now: Instant, msg: &Message<'_>) {
        let tid = msg.transaction_id();
        let Some(i) = self.transactions.iter().position(|t| t.tid == tid) else {
            self.stats.ignored += 1;
            return;
        };
        let expected = message_method(&self.transactions[i].kind);
        if msg.method() != expected {
            self.stats.ignored += 1;
            return;
        }
        if msg.class() == Class::Error {
            self.handle_error(now, i, msg);
            return;
        }
        // A success to a signed request must be signed with our key (RFC 8489 §9.2.4).
        if self.transactions[i].authenticated {
            let ok = self
                .auth
                .as_ref()
                .is_some_and(|a| msg.verify_integrity(&a.key) == Some(Integrity::Sha1));
            if !ok {
                self.stats.ignored += 1;
                return;
            }
        }
        let t = self.transactions.swap_remove(i);
        self.handle_success(now, t.kind, msg);
    }

    fn handle_error(&mut self, now: Instant, i: usize, msg: &Message<'_>) {
        let (code, reason) = match msg.get(attr::ERROR_CODE).and_then(parse_error_code) {
            Some(e) => e,
            None => {
                self.stats.ignored += 1;
                return;
            }
        };
        let method = self.transactions[i].kind.method();
        let realm = msg.get(attr::REALM);
        let nonce = msg.get(attr::NONCE);
        let retry: Option<(Vec<u8>, Vec<u8>)> = match code {
            401 if !self.transactions[i].authenticated => {
                realm.zip(nonce).map(|(r, n)| (r.to_vec(), n.to_vec()))
            }
            438 => nonce.and_then(|n| {
                realm
                    .map(<[u8]>::to_vec)
                    .or_else(|| self.auth.as_ref().map(|a| a.realm.clone()))
                    .map(|r| (r, n.to_vec()))
            }),
            _ => None,
        };
        if let Some((realm, nonce)) = retry {
            if realm.len() > 763 || nonce.len() > 763 {
                self.stats.ignored += 1;
                return;
            }
            if self.transactions[i].auth_rounds >= MAX_AUTH_ROUNDS {
                let t = self.transactions.swap_remove(i);
                self.fail_transaction(t.kind, TurnError::AuthLoop(method));
                return;
            }
            self.set_auth(realm, nonce);
            let mut t = self.transactions.swap_remove(i);
            t.auth_rounds += 1;
            let rounds = t.auth_rounds;
            // A new transaction (new id) with the credentials.
            if self.start(now, t.kind.clone()).is_ok() {
                if let Some(last) = self.transactions.last_mut() {
                    last.auth_rounds = rounds;
                }
            }
            return;
        }
        if code == 300 {
            // RFC 8489 §10: follow an ALTERNATE-SERVER only from an answer signed with our key
            // (anyone on the path could forge an unsigned one and send us elsewhere); an
            // unsigned or malformed 300 is ignored like any unverifiable answer.
            let alternate = msg
                .get(attr::ALTERNATE_SERVER)
                .and_then(crate::proto::stun::decode_address);
            let signed = self.transactions[i].authenticated
                && self
                    .auth
                    .as_ref()
                    .is_some_and(|a| msg.verify_integrity(&a.key) == Some(Integrity::Sha1));
            let Some(alternate) = alternate.filter(|_| signed) else {
                self.stats.ignored += 1;
                return;
            };
            let t = self.transactions.swap_remove(i);
            let error = TurnError::TryAlternate { method, alternate };
            tracing::debug!(%error, "TURN server redirects");
            self.fail_transaction(t.kind, error);
            return;
        }
        let t = self.transactions.swap_remove(i);
        let error = match code {
            401 => TurnError::Unauthorized(method),
            _ => TurnError::Rejected {
                method,
                code,
                reason,
            },
        };
        tracing::debug!(%error, "TURN request refused");
        self.fail_transaction(t.kind, error);
    }

    fn set_auth(&mut self, realm: Vec<u8>, nonce: Vec<u8>) {
        let mut h = Md5::new();
        h.update(self.config.username.as_bytes());
        h.update(b":");
        h.update(&realm);
        h.update(b":");
        h.update(self.config.password.as_bytes());
        let key: [u8; 16] = h.finalize().into();
        self.auth = Some(Auth { realm, nonce, key });
    }

    fn handle_success(&mut self, now: Instant, kind: Kind, msg: &Message<'_>) {
        let lifetime = msg
            .get(attr::LIFETIME)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(|v| Duration::from_secs(u64::from(u32::from_be_bytes(v))));
        match kind {
            Kind::Allocate => {
                let relayed = msg
                    .get(attr::XOR_RELAYED_ADDRESS)
                    .and_then(|v| msg.xor_address(v));
                let Some(relayed) = relayed else {
                    self.finish(TurnEvent::Failed(TurnError::MalformedResponse(
                        Method::Allocate,
                    )));
                    return;
                };
                let mapped = msg
                    .get(attr::XOR_MAPPED_ADDRESS)
                    .and_then(|v| msg.xor_address(v));
                let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
                self.state = allocated(now, relayed, lifetime);
                tracing::debug!(%relayed, ?lifetime, "TURN allocation");
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                });
            }
            Kind::Refresh { lifetime: 0 } => self.finish(TurnEvent::Closed),
            Kind::Refresh { .. } => {
                if let State::Allocated { relayed, .. } = self.state {
                    let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
                    if lifetime.is_zero() {
                        self.finish(TurnEvent::Failed(TurnError::NotAllocated));
                    } else {
                        self.state = allocated(now, relayed, lifetime);
                    }
                }
            }
            Kind::Permission { ip } => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    let first = !p.installed;
                    p.installed = true;
                    p.in_flight = false;
                    p.refresh_at = Some(now + PERMISSION_REFRESH);
                    if first {
                        self.events.push_back(TurnEvent::PermissionCreated(ip));
                    }
                }
            }
            Kind::ChannelBind { peer, channel } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    let first = !c.bound;
                    c.bound = true;
                    c.in_flight = false;
                    c.rebind_at = Some(now + CHANNEL_REBIND);
                    if first {
                        self.events
                            .push_back(TurnEvent::ChannelBound { peer, channel });
                    }
                }
                let p = self.permissions.entry(peer.ip()).or_default();
                if !p.installed {
                    p.installed = true;
                    p.refresh_at = Some(now + PERMISSION_REFRESH);
                }
            }
        }
    }

    pub(super) fn fail_transaction(&mut self, kind: Kind, error: TurnError) {
        match kind {
            Kind::Allocate => self.finish(TurnEvent::Failed(error)),
            Kind::Refresh { lifetime: 0 } => self.finish(TurnEvent::Closed),
            Kind::Refresh { .. } => self.finish(TurnEvent::Failed(error)),
            Kind::Permission { ip } => {
                let keep_for_channel = self.channels.keys().any(|p| p.ip() == ip);
                if !keep_for_channel {
                    self.permissions.remove(&ip);
                } else if let Some(p) = self.permissions.get_mut(&ip) {
                    p.in_flight = false;
                    p.installed = false;
                    p.refresh_at = None;
                }
                self.events
                    .push_back(TurnEvent::PermissionFailed { ip, error });
            }
            Kind::ChannelBind { peer, channel } => {
                self.channels.remove(&peer);
                self.by_channel.remove(&channel);
                self.events
                    .push_back(TurnEvent::ChannelFailed { peer, error });
            }
        }
    }

    /// Ends the client with `event`: no more transactions, timers or data.
    pub(super) fn finish(&mut self, event: TurnEvent) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.transactions.clear();
        self.permissions.clear();
        self.channels.clear();
        self.by_channel.clear();
        self.events.push_back(event);
    }
}

/// ERROR-CODE: 2 reserved bytes, class (3 bits), number (0-99), then the reason phrase.
fn parse_error_code(v: &[u8]) -> Option<(u16, String)> {
    if v.len() < 4 {
        return None;
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return None;
    }
    let reason = &v[4..v.len().min(4 + MAX_REASON)];
    Some((
        class * 100 + number,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}
