//! Presence in Redis: who is subscribed to a channel, across every node.
//! Each entry expires unless the node holding the client refreshes it, so
//! the clients of a node that died leave within the expiry, and their
//! `leave` goes out to every node like a live one's (presence.lua).

use std::sync::Arc;
use std::time::Duration;

use redis::{Script, Value};

use super::channels::RedisChannels;
use crate::engine::EngineError;
use crate::protocol::PresenceEntry;

/// Presence of channels in one Redis.
#[derive(Debug, Clone)]
pub struct RedisPresence {
    channels: RedisChannels,
    script: Arc<Script>,
    ttl: Duration,
}

impl RedisPresence {
    /// Presence next to `channels`, entries lasting `ttl` unless refreshed.
    pub fn new(channels: RedisChannels, ttl: Duration) -> Self {
        Self {
            channels,
            script: Arc::new(Script::new(include_str!("presence.lua"))),
            ttl,
        }
    }

    async fn call(&self, channel: &str, op: &str, args: &[&str]) -> Result<Value, EngineError> {
        let keys = self.channels.keys(channel);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&keys.presence)
            .key(&keys.presence_expiry)
            .arg(op)
            .arg(self.ttl.as_millis() as u64)
            .arg(0)
            .arg(&keys.topic);
        for arg in args {
            invocation.arg(*arg);
        }
        self.channels.run(invocation).await
    }

    /// Adds (or refreshes) `entry`; a new one's join goes out.
    pub async fn add(&self, channel: &str, entry: &PresenceEntry) -> Result<(), EngineError> {
        let user = entry.user.as_deref().unwrap_or("");
        self.call(channel, "add", &[&entry.client, user])
            .await
            .map(drop)
    }

    /// Refreshes the entries this node holds on `channel`, putting back any
    /// that expired while it could not.
    pub async fn refresh(
        &self,
        channel: &str,
        entries: &[PresenceEntry],
    ) -> Result<(), EngineError> {
        let mut args = Vec::with_capacity(entries.len() * 2);
        for entry in entries {
            args.push(entry.client.as_str());
            args.push(entry.user.as_deref().unwrap_or(""));
        }
        self.call(channel, "refresh", &args).await.map(drop)
    }

    /// Removes `client`; its leave goes out if it was there.
    pub async fn remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        self.call(channel, "remove", &[client]).await.map(drop)
    }

    /// Who is present (after removing who expired), sorted by client id.
    pub async fn list(&self, channel: &str) -> Result<Vec<PresenceEntry>, EngineError> {
        let reply = self.call(channel, "list", &[]).await?;
        let pairs: Vec<(String, String)> =
            redis::from_redis_value(&reply).map_err(EngineError::unavailable)?;
        let mut entries: Vec<PresenceEntry> = pairs
            .into_iter()
            .map(|(client, user)| PresenceEntry {
                client,
                user: (!user.is_empty()).then_some(user),
            })
            .collect();
        entries.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(entries)
    }
}
