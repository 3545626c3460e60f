//! turnpike: a self-hosted STUN/TURN relay.
//!
//! The crate has two kinds of modules (see `DESIGN.md`):
//! - the pure, sans-IO core in [`proto`]: the STUN codec, authentication, peer policy and the
//!   TURN state machine. It never touches a socket or reads a clock; time is passed in.
//! - the I/O layers ([`net`], [`http`], [`service`]) that own sockets, threads and signals and
//!   feed the core; [`metrics`] reads the core's counters at scrape time; [`reload`] applies
//!   a new configuration file on SIGHUP.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod audit;
pub mod client;
pub mod config;
pub mod http;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod registry;
pub mod reload;
pub mod service;
pub mod tls;
