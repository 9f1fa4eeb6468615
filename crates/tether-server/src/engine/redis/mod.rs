//! Channels' shared state in Redis, for many `tether serve` nodes acting as
//! one (issue: clustering). What is here so far: the keys ([`keys`]), the
//! atomic publish and consistent history read ([`channels`]), and a node's
//! gap-checked subscription to the channels it serves ([`follower`]),
//! presence with expiry ([`presence`]), the [`RedisEngine`] on them, and the
//! nodes' messages to each other ([`mesh`]).
//!
//! Redis holds, per channel (keys sharing one hash tag): a hash with its
//! epoch and newest offset, a stream of its retained publications (capped
//! at the history size, expiring with the history TTL), and one key per
//! idempotency key (expiring with the window). A publish is one Lua script:
//! offsets are strictly increasing and gap-free whichever node publishes.

pub mod channels;
pub mod engine;
pub mod follower;
pub mod keys;
pub mod mesh;
pub mod metrics;
pub mod presence;

pub use channels::{RedisChannels, RedisSettings};
pub use engine::RedisEngine;
pub use follower::Follower;
pub use keys::{ChannelKeys, Heard, Wire};
pub use mesh::RedisMesh;
pub use metrics::RedisMetrics;
pub use presence::RedisPresence;
