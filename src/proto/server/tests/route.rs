//! Direct routes for relay-to-relay traffic between workers: what the owning core publishes,
//! and that framing by the route matches the core's own framing.

use super::*;

/// A relayed address of another worker, sending to this core's allocation.
const SENDER: &str = "198.51.100.60:50002";
/// Room before a payload as a client's Send indication leaves it (header, XOR-PEER-ADDRESS,
/// DATA's header), and more.
const HEADROOM: usize = 40;

fn sender() -> SocketAddr {
    SENDER.parse().unwrap()
}

fn framed_by_core(h: &mut Harness, to: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
    let now = h.now().instant;
    match h
        .server
        .handle_relayed(now, sender(), to, &mut buf, payload.len())
    {
        PeerOutput::ToClient { frame, .. } => Some(buf[frame].to_vec()),
        PeerOutput::Nothing => None,
    }
}

/// Frames `payload` by `route` as the sending worker does, in its receive slot: `room` bytes
/// of whatever the client sent before the payload.
fn framed_by_route(
    h: &mut Harness,
    route: &DirectRoute,
    room: usize,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = vec![0xAAu8; room + payload.len() + PEER_TAILROOM];
    buf[room..room + payload.len()].copy_from_slice(payload);
    let now = h.now().instant;
    let frame =
        h.server
            .frame_direct(now, route, sender(), &mut buf, room..room + payload.len())?;
    Some(buf[frame].to_vec())
}

/// A frame with its transaction id (a Data indication's, which each core numbers) blanked.
fn without_tid(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() >= 20 && frame[0] & 0xC0 == 0 {
        frame[8..20].fill(0);
    }
    frame
}

#[test]
fn a_route_follows_the_permission_and_the_channel_and_frames_as_the_core_does() {
    let mut h = Harness::new();
    let mut b = Client::rest(ft("198.51.100.7:40000"), "bea", b"new-secret", 3600);
    let answer = b.allocate(&mut h);
    assert_eq!(error_code(&answer), 0);
    let to = relayed(&answer)[0];
    let now = h.now().instant;
    assert!(
        h.server.direct_route(now, sender(), to).is_none(),
        "no permission, no route"
    );
    let payload = [1u8, 2, 3, 4, 5];

    // A permission alone: Data indications, framed like the core's.
    assert_eq!(permit(&mut b, &mut h, &[SENDER]), 0);
    let indications = h.server.direct_route(now, sender(), to).expect("a route");
    assert_eq!(indications.five_tuple, b.ft);
    assert_eq!(indications.channel, None);
    assert_eq!(indications.expires, now + PERMISSION_LIFETIME);
    let by_core = framed_by_core(&mut h, to, &payload).expect("the core delivers");
    let by_route = framed_by_route(&mut h, &indications, HEADROOM, &payload).expect("framed");
    assert_eq!(without_tid(by_route), without_tid(by_core));
    assert_eq!(
        framed_by_route(&mut h, &indications, 4, &payload),
        None,
        "no room for a Data indication's header before the payload"
    );

    // A channel: ChannelData, and the route made before it is void.
    assert_eq!(bind(&mut b, &mut h, 0x4001, SENDER), 0);
    assert_eq!(
        framed_by_route(&mut h, &indications, HEADROOM, &payload),
        None,
        "a newly bound channel voids the Data-indication route"
    );
    let channel = h.server.direct_route(now, sender(), to).expect("a route");
    assert_eq!(channel.channel, Some(0x4001));
    assert_eq!(
        channel.expires,
        now + PERMISSION_LIFETIME,
        "the permission lapses before the channel"
    );
    let by_core = framed_by_core(&mut h, to, &payload).expect("the core delivers");
    assert_eq!(
        framed_by_route(&mut h, &channel, 4, &payload),
        Some(by_core)
    );
    let other_port = "198.51.100.60:50003".parse().unwrap();
    assert_eq!(
        h.server
            .direct_route(now, other_port, to)
            .expect("the same IP is permitted")
            .channel,
        None,
        "the channel is bound to one port of the sender"
    );
}

#[test]
fn a_route_lapses_with_the_permission_and_the_allocation() {
    let mut h = Harness::new();
    let mut b = Client::rest(ft("198.51.100.7:40000"), "bea", b"new-secret", 3600);
    let to = relayed(&b.allocate(&mut h))[0];
    assert_eq!(bind(&mut b, &mut h, 0x4002, SENDER), 0);
    let route = h
        .server
        .direct_route(h.now().instant, sender(), to)
        .expect("a route");

    h.advance(PERMISSION_LIFETIME.as_secs() + 1);
    assert_eq!(
        framed_by_route(&mut h, &route, 4, &[9, 9]),
        None,
        "an expired route frames nothing"
    );
    assert!(
        h.server
            .direct_route(h.now().instant, sender(), to)
            .is_none()
    );
    assert_eq!(
        framed_by_core(&mut h, to, &[9, 9]),
        None,
        "nor does the core"
    );

    // A refreshed channel brings the route back, until the allocation is deleted.
    assert_eq!(bind(&mut b, &mut h, 0x4002, SENDER), 0);
    assert!(
        h.server
            .direct_route(h.now().instant, sender(), to)
            .is_some()
    );
    let answer = b.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())],
    );
    assert_eq!(error_code(&answer), 0);
    assert!(
        h.server
            .direct_route(h.now().instant, sender(), to)
            .is_none()
    );
}
