//! Two link ends wired together in memory: switching, epochs, close, timers, and a property
//! test over random interleavings of two lossy, reordering paths and switches.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn link(now: Instant, epoch: u32, offerer: bool) -> Link {
    let config = LinkConfig {
        offerer,
        ..LinkConfig::default()
    };
    Link::new(
        config,
        now,
        NonZeroU32::new(epoch).unwrap(),
        u64::from(epoch),
    )
}

/// Two ends and the frames in flight between them, per direction and path.
struct Pair {
    now: Instant,
    ends: [Link; 2],
    /// `wire[from][path]`: frames from end `from`, oldest first.
    wire: [[VecDeque<Vec<u8>>; 2]; 2],
    channel_open: bool,
    received: [Vec<Vec<u8>>; 2],
    events: [Vec<Event>; 2],
}

fn path_index(path: Path) -> usize {
    match path {
        Path::P2p => 0,
        Path::Relay => 1,
    }
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        Pair {
            now,
            ends: [link(now, 1111, true), link(now, 2222, false)],
            wire: Default::default(),
            channel_open: false,
            received: [Vec::new(), Vec::new()],
            events: [Vec::new(), Vec::new()],
        }
    }

    /// Moves every pending output of both ends onto the wire (or into the received lists).
    fn pump(&mut self) {
        for side in 0..2 {
            // The DataChannel's bufferedAmount: what is still on the wire.
            let buffered = self.wire[side][0].iter().map(Vec::len).sum::<usize>() as u64;
            self.ends[side].handle_p2p_event(self.now, P2pEvent::BufferedAmount(buffered));
            while let Some(transmit) = self.ends[side].poll_transmit(self.now) {
                if transmit.path == Path::P2p && !self.channel_open {
                    continue; // no channel to write to
                }
                self.wire[side][path_index(transmit.path)].push_back(transmit.bytes);
            }
            while let Some(event) = self.ends[side].poll_event() {
                match event {
                    Event::Message(message) => self.received[side].push(message.data),
                    other => self.events[side].push(other),
                }
            }
        }
    }

    /// Delivers the oldest frame from `from` on `path`.
    fn deliver(&mut self, from: usize, path: Path) -> bool {
        let Some(bytes) = self.wire[from][path_index(path)].pop_front() else {
            return false;
        };
        self.ends[1 - from].handle_frame(self.now, path, &bytes);
        self.pump();
        true
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for end in &mut self.ends {
            if end.poll_timeout().is_some_and(|at| at <= self.now) {
                end.handle_timeout(self.now);
            }
        }
        self.pump();
    }

    fn p2p_event(&mut self, event: P2pEvent) {
        match event {
            P2pEvent::ChannelOpen => self.channel_open = true,
            P2pEvent::ChannelClosed => {
                self.channel_open = false;
                for side in &mut self.wire {
                    side[0].clear(); // what was in the dead channel is lost
                }
            }
            _ => {}
        }
        for end in &mut self.ends {
            end.handle_p2p_event(self.now, event);
        }
        self.pump();
    }

    /// Delivers everything without loss and follows the timers until both ends have nothing
    /// unacknowledged (bounded).
    fn settle(&mut self) {
        for _ in 0..20_000 {
            let mut moved = false;
            for from in 0..2 {
                for path in [Path::P2p, Path::Relay] {
                    while self.deliver(from, path) {
                        moved = true;
                    }
                }
            }
            if moved {
                continue;
            }
            if self.ends.iter().all(|e| e.unacked_messages() == 0) {
                // Let the last acks out.
                self.advance(Duration::from_millis(50));
                if self.wire.iter().flatten().all(VecDeque::is_empty) {
                    return;
                }
                continue;
            }
            let next = self.ends.iter().filter_map(Link::poll_timeout).min();
            let step = next
                .map(|at| at.saturating_duration_since(self.now))
                .unwrap_or(Duration::from_millis(100))
                .max(Duration::from_millis(1));
            self.advance(step);
        }
        panic!("did not settle");
    }
}

fn message(side: usize, n: usize, len: usize) -> Vec<u8> {
    let mut data = format!("{side}:{n}:").into_bytes();
    data.resize(len.max(data.len()), b'x');
    data
}

#[test]
fn relay_after_fallback_then_p2p_after_a_probe() {
    let mut pair = Pair::new();
    pair.ends[0]
        .send(pair.now, b"first".to_vec(), false)
        .unwrap();
    pair.pump();
    assert!(pair.wire[0][1].is_empty(), "connecting sends nothing");
    pair.advance(Duration::from_secs(10));
    assert_eq!(pair.ends[0].mode(), Mode::Relay);
    pair.settle();
    assert_eq!(pair.received[1], vec![b"first".to_vec()]);
    pair.p2p_event(P2pEvent::ChannelOpen);
    pair.settle();
    assert_eq!(pair.ends[0].mode(), Mode::P2p);
    assert_eq!(pair.ends[1].mode(), Mode::P2p);
    pair.ends[0]
        .send(pair.now, b"second".to_vec(), true)
        .unwrap();
    pair.pump();
    assert_eq!(pair.wire[0][0].len(), 1, "sent on the DataChannel");
    pair.settle();
    assert_eq!(pair.received[1].len(), 2);
    assert!(pair.events[0].contains(&Event::Open(Path::Relay)));
    assert!(pair.events[0].contains(&Event::Mode(Mode::P2p)));
    // The channel dies: back to relay at once, unacked messages resent there.
    pair.ends[0]
        .send(pair.now, b"third".to_vec(), false)
        .unwrap();
    pair.pump();
    pair.p2p_event(P2pEvent::ChannelClosed);
    assert_eq!(pair.ends[0].mode(), Mode::Relay);
    pair.settle();
    assert_eq!(pair.received[1].last().unwrap(), b"third");
    assert_eq!(pair.received[1].len(), 3);
}

#[test]
fn relay_loss_is_repaired_by_the_rto() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10));
    for n in 0..5 {
        pair.ends[0]
            .send(pair.now, message(0, n, 10), false)
            .unwrap();
    }
    pair.pump();
    assert_eq!(pair.wire[0][1].len(), 5);
    pair.wire[0][1].pop_front(); // lost
    pair.settle();
    assert_eq!(pair.received[1].len(), 5);
    assert!(pair.ends[0].stats().retransmitted_frames >= 4);
}

#[test]
fn the_relay_window_is_bounded_in_frames_and_paced() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10));
    for n in 0..100 {
        pair.ends[0]
            .send(pair.now, message(0, n, 10), false)
            .unwrap();
    }
    pair.pump();
    assert_eq!(pair.wire[0][1].len(), 24, "24 frames in flight at most");
    let config = LinkConfig {
        relay_bytes_per_sec: 10_000,
        ..LinkConfig::default()
    };
    let mut slow = Link::new(config, pair.now, NonZeroU32::new(5).unwrap(), 5);
    slow.handle_timeout(pair.now + Duration::from_secs(10));
    let now = pair.now + Duration::from_secs(10);
    slow.send(now, vec![0; 20_000], true).unwrap();
    assert!(
        slow.poll_transmit(now).is_some(),
        "the first blob uses the burst"
    );
    assert!(
        slow.poll_transmit(now).is_none(),
        "the second waits for tokens"
    );
    // 16,497 bytes went out on a 9,000-byte burst: the next 3,747 wait 1.25 s.
    assert!(
        slow.poll_transmit(now + Duration::from_millis(1200))
            .is_none()
    );
    assert!(
        slow.poll_transmit(now + Duration::from_millis(1300))
            .is_some()
    );
}

#[test]
fn a_restarted_peer_gets_everything_not_acknowledged() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10));
    pair.ends[0].send(pair.now, b"one".to_vec(), false).unwrap();
    pair.settle();
    pair.ends[0].send(pair.now, b"two".to_vec(), false).unwrap();
    pair.pump();
    pair.wire[0][1].clear(); // lost with the old incarnation
    // End 1 restarts with a new epoch and falls back to relay.
    pair.ends[1] = link(pair.now, 3333, false);
    pair.received[1].clear();
    pair.advance(Duration::from_secs(10));
    pair.ends[1]
        .send(pair.now, b"hello again".to_vec(), false)
        .unwrap();
    pair.settle();
    assert_eq!(
        pair.received[1],
        vec![b"two".to_vec()],
        "renumbered from seq 1"
    );
    assert_eq!(pair.received[0], vec![b"hello again".to_vec()]);
    assert_eq!(pair.ends[0].remote_epoch(), Some(3333));
}

#[test]
fn close_is_delivered_after_everything_before_it() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10));
    pair.ends[0]
        .send(pair.now, b"last words".to_vec(), false)
        .unwrap();
    pair.pump();
    pair.ends[0].close(pair.now, CloseReason::Local);
    pair.pump();
    assert_eq!(
        pair.ends[0].send(pair.now, vec![], true),
        Err(SendError::LinkClosed)
    );
    // The CLOSE overtakes the data on another path: the close waits for the data.
    let close = pair.wire[0][1].pop_back().unwrap();
    pair.ends[1].handle_frame(pair.now, Path::P2p, &close);
    pair.pump();
    assert_eq!(pair.ends[1].mode(), Mode::Relay);
    pair.deliver(0, Path::Relay);
    assert_eq!(pair.received[1], vec![b"last words".to_vec()]);
    assert_eq!(pair.ends[1].mode(), Mode::Closed);
    assert_eq!(
        pair.events[1].last(),
        Some(&Event::Closed(CloseReason::RemoteClosed))
    );
}

#[test]
fn malformed_frames_are_counted_and_reported_once() {
    let now = Instant::now();
    let mut end = link(now, 1, true);
    end.handle_frame(now, Path::Relay, b"junk");
    end.handle_frame(now, Path::P2p, &[9; 18]);
    assert_eq!(end.stats().malformed_frames, 2);
    let errors: Vec<_> = std::iter::from_fn(|| end.poll_event()).collect();
    assert_eq!(errors.len(), 1);
    assert!(matches!(&errors[0], Event::Error(e) if e.code == ErrorCode::ProtocolError));
}

#[test]
fn our_own_frames_sent_back_are_never_delivered() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10)); // both on the relay
    pair.ends[0].send(pair.now, b"mine".to_vec(), true).unwrap();
    pair.pump();
    let first = pair.wire[0][1].front().cloned().expect("a relay frame");
    // The registry (or the peer) reflects alice's first frame (dst_epoch 0) back to her.
    pair.ends[0].handle_frame(pair.now, Path::Relay, &first);
    pair.pump();
    assert!(
        pair.received[0].is_empty(),
        "a reflected frame was delivered"
    );
    assert_eq!(pair.ends[0].stats().reflected_frames, 1);
    assert_eq!(pair.ends[0].stats().received_frames, 0, "not the peer's");
    // The real peer still gets it.
    while pair.deliver(0, Path::Relay) {}
    assert_eq!(pair.received[1], vec![b"mine".to_vec()]);
}

#[test]
fn a_resent_frame_is_heard_though_not_delivered_again() {
    let mut pair = Pair::new();
    pair.advance(Duration::from_secs(10)); // both on the relay
    pair.ends[0].send(pair.now, b"once".to_vec(), true).unwrap();
    pair.pump();
    let frame = pair.wire[0][1].front().cloned().expect("a relay frame");
    let before = pair.ends[1].stats().received_frames;
    pair.ends[1].handle_frame(pair.now, Path::Relay, &frame);
    pair.ends[1].handle_frame(pair.now, Path::Relay, &frame);
    pair.pump();
    assert_eq!(pair.ends[1].stats().received_frames, before + 2);
    assert_eq!(pair.received[1], vec![b"once".to_vec()]);
}

#[test]
fn a_refused_relay_keeps_the_link_connecting() {
    let now = Instant::now();
    let mut end = link(now, 1, true);
    end.set_relay_allowed(now, false);
    end.handle_timeout(now + Duration::from_secs(10));
    assert_eq!(end.mode(), Mode::Connecting);
    end.set_relay_allowed(now + Duration::from_secs(11), true);
    assert_eq!(end.mode(), Mode::Relay);
}

#[test]
fn p2p_writes_stop_above_the_high_water_mark() {
    let mut pair = Pair::new();
    pair.p2p_event(P2pEvent::ChannelOpen);
    pair.settle();
    assert_eq!(pair.ends[0].mode(), Mode::P2p);
    pair.ends[0].handle_p2p_event(pair.now, P2pEvent::BufferedAmount(2 << 20));
    pair.ends[0]
        .send(pair.now, b"wait".to_vec(), false)
        .unwrap();
    assert!(pair.ends[0].poll_transmit(pair.now).is_none());
    pair.ends[0].handle_p2p_event(pair.now, P2pEvent::BufferedAmount(0));
    assert!(pair.ends[0].poll_transmit(pair.now).is_some());
}

#[derive(Clone, Debug)]
enum Op {
    Send(usize, usize),
    Deliver(usize, Path),
    Lose(usize),
    Reorder(usize),
    Advance(u64),
    Open,
    Close,
    IceFailed,
}

fn op() -> impl Strategy<Value = Op> {
    let path = prop_oneof![Just(Path::P2p), Just(Path::Relay)];
    prop_oneof![
        4 => (0..2usize, prop_oneof![0..40usize, 16_000..40_000usize]).prop_map(|(s, l)| Op::Send(s, l)),
        8 => (0..2usize, path).prop_map(|(s, p)| Op::Deliver(s, p)),
        1 => (0..2usize).prop_map(Op::Lose),
        1 => (0..2usize).prop_map(Op::Reorder),
        3 => (1..3000u64).prop_map(Op::Advance),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
        1 => Just(Op::IceFailed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the interleaving of the two paths, losses and reordering on the relay and
    /// switches, every message is delivered exactly once, in order, in both directions.
    #[test]
    fn every_message_exactly_once_in_order(ops in proptest::collection::vec(op(), 1..300)) {
        let mut pair = Pair::new();
        let mut sent: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for op in ops {
            match op {
                Op::Send(side, len) => {
                    let data = message(side, sent[side].len(), len);
                    if pair.ends[side].send(pair.now, data.clone(), true).is_ok() {
                        sent[side].push(data);
                    }
                    pair.pump();
                }
                Op::Deliver(from, path) => {
                    pair.deliver(from, path);
                }
                Op::Lose(from) => {
                    pair.wire[from][1].pop_front();
                }
                Op::Reorder(from) => {
                    let relay = &mut pair.wire[from][1];
                    if relay.len() >= 2 {
                        relay.swap(0, 1);
                    }
                }
                Op::Advance(ms) => pair.advance(Duration::from_millis(ms)),
                Op::Open if !pair.channel_open => pair.p2p_event(P2pEvent::ChannelOpen),
                Op::Close if pair.channel_open => pair.p2p_event(P2pEvent::ChannelClosed),
                Op::IceFailed => pair.p2p_event(P2pEvent::Ice(IceState::Failed)),
                _ => {}
            }
        }
        pair.settle();
        prop_assert_eq!(&pair.received[1], &sent[0]);
        prop_assert_eq!(&pair.received[0], &sent[1]);
    }
}

#[test]
fn the_fuzz_seeds_run_clean() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/link_frames");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/corpus/link_frames") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        fuzzing::link_frames(&data);
        seeds += 1;
    }
    assert!(seeds >= 5);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, as frames to a link end on both paths, never panic.
    #[test]
    fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzzing::link_frames(&data);
    }
}
