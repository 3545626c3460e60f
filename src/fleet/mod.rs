//! A stateless TURN fleet: several turnpike nodes behind one name, sharing nothing but
//! configuration (secrets, `auth.nonce_key`, realm) and, with `[cluster] redis_url`, a Redis
//! where each node publishes its load.
//!
//! - [`load`]: what a node publishes ([`NodeLoad`]) and the pure choices made from it: the
//!   order of the `iceServers` nodes (least loaded first, draining ones left out) and the
//!   alternates a draining node sends new Allocates to (300 Try Alternate).
//! - [`view`]: what this node knows of the fleet ([`Fleet`]): its own load and the other
//!   nodes' last records, read by the ICE-servers endpoint, the registry's `ice_servers` and
//!   `/metrics`.
//! - [`setup`]: the view of this node from its configuration.
//! - [`publish`]: the task that publishes this node's load to Redis with a TTL, reads the
//!   others', and hands the alternates to the cores; with Redis down it keeps the local node
//!   only and says so (`turnpike_fleet_redis_up`).
//!
//! Redis keys (prefix `turnpike:fleet:`): `node:ID` holds a node's JSON record and expires
//! after `fleet.load_ttl_secs` unless refreshed; the sorted set `nodes` lists node ids by the
//! time their record expires, so a reader finds the live ones without a SCAN.

pub mod load;
pub mod publish;
pub mod setup;
pub mod view;

pub use load::NodeLoad;
pub use view::Fleet;
