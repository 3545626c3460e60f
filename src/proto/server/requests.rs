//! STUN/TURN requests: Binding, Allocate, Refresh (CreatePermission and ChannelBind are in
//! `permissions.rs`).

use std::time::Duration;

use rand::RngCore;

use super::allocation::{Allocation, Relay, family_index};
use super::auth::{AuthFailure, Authenticated};
use super::quota::QuotaError;
use super::stats::{DropReason, RequestMethod};
use super::{ClientOutput, Family, FiveTuple, Now, RelayIo, RelayOpenError, RelayRequest, Server};
use crate::proto::ratelimit::TokenBucket;
use crate::proto::stun::{Class, Message, Writer, attr, method};

/// REQUESTED-TRANSPORT protocol number for UDP.
const PROTO_UDP: u8 = 17;
/// REQUESTED-TRANSPORT protocol number for TCP (RFC 6062).
const PROTO_TCP: u8 = 6;

/// An error answer: code and short reason phrase.
pub(super) type Reject = (u16, &'static str);

impl Server {
    pub(super) fn request(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        io: &mut impl RelayIo,
    ) -> ClientOutput {
        if msg.method() == method::BINDING {
            return self.binding(now, ft, msg);
        }
        if !matches!(
            msg.method(),
            method::ALLOCATE
                | method::REFRESH
                | method::CREATE_PERMISSION
                | method::CHANNEL_BIND
                | method::CONNECT
                | method::CONNECTION_BIND
        ) {
            return self.unauthenticated_error(now, ft, msg, 400, "");
        }
        if msg.has_integrity()
            && !self.owner_asks(ft, msg)
            && !self.limiter.may_check(ft.client.ip(), now.instant)
        {
            // Checked before the nonce's HMAC, the key's MD5 and the request's HMAC: a source
            // out of failures gets no work done for it, so a guesser pays a request per guess
            // and the server nothing.
            self.stats.dropped(DropReason::RateLimit);
            return ClientOutput::Nothing;
        }
        let auth = match self.settings.auth.check(msg, ft.client, now.unix) {
            Ok(a) => a,
            Err(failure) => return self.auth_failed(now, ft, msg, failure),
        };
        // The source received its nonce: it is real, and earns answers for the next clients
        // behind its address.
        self.limiter.verified(ft.client.ip());
        if let Some(&slot) = self.by_tuple.get(&ft) {
            if let Some(answer) = self.allocations[slot as usize]
                .as_ref()
                .filter(|a| a.username == auth.username)
                .and_then(|a| a.recalled(&msg.transaction_id()))
            {
                self.reply.clear();
                self.reply.extend_from_slice(answer);
                return ClientOutput::Reply;
            }
        }
        let unknown: Vec<u16> = msg.unknown_required().take(16).collect();
        if !unknown.is_empty() {
            let values: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            return self.answer(msg, &auth, Err((420, "Unknown Attribute")), |w| {
                w.attr(attr::UNKNOWN_ATTRIBUTES, &values);
            });
        }
        if matches!(msg.method(), method::ALLOCATE | method::REFRESH)
            && self
                .shared
                .revoked
                .is_revoked(&auth.username, &auth.quota_user, now.unix)
        {
            // 403, not 401: the credentials verified (this answer is signed with them), and a
            // 401 would tell the client to retry with the same ones, which fails again. 403
            // says the server refuses this user by policy: clients give up on this server (or
            // fetch new credentials, which a revoked user also cannot use).
            self.stats.auth_failure(AuthFailure::Revoked);
            return self.answer(msg, &auth, Err((403, "Credentials Revoked")), |_| {});
        }
        let result = match msg.method() {
            method::ALLOCATE => self.allocate(now, ft, msg, &auth, io),
            method::REFRESH => self.refresh(now, ft, msg, &auth, io),
            method::CREATE_PERMISSION => self.create_permission(now, ft, msg, &auth),
            method::CONNECT => self.connect(ft, msg, &auth),
            method::CONNECTION_BIND => self.connection_bind(ft, msg, &auth),
            _ => self.channel_bind(now, ft, msg, &auth),
        };
        let out = match result {
            Ok(out) => out,
            Err(reject) => self.answer(msg, &auth, Err(reject), |_| {}),
        };
        if let Some(&slot) = self.by_tuple.get(&ft) {
            // A new allocation, a shorter lifetime, a new permission or channel: its earliest
            // deadline may have come forward.
            self.reschedule(slot, now.instant);
        }
        if out != ClientOutput::Reply {
            // Connect and ConnectionBind are answered later (and streams never retransmit).
            return out;
        }
        if let Some(&slot) = self.by_tuple.get(&ft) {
            if let Some(a) = self.allocations[slot as usize].as_mut() {
                a.remember(msg.transaction_id(), &self.reply);
            }
        }
        out
    }

    /// True when `msg` comes from the 5-tuple of a live allocation and names the allocation's
    /// USERNAME: its Refresh, CreatePermission or ChannelBind. Those skip the budget check made
    /// before HMAC work, so that a spoofed flood that exhausts a source's budget cannot cut
    /// off the allocations its real clients hold (a spoofer would have to know both the
    /// 5-tuple and the username, and its failures are still answered within the budget).
    fn owner_asks(&self, ft: FiveTuple, msg: &Message<'_>) -> bool {
        let Some(username) = msg.get(attr::USERNAME) else {
            return false;
        };
        self.by_tuple
            .get(&ft)
            .and_then(|&slot| self.allocations[slot as usize].as_ref())
            .is_some_and(|a| a.username.as_bytes() == username)
    }

    /// Binding (RFC 8489): answered without authentication, with XOR-MAPPED-ADDRESS only (and
    /// FINGERPRINT if the request had one), so the answer is at most 2x the request. The one
    /// exception is an IPv6 client's bare 20-byte request: its XOR-MAPPED-ADDRESS alone makes
    /// the answer 44 bytes (2.2x). Such an answer, more than twice its request, is sent only
    /// within the source's unauthenticated budget (as a 401 is): a STUN client's few Bindings
    /// are answered, a spoofed flood's are not.
    fn binding(&mut self, now: Now, ft: FiveTuple, msg: &Message<'_>) -> ClientOutput {
        let mut w = Writer::new(
            &mut self.reply,
            Class::Success,
            method::BINDING,
            msg.transaction_id(),
        );
        let mut result = Ok(());
        if msg.unknown_required().next().is_some() {
            result = Err(420);
            let values: Vec<u8> = msg
                .unknown_required()
                .take(8)
                .flat_map(|t| t.to_be_bytes())
                .collect();
            w = Writer::new(
                &mut self.reply,
                Class::Error,
                method::BINDING,
                msg.transaction_id(),
            );
            w.error_code(420, "Unknown Attribute")
                .attr(attr::UNKNOWN_ATTRIBUTES, &values);
        } else {
            w.xor_addr(attr::XOR_MAPPED_ADDRESS, ft.client);
        }
        if msg.has_fingerprint() {
            w.fingerprint();
        }
        if self.reply.len() > 2 * msg.as_bytes().len()
            && !self.limiter.allow(ft.client.ip(), now.instant)
        {
            self.reply.clear();
            self.stats.dropped(DropReason::RateLimit);
            return ClientOutput::Nothing;
        }
        self.stats.request(RequestMethod::Binding, result);
        ClientOutput::Reply
    }

    fn auth_failed(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        failure: AuthFailure,
    ) -> ClientOutput {
        self.stats.auth_failure(failure);
        if failure != AuthFailure::Missing {
            self.limiter.failed(ft.client.ip(), now.instant);
        }
        self.unauthenticated_error(now, ft, msg, failure.code(), "")
    }

    /// An answer to a request that did not authenticate: nothing optional (no SOFTWARE, no
    /// reason phrase), REALM and a compact nonce on 401/438, FINGERPRINT when the request had
    /// one, and rate-limited per source (on every transport: see
    /// [`SourceLimiter`](crate::proto::ratelimit::SourceLimiter)).
    fn unauthenticated_error(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        code: u16,
        reason: &str,
    ) -> ClientOutput {
        if !self.limiter.allow(ft.client.ip(), now.instant) {
            self.stats.dropped(DropReason::RateLimit);
            return ClientOutput::Nothing;
        }
        self.stats
            .request(RequestMethod::from_method(msg.method()), Err(code));
        let nonce = self.settings.auth.nonce(now.unix, ft.client);
        let mut w = Writer::new(
            &mut self.reply,
            Class::Error,
            msg.method(),
            msg.transaction_id(),
        );
        w.error_code(code, reason);
        if code == 401 || code == 438 {
            w.attr(attr::REALM, self.settings.auth.realm().as_bytes())
                .attr(attr::NONCE, &nonce);
        }
        // RFC 8489 §7.3: FINGERPRINT when the request carried one (4 + 4 bytes: the answer
        // stays within what the request's own FINGERPRINT added).
        if msg.has_fingerprint() {
            w.fingerprint();
        }
        ClientOutput::Reply
    }

    /// Writes an authenticated answer: success (with `body`) or error, then SOFTWARE,
    /// MESSAGE-INTEGRITY(-SHA256) like the request's, and FINGERPRINT if the request had one.
    pub(super) fn answer(
        &mut self,
        msg: &Message<'_>,
        auth: &Authenticated,
        result: Result<(), Reject>,
        body: impl FnOnce(&mut Writer<'_>),
    ) -> ClientOutput {
        let class = if result.is_ok() {
            Class::Success
        } else {
            Class::Error
        };
        let mut w = Writer::new(&mut self.reply, class, msg.method(), msg.transaction_id());
        let method = RequestMethod::from_method(msg.method());
        if let Err((code, reason)) = result {
            w.error_code(code, reason);
            self.stats.request(method, Err(code));
        } else {
            self.stats.request(method, Ok(()));
        }
        body(&mut w);
        if let Some(sw) = &self.settings.software {
            w.attr(attr::SOFTWARE, sw.as_bytes());
        }
        w.integrity(auth.integrity, &auth.key);
        if msg.has_fingerprint() {
            w.fingerprint();
        }
        ClientOutput::Reply
    }

    fn lifetime(&self, msg: &Message<'_>) -> Option<Duration> {
        let v = msg.get(attr::LIFETIME)?;
        let secs = u32::from_be_bytes(v.try_into().ok()?);
        Some(Duration::from_secs(secs as u64).min(self.settings.limits.max_lifetime))
    }

    fn allocate(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
        io: &mut impl RelayIo,
    ) -> Result<ClientOutput, Reject> {
        if self.by_tuple.contains_key(&ft) {
            return Err((437, "Allocation Mismatch"));
        }
        let tcp = match msg.get(attr::REQUESTED_TRANSPORT) {
            None => return Err((400, "Missing REQUESTED-TRANSPORT")),
            Some(v) if v.len() != 4 => return Err((400, "Bad REQUESTED-TRANSPORT")),
            Some(v) if v[0] == PROTO_UDP => false,
            // RFC 6062 relays are opt-in (relay.tcp_allocations): 442, as for any transport
            // the server does not offer (RFC 8656 §7.2).
            Some(v) if v[0] == PROTO_TCP && self.settings.tcp_allocations => true,
            Some(_) => return Err((442, "Unsupported Transport Protocol")),
        };
        let even_port = msg.get(attr::EVEN_PORT);
        let token = msg.get(attr::RESERVATION_TOKEN);
        let requested_family = msg.get(attr::REQUESTED_ADDRESS_FAMILY);
        let additional_family = msg.get(attr::ADDITIONAL_ADDRESS_FAMILY);
        if tcp {
            // RFC 6062 §5.1: only over TCP or TLS, and without the UDP-only attributes.
            if !ft.transport.is_stream() {
                return Err((400, "TCP Allocation Needs TCP or TLS"));
            }
            if even_port.is_some()
                || token.is_some()
                || additional_family.is_some()
                || msg.get(attr::DONT_FRAGMENT).is_some()
            {
                return Err((400, "Attribute Not Allowed With TCP"));
            }
        }
        if token.is_some()
            && (even_port.is_some() || requested_family.is_some() || additional_family.is_some())
        {
            return Err((400, "Conflicting Attributes"));
        }
        if requested_family.is_some() && additional_family.is_some() {
            return Err((400, "Conflicting Attributes"));
        }
        if even_port.is_some_and(|v| v.len() != 1) || token.is_some_and(|v| v.len() != 8) {
            return Err((400, "Bad Attribute"));
        }
        let family = match requested_family {
            None => Family::V4,
            Some([1, 0, 0, 0]) => Family::V4,
            Some([2, 0, 0, 0]) => Family::V6,
            Some(_) => return Err((440, "Address Family not Supported")),
        };
        let dual = match additional_family {
            None => false,
            Some([2, 0, 0, 0]) => true,
            Some(_) => return Err((400, "Bad ADDITIONAL-ADDRESS-FAMILY")),
        };
        if !self.settings.families[family as usize] {
            return Err((440, "Address Family not Supported"));
        }
        if self.draining {
            // A draining server wants no new allocation, so it tells the client to go
            // elsewhere. When it knows another server for the request's transport and address
            // family (`fleet.alternate_servers`, or a live node of the fleet), that is 300 Try
            // Alternate with ALTERNATE-SERVER (RFC 8656 §7.2, RFC 8489 §10): the client
            // allocates there at once. Otherwise 508 Insufficient Capacity: RFC 8656 §7.4 asks
            // a client that gets it to "wait at least 1 minute before trying to create any more
            // allocations on this server", so an ICE agent moves on to its other TURN servers
            // (STUN has no 503; 500 Server Error invites the retry here that draining wants to
            // avoid). The check comes after authentication, so the answer is signed like any
            // other, and a client can trust the redirection (RFC 8489 §10).
            if let Some(alternate) = self.alternates.choose(ft.transport, ft.client, ft.server) {
                return Ok(self.answer(msg, auth, Err((300, "Try Alternate")), |w| {
                    w.addr(attr::ALTERNATE_SERVER, alternate);
                }));
            }
            return Err((508, "Insufficient Capacity"));
        }
        let lifetime = self
            .lifetime(msg)
            .unwrap_or(self.settings.limits.default_lifetime)
            .max(self.settings.limits.default_lifetime)
            .min(self.settings.limits.max_lifetime);
        let reserved_addr = match token {
            Some(t) => {
                let t: [u8; 8] = t.try_into().expect("length checked");
                Some(
                    self.shared
                        .reservations
                        .claim(&t, now.instant)
                        .ok_or((508, "Insufficient Capacity"))?,
                )
            }
            None => None,
        };
        if let Err(e) = self.shared.quota.acquire(&auth.quota_user) {
            self.stats.dropped(DropReason::Quota);
            if let Some(addr) = reserved_addr {
                io.release_reserved(addr);
            }
            return Err(match e {
                QuotaError::User => (486, "Allocation Quota Reached"),
                QuotaError::Total => (508, "Insufficient Capacity"),
            });
        }
        let dont_fragment = msg.get(attr::DONT_FRAGMENT).is_some();
        let mut relays = [None, None];
        let mut new_token = None;
        let opened = match reserved_addr {
            Some(addr) => io.open_reserved(addr, dont_fragment),
            None if tcp => io.open_tcp(family),
            None => io.open(RelayRequest {
                family,
                even: even_port.is_some(),
                reserve_next: even_port.is_some_and(|v| v[0] & 0x80 != 0),
                dont_fragment,
                near: Some(ft.server.ip()),
            }),
        };
        let primary = match opened {
            Ok(o) => o,
            Err(e) => {
                self.shared.quota.release(&auth.quota_user);
                return Err(match e {
                    RelayOpenError::NoPort => (508, "Insufficient Capacity"),
                    RelayOpenError::FamilyUnsupported => (440, "Address Family not Supported"),
                    RelayOpenError::TransportUnsupported => (442, "Unsupported Transport Protocol"),
                });
            }
        };
        relays[family_index(primary.addr.ip())] = Some(Relay {
            id: primary.id,
            addr: primary.addr,
        });
        if let Some(addr) = primary.reserved {
            let mut t = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut t);
            if self
                .shared
                .reservations
                .insert(t, addr, now.instant + super::RESERVATION_LIFETIME)
            {
                new_token = Some(t);
            } else {
                io.release_reserved(addr);
            }
        }
        let mut ipv6_error = None;
        if dual {
            let second = if self.settings.families[1] {
                io.open(RelayRequest {
                    family: Family::V6,
                    even: false,
                    reserve_next: false,
                    dont_fragment,
                    near: Some(ft.server.ip()),
                })
            } else {
                Err(RelayOpenError::FamilyUnsupported)
            };
            match second {
                Ok(o) => {
                    relays[1] = Some(Relay {
                        id: o.id,
                        addr: o.addr,
                    })
                }
                Err(RelayOpenError::FamilyUnsupported) => {
                    ipv6_error = Some((440, "Address Family not Supported"))
                }
                Err(RelayOpenError::NoPort | RelayOpenError::TransportUnsupported) => {
                    ipv6_error = Some((508, "Insufficient Capacity"))
                }
            }
        }
        let bandwidth = (self.settings.limits.bandwidth_bps > 0).then(|| {
            let bps = self.settings.limits.bandwidth_bps;
            TokenBucket::new(bps, bps, now.instant)
        });
        let mut alloc = Allocation::new(
            ft,
            auth.username.clone(),
            auth.quota_user.clone(),
            auth.key,
            relays,
            now.instant,
            lifetime,
            bandwidth,
            auth.integrity,
        );
        alloc.tcp = tcp;
        self.insert_allocation(alloc);
        Ok(self.answer(msg, auth, Ok(()), |w| {
            for relay in relays.iter().flatten() {
                w.xor_addr(attr::XOR_RELAYED_ADDRESS, relay.addr);
            }
            if let Some((code, reason)) = ipv6_error {
                w.address_error(Family::V6.code(), code, reason);
            }
            w.u32_attr(attr::LIFETIME, lifetime.as_secs() as u32);
            if let Some(t) = new_token {
                w.attr(attr::RESERVATION_TOKEN, &t);
            }
            w.xor_addr(attr::XOR_MAPPED_ADDRESS, ft.client);
        }))
    }

    /// The allocation of `ft`, checked to belong to the authenticated user (437 / 441).
    pub(super) fn own_allocation(
        &mut self,
        ft: FiveTuple,
        auth: &Authenticated,
    ) -> Result<u32, Reject> {
        let slot = *self.by_tuple.get(&ft).ok_or((437, "Allocation Mismatch"))?;
        let alloc = self.allocations[slot as usize]
            .as_mut()
            .ok_or((437, "Allocation Mismatch"))?;
        if alloc.username != auth.username {
            return Err((441, "Wrong Credentials"));
        }
        alloc.integrity = auth.integrity;
        Ok(slot)
    }

    fn refresh(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
        io: &mut impl RelayIo,
    ) -> Result<ClientOutput, Reject> {
        let slot = self.own_allocation(ft, auth)?;
        let limits = &self.settings.limits;
        // RFC 8656 §7.3: a lifetime below the default is raised to it (0 deletes), one above
        // the maximum lowered to it (`lifetime` caps it).
        let lifetime = match self.lifetime(msg) {
            Some(l) if l.is_zero() => l,
            Some(l) => l.max(limits.default_lifetime).min(limits.max_lifetime),
            None => limits.default_lifetime,
        };
        let alloc = self.allocations[slot as usize]
            .as_mut()
            .expect("own_allocation checked");
        if let Some(v) = msg.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let idx = match v {
                [1, 0, 0, 0] => 0,
                [2, 0, 0, 0] => 1,
                _ => return Err((440, "Address Family not Supported")),
            };
            if alloc.relays[idx].is_none() {
                return Err((443, "Peer Address Family Mismatch"));
            }
        }
        if lifetime.is_zero() {
            // Answer first (the answer is signed with the allocation's key), then delete.
            let out = self.answer(msg, auth, Ok(()), |w| {
                w.u32_attr(attr::LIFETIME, 0);
            });
            self.remove_allocation(slot, io);
            return Ok(out);
        }
        alloc.expires = now.instant + lifetime;
        self.announce_channels(slot, now.instant);
        Ok(self.answer(msg, auth, Ok(()), |w| {
            w.u32_attr(attr::LIFETIME, lifetime.as_secs() as u32);
        }))
    }
}
