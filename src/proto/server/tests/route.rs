//! Direct routes for relay-to-relay traffic between workers: what the owning core publishes,
//! and that framing by the route matches the core's own framing.

use super::*;

/// A relayed address of another worker, sending to this core's allocation.
const SENDER: &str = "198.51.100.60:50002";

fn framed_by_core(h: &mut Harness, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
    let now = h.now().instant;
    match h
        .server
        .handle_relayed(now, SENDER.parse().unwrap(), to, &mut buf, payload.len())
    {
        PeerOutput::ToClient { frame, .. } => Some(buf[frame].to_vec()),
        PeerOutput::Nothing => None,
    }
}

fn framed_by_route(h: &mut Harness, route: &DirectRoute, payload: &[u8]) -> Option<Vec<u8>> {
    // As a client's ChannelData arrives: a 4-byte header, then the payload.
    let mut buf = vec![0xAAu8; 4 + payload.len()];
    buf[4..].copy_from_slice(payload);
    let now = h.now().instant;
    let frame = h
        .server
        .frame_direct(now, route, &mut buf, 4..4 + payload.len())?;
    Some(buf[frame].to_vec())
}

#[test]
fn a_route_needs_a_permission_and_a_channel_and_frames_as_the_core_does() {
    let mut h = Harness::new();
    let mut b = Client::rest(ft("198.51.100.7:40000"), "bea", b"new-secret", 3600);
    let answer = b.allocate(&mut h);
    assert_eq!(error_code(&answer), 0);
    let to = relayed(&answer)[0];
    let from: SocketAddr = SENDER.parse().unwrap();
    let now = h.now().instant;
    assert_eq!(h.server.direct_route(now, from, to), None, "no permission");

    assert_eq!(permit(&mut b, &mut h, &[SENDER]), 0);
    assert_eq!(
        h.server.direct_route(now, from, to),
        None,
        "a permission without a channel: Data indications stay with the core"
    );

    assert_eq!(bind(&mut b, &mut h, 0x4001, SENDER), 0);
    let route = h.server.direct_route(now, from, to).expect("a route");
    assert_eq!(route.five_tuple, b.ft);
    assert_eq!(route.channel, 0x4001);
    assert_eq!(
        route.expires,
        now + PERMISSION_LIFETIME,
        "the permission lapses before the channel"
    );
    assert_eq!(
        h.server
            .direct_route(now, "198.51.100.60:50003".parse().unwrap(), to),
        None,
        "the channel is bound to one port of the sender"
    );

    let payload = [1u8, 2, 3, 4, 5];
    let by_core = framed_by_core(&mut h, to, &payload).expect("the core delivers");
    assert_eq!(framed_by_route(&mut h, &route, &payload), Some(by_core));
}

#[test]
fn a_route_lapses_with_the_permission_and_the_allocation() {
    let mut h = Harness::new();
    let mut b = Client::rest(ft("198.51.100.7:40000"), "bea", b"new-secret", 3600);
    let to = relayed(&b.allocate(&mut h))[0];
    let from: SocketAddr = SENDER.parse().unwrap();
    assert_eq!(bind(&mut b, &mut h, 0x4002, SENDER), 0);
    let route = h
        .server
        .direct_route(h.now().instant, from, to)
        .expect("a route");

    h.advance(PERMISSION_LIFETIME.as_secs() + 1);
    assert_eq!(
        framed_by_route(&mut h, &route, &[9, 9]),
        None,
        "an expired route frames nothing"
    );
    assert_eq!(h.server.direct_route(h.now().instant, from, to), None);
    assert_eq!(
        framed_by_core(&mut h, to, &[9, 9]),
        None,
        "nor does the core"
    );

    // A refreshed channel brings the route back, until the allocation is deleted.
    assert_eq!(bind(&mut b, &mut h, 0x4002, SENDER), 0);
    assert!(h.server.direct_route(h.now().instant, from, to).is_some());
    let answer = b.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())],
    );
    assert_eq!(error_code(&answer), 0);
    assert_eq!(h.server.direct_route(h.now().instant, from, to), None);
}
