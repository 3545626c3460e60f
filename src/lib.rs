//! turnpike: a self-hosted STUN/TURN relay.
//!
//! The crate has two kinds of modules (see `DESIGN.md`):
//! - the pure, sans-IO core in [`proto`]: the STUN codec, authentication, peer policy and the
//!   TURN state machine. It never touches a socket or reads a clock; time is passed in.
//! - the I/O layers ([`net`], [`service`]) that own sockets, threads and signals and feed the
//!   core.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod net;
pub mod proto;
pub mod service;
pub mod tls;
