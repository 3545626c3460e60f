//! The I/O layer: sockets and worker threads that feed the sans-IO core in [`crate::proto`].
//!
//! UDP runs one worker thread per core (DESIGN §2): each has its own `SO_REUSEPORT` listener
//! socket per listen address, its own relay sockets, and its own [`crate::proto::server::Server`]
//! holding the allocations it created, so nothing on the packet path is shared or locked.
//! Configuration reloads and the start of a drain reach every core through [`live`].

pub mod addr;
pub mod admin;
pub mod batch;
mod client_batch;
pub mod listeners;
pub mod live;
pub mod ports;
pub mod relay;
mod send_batch;
pub mod shortcut;
pub mod socket;
pub mod stream;
pub mod udp;
#[cfg(feature = "xdp")]
pub mod xdp;
