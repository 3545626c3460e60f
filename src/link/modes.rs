//! Modes and path switching (docs/link-protocol.md §4) with their timers: the fallback timer,
//! probes every second while the DataChannel is open and p2p is not proven, ICE restarts with
//! back-off while in relay; and the relay path's own clocks: the retransmission timeout
//! ([`Rto`]) and pacing ([`Pacer`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Rng;

/// The path a link end sends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No path yet: messages wait in the unacked buffer.
    Connecting,
    /// The WebRTC DataChannel.
    P2p,
    /// The registry's encrypted relay.
    Relay,
    /// Closed for good.
    Closed,
}

impl Mode {
    /// The name used on the wire and in events (`connecting`, `p2p`, `relay`, `closed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Connecting => "connecting",
            Mode::P2p => "p2p",
            Mode::Relay => "relay",
            Mode::Closed => "closed",
        }
    }
}

/// `RTCIceConnectionState`, as the WebRTC path reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IceState {
    /// Gathering, nothing checked yet.
    New,
    /// Checking candidate pairs.
    Checking,
    /// A pair works.
    Connected,
    /// Checks are over and a pair works.
    Completed,
    /// Connectivity was lost, may come back.
    Disconnected,
    /// No pair works.
    Failed,
    /// The peer connection is closed.
    Closed,
}

/// What the WebRTC path reports to the link core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2pEvent {
    /// The negotiated DataChannel is open.
    ChannelOpen,
    /// The DataChannel closed.
    ChannelClosed,
    /// The ICE connection state changed.
    Ice(IceState),
    /// The DataChannel's `bufferedAmount` now (after a send, or on `bufferedamountlow`).
    BufferedAmount(u64),
}

/// Delay before the first probe repeat, and between repeats.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The first ICE restart after entering relay.
pub const FIRST_RESTART: Duration = Duration::from_secs(5);
/// The longest delay between ICE restarts.
pub const MAX_RESTART: Duration = Duration::from_secs(60);
/// The first relay retransmission timeout.
pub const INITIAL_RTO: Duration = Duration::from_millis(1000);
/// The smallest relay retransmission timeout.
pub const MIN_RTO: Duration = Duration::from_millis(200);
/// The largest relay retransmission timeout.
pub const MAX_RTO: Duration = Duration::from_secs(10);

/// What the switcher asks of the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `PROBE(nonce)` on the DataChannel.
    Probe(u64),
    /// Ask the WebRTC path for `restartIce()`.
    RestartIce,
    /// The mode changed.
    Switched(Mode),
}

/// The switch table of §4.
#[derive(Debug)]
pub struct Switcher {
    mode: Mode,
    fallback_after: Duration,
    offerer: bool,
    relay_allowed: bool,
    channel_open: bool,
    ice: IceState,
    fallback_at: Option<Instant>,
    probe_at: Option<Instant>,
    probe_nonce: Option<u64>,
    restart_at: Option<Instant>,
    restart_step: u32,
    /// `forceRelay(true)`: send on the relay, neither probe nor restart ICE.
    forced: bool,
    actions: VecDeque<Action>,
}

impl Switcher {
    /// A link end in `connecting`, its fallback timer started at `now`.
    pub fn new(now: Instant, fallback_after: Duration, offerer: bool) -> Switcher {
        Switcher {
            mode: Mode::Connecting,
            fallback_after,
            offerer,
            relay_allowed: true,
            channel_open: false,
            ice: IceState::New,
            fallback_at: Some(now + fallback_after),
            probe_at: None,
            probe_nonce: None,
            restart_at: None,
            restart_step: 0,
            forced: false,
            actions: VecDeque::new(),
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The next action for the link.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Allows or refuses the relay path (key attestation, §5). Refused while in relay: back
    /// to `connecting`; allowed again while a fallback was due: relay.
    pub fn set_relay_allowed(&mut self, now: Instant, allowed: bool) {
        if self.relay_allowed == allowed {
            return;
        }
        self.relay_allowed = allowed;
        if !allowed && self.mode == Mode::Relay {
            self.switch(Mode::Connecting);
        } else if allowed && self.mode == Mode::Connecting && self.fallback_at.is_none() {
            self.fall_back(now);
        }
    }

    /// While `on`, the link sends on the relay and does not return to p2p (no probes, no ICE
    /// restarts); off: the usual rules (probing at once when the DataChannel is open, else ICE
    /// restarts with back-off). A product feature (the JS SDK's `forceRelay`), also used by
    /// tests to switch paths under traffic.
    pub fn force_relay(&mut self, now: Instant, on: bool, rng: &mut Rng) {
        self.forced = on;
        if self.mode == Mode::Closed {
            return;
        }
        if on {
            self.probe_nonce = None;
            self.probe_at = None;
            if self.mode != Mode::Relay {
                self.fall_back(now);
            }
        } else if self.channel_open && self.mode != Mode::P2p {
            self.start_probing(now, rng);
        } else if self.mode == Mode::Relay && self.restart_at.is_none() {
            self.restart_step = 0;
            self.restart_at = Some(now + restart_delay(0));
        }
    }

    /// True while forced onto the relay.
    pub fn forced(&self) -> bool {
        self.forced
    }

    /// The probe nonce outstanding, if any.
    pub fn probe_nonce(&self) -> Option<u64> {
        self.probe_nonce
    }

    /// A report from the WebRTC path.
    pub fn on_p2p_event(&mut self, now: Instant, event: P2pEvent, rng: &mut Rng) {
        match event {
            P2pEvent::ChannelOpen => {
                self.channel_open = true;
                if matches!(self.mode, Mode::Connecting | Mode::Relay) {
                    self.start_probing(now, rng);
                }
            }
            P2pEvent::ChannelClosed => {
                self.channel_open = false;
                self.probe_at = None;
                self.probe_nonce = None;
                if matches!(self.mode, Mode::Connecting | Mode::P2p) {
                    self.fall_back(now);
                }
            }
            P2pEvent::Ice(state) => {
                self.ice = state;
                match state {
                    IceState::Failed if matches!(self.mode, Mode::Connecting | Mode::P2p) => {
                        self.fall_back(now);
                    }
                    IceState::Disconnected if self.mode == Mode::P2p => {
                        self.actions.push_back(Action::RestartIce);
                        self.fallback_at = Some(now + self.fallback_after);
                    }
                    IceState::New | IceState::Checking
                        if self.mode == Mode::P2p && self.fallback_at.is_none() =>
                    {
                        // An ICE restart the other end started (its side saw the path fail,
                        // this one has not yet): the path is down until ICE is up again, so
                        // the same deadline as after our own `Disconnected`.
                        self.fallback_at = Some(now + self.fallback_after);
                    }
                    IceState::Connected | IceState::Completed if self.mode == Mode::P2p => {
                        self.fallback_at = None;
                    }
                    _ => {}
                }
            }
            P2pEvent::BufferedAmount(_) => {}
        }
    }

    /// A `PROBE_ACK` arrived on `on_p2p` (true: the DataChannel).
    pub fn on_probe_ack(&mut self, on_p2p: bool, nonce: u64) {
        let outstanding = self.probe_nonce == Some(nonce);
        if on_p2p
            && outstanding
            && !self.forced
            && matches!(self.mode, Mode::Connecting | Mode::Relay)
        {
            self.fallback_at = None;
            self.restart_at = None;
            self.probe_at = None;
            self.probe_nonce = None;
            self.switch(Mode::P2p);
        }
    }

    /// Closes for good: every timer stops.
    pub fn close(&mut self) {
        self.fallback_at = None;
        self.probe_at = None;
        self.restart_at = None;
        if self.mode != Mode::Closed {
            self.switch(Mode::Closed);
        }
    }

    /// The earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.fallback_at, self.probe_at, self.restart_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut Rng) {
        if self.fallback_at.is_some_and(|at| at <= now) {
            self.fallback_at = None;
            let ice_up = matches!(self.ice, IceState::Connected | IceState::Completed);
            match self.mode {
                Mode::Connecting => self.fall_back(now),
                Mode::P2p if !ice_up => self.fall_back(now),
                _ => {}
            }
        }
        if self.probe_at.is_some_and(|at| at <= now) {
            if self.channel_open
                && !self.forced
                && matches!(self.mode, Mode::Connecting | Mode::Relay)
            {
                let nonce = *self.probe_nonce.get_or_insert_with(|| rng.nonce());
                self.actions.push_back(Action::Probe(nonce));
                self.probe_at = Some(now + PROBE_INTERVAL);
            } else {
                self.probe_at = None;
            }
        }
        if self.restart_at.is_some_and(|at| at <= now) {
            if self.mode == Mode::Relay && self.forced {
                // Forced onto the relay: p2p is not wanted, no ICE restarts until released.
                self.restart_at = None;
            } else if self.mode == Mode::Relay {
                if self.offerer {
                    self.actions.push_back(Action::RestartIce);
                }
                self.restart_step = self.restart_step.saturating_add(1);
                self.restart_at = Some(now + restart_delay(self.restart_step));
            } else {
                self.restart_at = None;
            }
        }
    }

    fn start_probing(&mut self, now: Instant, rng: &mut Rng) {
        if self.forced {
            return;
        }
        let nonce = rng.nonce();
        self.probe_nonce = Some(nonce);
        self.actions.push_back(Action::Probe(nonce));
        self.probe_at = Some(now + PROBE_INTERVAL);
    }

    /// To relay (or, when the relay is refused, to `connecting`), with ICE restarts scheduled.
    fn fall_back(&mut self, now: Instant) {
        self.fallback_at = None;
        if !self.relay_allowed {
            if self.mode != Mode::Connecting {
                self.switch(Mode::Connecting);
            }
            return;
        }
        if self.mode == Mode::Relay || self.mode == Mode::Closed {
            return;
        }
        self.switch(Mode::Relay);
        self.restart_step = 0;
        self.restart_at = Some(now + restart_delay(0));
        if self.channel_open && !self.forced {
            // A new probing episode: answers to probes sent before the switch do not count.
            self.probe_nonce = None;
            self.probe_at = Some(now + PROBE_INTERVAL);
        }
    }

    fn switch(&mut self, mode: Mode) {
        self.mode = mode;
        self.actions.push_back(Action::Switched(mode));
    }
}

/// 5 s, then 10, 20, 40, 60, 60 ... s.
pub fn restart_delay(step: u32) -> Duration {
    FIRST_RESTART
        .saturating_mul(1u32 << step.min(5))
        .min(MAX_RESTART)
}

/// The relay's retransmission timeout (§3).
#[derive(Debug, Clone)]
pub struct Rto {
    srtt: Option<Duration>,
    rto: Duration,
}

impl Default for Rto {
    fn default() -> Self {
        Rto {
            srtt: None,
            rto: INITIAL_RTO,
        }
    }
}

impl Rto {
    /// The current timeout.
    pub fn current(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// A round trip measured on a frame acknowledged without a resend.
    pub fn on_sample(&mut self, rtt: Duration) {
        let srtt = match self.srtt {
            Some(srtt) => (srtt * 7 + rtt) / 8,
            None => rtt,
        };
        self.srtt = Some(srtt);
        self.rto = (srtt * 2).clamp(MIN_RTO, MAX_RTO);
    }

    /// A timeout fired: the next one is twice as long, up to 10 s.
    pub fn on_timeout(&mut self) {
        self.rto = (self.rto * 2).min(MAX_RTO);
    }
}

/// Paces relay blobs to a byte rate with one second of burst (the registry's token bucket).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Pacer {
    /// Paces to 90 % of `relay_bytes_per_sec` (at least 1 KiB/s).
    pub fn new(relay_bytes_per_sec: u64) -> Pacer {
        let rate = (relay_bytes_per_sec as f64 * 0.9).max(1024.0);
        Pacer {
            rate,
            tokens: rate,
            last: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        }
        self.last = Some(now);
    }

    /// True when `bytes` may go out at `now` (a blob larger than the burst goes out when the
    /// bucket is full).
    pub fn ready(&mut self, now: Instant, bytes: usize) -> bool {
        self.refill(now);
        self.tokens >= (bytes as f64).min(self.rate)
    }

    /// Charges `bytes` sent at `now`.
    pub fn consume(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// When `bytes` may go out.
    pub fn ready_at(&self, now: Instant, bytes: usize) -> Instant {
        let need = (bytes as f64).min(self.rate) - self.tokens;
        if need <= 0.0 {
            return now;
        }
        now + Duration::from_secs_f64(need / self.rate).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_back_off() {
        let delays: Vec<u64> = (0..8).map(|s| restart_delay(s).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60, 60, 60]);
    }

    #[test]
    fn rto_starts_at_one_second_clamps_and_doubles() {
        let mut rto = Rto::default();
        assert_eq!(rto.current(), INITIAL_RTO);
        rto.on_sample(Duration::from_millis(10));
        assert_eq!(rto.current(), MIN_RTO);
        rto.on_timeout();
        assert_eq!(rto.current(), Duration::from_millis(400));
        for _ in 0..10 {
            rto.on_timeout();
        }
        assert_eq!(rto.current(), MAX_RTO);
        let mut slow = Rto::default();
        slow.on_sample(Duration::from_secs(3));
        assert_eq!(slow.current(), Duration::from_secs(6));
    }

    #[test]
    fn pacing_holds_ninety_percent_of_the_rate() {
        let now = Instant::now();
        let mut pacer = Pacer::new(10_000);
        assert!(pacer.ready(now, 9_000));
        pacer.consume(now, 9_000);
        assert!(!pacer.ready(now, 100));
        let at = pacer.ready_at(now, 900);
        assert_eq!(at - now, Duration::from_millis(100));
        assert!(pacer.ready(at, 900));
    }

    #[test]
    fn forced_relay_holds_until_released_then_probes() {
        let now = Instant::now();
        let mut rng = Rng::new(7);
        let mut s = Switcher::new(now, Duration::from_secs(10), true);
        s.on_p2p_event(now, P2pEvent::ChannelOpen, &mut rng);
        let Some(Action::Probe(nonce)) = s.poll_action() else {
            panic!("no probe");
        };
        s.on_probe_ack(true, nonce);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::P2p)));
        s.force_relay(now, true, &mut rng);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::Relay)));
        // Neither probes nor ICE restarts while forced, however long it lasts.
        for i in 1..200 {
            s.handle_timeout(now + Duration::from_secs(i), &mut rng);
        }
        assert_eq!(s.poll_action(), None);
        s.on_probe_ack(true, nonce);
        assert_eq!(
            s.mode(),
            Mode::Relay,
            "an old answer does not end the force"
        );
        s.force_relay(now, false, &mut rng);
        let Some(Action::Probe(nonce)) = s.poll_action() else {
            panic!("released with the channel open: a probe at once");
        };
        s.on_probe_ack(true, nonce);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::P2p)));
    }

    #[test]
    fn fallback_probe_and_return() {
        let now = Instant::now();
        let mut rng = Rng::new(7);
        let mut s = Switcher::new(now, Duration::from_secs(10), true);
        s.handle_timeout(now + Duration::from_secs(10), &mut rng);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::Relay)));
        s.on_p2p_event(now, P2pEvent::ChannelOpen, &mut rng);
        let Some(Action::Probe(nonce)) = s.poll_action() else {
            panic!("no probe");
        };
        s.on_probe_ack(false, nonce);
        assert_eq!(s.mode(), Mode::Relay, "a PROBE_ACK on relay proves nothing");
        s.on_probe_ack(true, nonce ^ 1);
        assert_eq!(s.mode(), Mode::Relay, "a wrong nonce proves nothing");
        s.on_probe_ack(true, nonce);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::P2p)));
        s.on_p2p_event(now, P2pEvent::Ice(IceState::Disconnected), &mut rng);
        assert_eq!(s.poll_action(), Some(Action::RestartIce));
        s.handle_timeout(now + Duration::from_secs(10), &mut rng);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::Relay)));
    }

    /// An ICE restart the other end started reaches this end as `Checking` while in p2p (it
    /// never saw `Disconnected` itself): the same fallback deadline applies, and ICE coming
    /// back up in time cancels it.
    #[test]
    fn a_restart_from_the_other_end_arms_the_fallback() {
        let now = Instant::now();
        let mut rng = Rng::new(7);
        let mut s = Switcher::new(now, Duration::from_secs(10), true);
        s.on_p2p_event(now, P2pEvent::ChannelOpen, &mut rng);
        s.handle_timeout(now + Duration::from_secs(1), &mut rng);
        let nonce = loop {
            match s.poll_action() {
                Some(Action::Probe(nonce)) => break nonce,
                Some(_) => {}
                None => panic!("no probe"),
            }
        };
        s.on_probe_ack(true, nonce);
        assert_eq!(s.mode(), Mode::P2p);
        while s.poll_action().is_some() {}
        s.on_p2p_event(now, P2pEvent::Ice(IceState::Completed), &mut rng);
        assert_eq!(s.poll_timeout(), None);
        // Recovered in time: still p2p.
        s.on_p2p_event(now, P2pEvent::Ice(IceState::Checking), &mut rng);
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
        s.on_p2p_event(now, P2pEvent::Ice(IceState::Completed), &mut rng);
        assert_eq!(s.poll_timeout(), None);
        // Not recovered: the relay.
        let later = now + Duration::from_secs(20);
        s.on_p2p_event(later, P2pEvent::Ice(IceState::Checking), &mut rng);
        s.handle_timeout(later + Duration::from_secs(9), &mut rng);
        assert_eq!(s.mode(), Mode::P2p);
        s.handle_timeout(later + Duration::from_secs(10), &mut rng);
        assert_eq!(s.poll_action(), Some(Action::Switched(Mode::Relay)));
    }
}
