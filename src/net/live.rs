//! What the service changes while the server runs (a configuration reload, the start of a
//! drain), delivered to every core without a lock on the packet path.
//!
//! The service publishes new [`Settings`] or the draining flag here and bumps a generation
//! counter. Each core's I/O loop (a UDP worker's event loop, a TCP/TLS connection's task) keeps
//! the generation it last saw and calls [`CoreUpdates::sync`] once per loop turn, before it
//! handles what it read: one atomic load when nothing changed. When something did, the core gets
//! the new settings through [`Server::set_settings`] and the flag through
//! [`Server::set_draining`], so the core itself stays sans-IO. The service wakes the UDP workers
//! after publishing, so a sleeping worker picks the change up at once; a connection task picks
//! it up before it handles its next message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::proto::alternate::Alternates;
use crate::proto::server::{Server, Settings};

/// The settings and the draining flag every core follows.
pub struct CoreUpdates {
    /// Bumped after every change; starts at 1, so a core that starts with 0 syncs at once.
    generation: AtomicU64,
    settings: ArcSwap<Settings>,
    draining: AtomicBool,
    /// Where a draining core sends new allocations (300 Try Alternate).
    alternates: ArcSwap<Alternates>,
}

impl std::fmt::Debug for CoreUpdates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreUpdates")
            .field("generation", &self.generation)
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl CoreUpdates {
    /// Updates that start with `settings`, not draining.
    pub fn new(settings: Arc<Settings>) -> CoreUpdates {
        CoreUpdates {
            generation: AtomicU64::new(1),
            settings: ArcSwap::new(settings),
            draining: AtomicBool::new(false),
            alternates: ArcSwap::default(),
        }
    }

    /// The settings in force (for a core being created).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// True once [`CoreUpdates::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Makes `settings` the settings of every core (each picks them up at its next loop turn).
    pub fn publish(&self, settings: Arc<Settings>) {
        self.settings.store(settings);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The alternates every core sends new allocations to while draining.
    pub fn alternates(&self) -> Arc<Alternates> {
        self.alternates.load_full()
    }

    /// Makes `alternates` the list every core uses while draining; a list equal to the one in
    /// force changes nothing (no generation bump, so the cores are not disturbed).
    pub fn publish_alternates(&self, alternates: Alternates) -> bool {
        if **self.alternates.load() == alternates {
            return false;
        }
        self.alternates.store(Arc::new(alternates));
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Tells every core to refuse new allocations from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Brings `core` up to date when something was published since generation `seen` (start
    /// with 0), and records the generation applied. One atomic load when nothing changed.
    #[inline]
    pub fn sync(&self, core: &mut Server, seen: &mut u64) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != *seen {
            *seen = generation;
            self.apply(core);
        }
    }

    #[cold]
    fn apply(&self, core: &mut Server) {
        core.set_settings(self.settings.load_full());
        core.set_draining(self.draining.load(Ordering::Acquire));
        core.set_alternates(self.alternates.load_full());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Instant;

    use crate::proto::nonce::NonceKey;
    use crate::proto::policy::PeerPolicy;
    use crate::proto::server::{Authenticator, Limits, Shared};

    fn settings(realm: &str) -> Arc<Settings> {
        Arc::new(Settings {
            auth: Authenticator::new(
                realm.into(),
                vec![b"s".to_vec()],
                &HashMap::new(),
                NonceKey::new([1; 32], 600),
            ),
            policy: PeerPolicy::new(vec![], vec![]),
            own_relay_ips: vec![],
            relay_ports: (49152, 65535),
            own_addresses: vec![],
            tcp_allocations: false,
            limits: Limits::default(),
            software: None,
            families: [true, false],
        })
    }

    #[test]
    fn a_core_follows_what_is_published_once_per_change() {
        let first = settings("one");
        let updates = CoreUpdates::new(first.clone());
        let mut core = Server::with_shared_settings(
            updates.settings(),
            Arc::new(Shared::new(1, 1)),
            Instant::now(),
            Arc::new(crate::proto::server::Stats::single_writer()),
        );
        let mut seen = 0;
        updates.sync(&mut core, &mut seen);
        assert_eq!(seen, 1);
        assert!(Arc::ptr_eq(core.settings(), &first));
        assert!(!core.is_draining());

        let second = settings("two");
        updates.publish(second.clone());
        updates.sync(&mut core, &mut seen);
        assert!(Arc::ptr_eq(core.settings(), &second));
        assert_eq!(core.settings().auth.realm(), "two");

        updates.start_draining();
        assert!(updates.is_draining());
        updates.sync(&mut core, &mut seen);
        assert!(core.is_draining());
        assert_eq!(seen, 3);
        // Nothing new: nothing happens (the core keeps what it has).
        core.set_draining(false);
        updates.sync(&mut core, &mut seen);
        assert!(!core.is_draining());
    }
}
