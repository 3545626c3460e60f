//! UDP listener sockets added while running. A wildcard UDP listener (`0.0.0.0`, `[::]`) is one
//! socket per address of the host, so that answers leave from the address each client sent to
//! (see [`listener_addresses`]). An address that appears after the start (DHCP, a VPN, a
//! failover IP moved to this host) gets its sockets at the next interface refresh, one per
//! worker (`SO_REUSEPORT`), handed over through each worker's [`ListenerInbox`].
//!
//! A socket whose address vanishes is kept: it receives nothing and costs one descriptor per
//! worker, and should the address come back, it serves again at once. Workers index listeners
//! by position, so keeping them keeps every allocation's listener valid.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::addr::listener_addresses;
use super::socket::{UdpOptions, bind_udp};

/// New listener sockets for one worker, taken at its next loop turn.
#[derive(Debug, Default)]
pub struct ListenerInbox {
    fresh: AtomicBool,
    sockets: Mutex<Vec<std::net::UdpSocket>>,
}

impl ListenerInbox {
    /// Posts a bound socket for the worker to adopt.
    pub fn post(&self, socket: std::net::UdpSocket) {
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.push(socket);
            self.fresh.store(true, Ordering::Release);
        }
    }

    /// The sockets posted since the last call: one atomic load when there are none.
    pub fn take(&self) -> Vec<std::net::UdpSocket> {
        if !self.fresh.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        self.sockets
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// The wildcard UDP listeners and the addresses bound for them so far.
#[derive(Debug)]
pub struct WildcardListeners {
    /// Wildcard listen addresses (with their port).
    wildcards: Vec<SocketAddr>,
    /// Every address a listener socket is bound to.
    bound: Mutex<Vec<SocketAddr>>,
    /// One inbox per worker.
    inboxes: Vec<Arc<ListenerInbox>>,
    buffer_bytes: usize,
}

impl WildcardListeners {
    /// `wildcards` as configured, `bound` the addresses bound at start, one inbox per worker.
    pub fn new(
        wildcards: Vec<SocketAddr>,
        bound: Vec<SocketAddr>,
        inboxes: Vec<Arc<ListenerInbox>>,
        buffer_bytes: usize,
    ) -> Self {
        WildcardListeners {
            wildcards: wildcards.into_iter().filter(|w| w.port() != 0).collect(),
            bound: Mutex::new(bound),
            inboxes,
            buffer_bytes,
        }
    }

    /// Binds sockets for the addresses in `interfaces` that no listener has yet (one per
    /// worker) and posts them to the workers. Returns true when it posted any (wake them).
    pub fn refresh(&self, interfaces: &[IpAddr]) -> bool {
        if self.wildcards.is_empty() || self.inboxes.is_empty() {
            return false;
        }
        let Ok(mut bound) = self.bound.lock() else {
            return false;
        };
        let mut posted = false;
        for wildcard in &self.wildcards {
            for addr in listener_addresses(*wildcard, interfaces) {
                if addr == *wildcard || bound.contains(&addr) {
                    continue;
                }
                let opts = UdpOptions {
                    reuse_port: true,
                    buffer_bytes: self.buffer_bytes,
                    dont_fragment: false,
                };
                let sockets: std::io::Result<Vec<_>> =
                    self.inboxes.iter().map(|_| bind_udp(addr, opts)).collect();
                match sockets {
                    Ok(sockets) => {
                        for (inbox, socket) in self.inboxes.iter().zip(sockets) {
                            inbox.post(socket);
                        }
                        bound.push(addr);
                        posted = true;
                        tracing::info!(%addr, listener = %wildcard, "new address on the host: the UDP listener now serves it");
                    }
                    // Still in duplicate address detection, say: tried again at the next refresh.
                    Err(error) => {
                        tracing::debug!(%addr, %error, "cannot bind a new address of the host yet")
                    }
                }
            }
        }
        posted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_address_gets_one_socket_per_worker_once() {
        let inboxes: Vec<Arc<ListenerInbox>> = (0..2).map(|_| Arc::default()).collect();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let wildcard = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
        let first = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        let listeners = WildcardListeners::new(vec![wildcard], vec![first], inboxes.clone(), 0);
        let host = [IpAddr::from([127, 0, 0, 1])];
        assert!(!listeners.refresh(&host), "nothing new");
        let host = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 9])];
        assert!(listeners.refresh(&host));
        for inbox in &inboxes {
            let got = inbox.take();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].local_addr().unwrap(), SocketAddr::new(host[1], port));
            assert!(inbox.take().is_empty());
        }
        assert!(!listeners.refresh(&host), "bound once");
        assert!(!listeners.refresh(&host[..1]), "a vanished address is kept");
    }
}
