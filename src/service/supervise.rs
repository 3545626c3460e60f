//! The service's life once every listener is bound: signals, the systemd watchdog,
//! configuration reloads, and the graceful drain.
//!
//! - **SIGHUP** reloads the configuration ([`Reloader::reload`]), between `RELOADING=1` (with
//!   `MONOTONIC_USEC`, which systemd 253 and later require) and `READY=1`.
//! - **SIGTERM / SIGINT** start the drain: `/readyz` answers 503, systemd hears `STOPPING=1`
//!   (and `EXTEND_TIMEOUT_USEC` covering the drain), registry WebSockets are closed with 1001
//!   and new ones refused, and every core refuses new allocations (508) while it keeps serving
//!   the ones it has. The drain ends when no allocation is left or after
//!   `server.drain_timeout_secs`, whichever comes first; a second SIGTERM or SIGINT ends it at
//!   once. Then the caller stops the workers.

use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Running;
use crate::http::Health;
use crate::registry::RegistryState;
use crate::reload::Reloader;

/// How often the host's interface addresses are read again (peers there are refused).
const INTERFACES_REFRESH: Duration = Duration::from_secs(10);
/// How often the drain looks at how many allocations are left.
const DRAIN_CHECK: Duration = Duration::from_millis(200);
/// What systemd is asked for beyond the drain itself: the workers closing their allocations
/// and the runtime winding down.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// SIGHUP's handler, installed before anything is bound: its default action would end the
/// process, and systemd may send it as soon as it heard READY=1, which `start` sends before
/// [`supervise`] runs. A SIGHUP that comes during start-up waits for [`supervise`].
/// (SIGTERM and SIGINT keep their default action, ending the process, until then: a stop
/// during start-up, say while `server.bind_retry_secs` waits for an address, is immediate.)
pub(super) struct Signals {
    hup: Signal,
}

impl Signals {
    /// Installs the handler (inside the tokio runtime).
    pub(super) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Serves signals until it is time to stop: after a drain, or at once when there is nothing to
/// drain, `server.drain_timeout_secs` is 0, or a second stop signal arrives.
pub(super) async fn supervise(
    signals: Signals,
    running: &Running,
    reloader: &mut Reloader,
    health: &Health,
    registry: Option<&RegistryState>,
) {
    let mut hup = signals.hup;
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let period = if watchdog {
        Duration::from_micros(watchdog_usec / 2)
    } else {
        Duration::from_secs(3600)
    };
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    let mut drain_check = tokio::time::interval(DRAIN_CHECK);
    let mut interfaces = tokio::time::interval(INTERFACES_REFRESH);
    interfaces.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set once the drain started: when it started, and when it must end.
    let mut draining: Option<(Instant, Instant)> = None;
    loop {
        let stop_signal = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                reload(running, reloader, draining.is_some());
                continue;
            }
            _ = tick.tick() => {
                if watchdog && running.workers_alive(period * 2) {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                continue;
            }
            _ = interfaces.tick() => {
                let addresses = crate::net::addr::interface_addresses();
                if !addresses.is_empty() {
                    running.refresh_listeners(&addresses);
                    if reloader.set_interfaces(addresses) {
                        running.wake_workers();
                    }
                }
                continue;
            }
            _ = drain_check.tick(), if draining.is_some() => {
                let (started, deadline) = draining.expect("checked by the guard");
                let left = running.live_allocations();
                if left == 0 {
                    tracing::info!(
                        took_ms = started.elapsed().as_millis() as u64,
                        "drain complete: no allocation left; stopping"
                    );
                    return;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        allocations = left,
                        "drain timeout (server.drain_timeout_secs) reached with {left} \
                         allocations left; stopping, which ends them"
                    );
                    return;
                }
                continue;
            }
        };
        if draining.is_some() {
            tracing::info!(
                allocations = running.live_allocations(),
                "{stop_signal} during the drain: stopping now"
            );
            return;
        }
        let timeout = Duration::from_secs(reloader.config().server.drain_timeout_secs);
        start_drain(running, health, registry, timeout);
        let left = running.live_allocations();
        if timeout.is_zero() {
            tracing::info!(
                allocations = left,
                "{stop_signal}: shutting down at once (server.drain_timeout_secs = 0)"
            );
            return;
        }
        if left == 0 {
            tracing::info!("{stop_signal}: no allocation to drain; shutting down");
            return;
        }
        tracing::info!(
            allocations = left,
            timeout_secs = timeout.as_secs(),
            "{stop_signal}: draining: {left} allocations left; new allocations are refused; \
             stopping when the last one ends or after {}s (send {stop_signal} again to stop now)",
            timeout.as_secs()
        );
        let now = Instant::now();
        draining = Some((now, now + timeout));
        drain_check.reset();
    }
}

/// Reloads the configuration; tells systemd about it unless the server is stopping (systemd
/// runs no reload then, and READY=1 would contradict STOPPING=1).
fn reload(running: &Running, reloader: &mut Reloader, draining: bool) {
    if !draining {
        notify_reloading();
    }
    // The outcome is logged and counted by the reloader; either way the server runs on.
    let _ = reloader.reload();
    running.wake_workers();
    if !draining {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    }
}

/// `RELOADING=1` with `MONOTONIC_USEC=` in the same message: systemd 253 and later require the
/// timestamp for `Type=notify-reload` (and accept it for `Type=notify`); older ones ignore it.
fn notify_reloading() {
    use sd_notify::NotifyState;
    let sent = match NotifyState::monotonic_usec_now() {
        Ok(now) => sd_notify::notify(false, &[NotifyState::Reloading, now]),
        Err(_) => sd_notify::notify(false, &[NotifyState::Reloading]),
    };
    if let Err(error) = sent {
        tracing::debug!(%error, "cannot notify systemd of the reload");
    }
}

/// Everything that happens once, when the drain starts.
fn start_drain(
    running: &Running,
    health: &Health,
    registry: Option<&RegistryState>,
    timeout: Duration,
) {
    // The cores first, so that whoever sees /readyz turn 503 also finds Allocate refused.
    running.start_draining();
    health.set_draining(true);
    // systemd counts TimeoutStopSec from here; ask for the drain and a margin, in case the
    // unit's timeout is shorter than server.drain_timeout_secs. (u32 microseconds: at most
    // about 71 minutes, more than the longest drain allowed.)
    let extend = u32::try_from((timeout + STOP_MARGIN).as_micros()).unwrap_or(u32::MAX);
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::ExtendTimeoutUsec(extend),
        ],
    );
    if let Some(registry) = registry {
        // Signaling clients reconnect elsewhere at once; new upgrades are refused (503).
        registry.shutdown();
    }
}
