//! Tokens: fetched in the background before the current one expires, sent
//! on the same connection, retried with backoff when fetching fails.

use tether_protocol::Command;
use tokio::time::Instant;

use super::{Actor, Fetched, Internal, Link};
use crate::backoff::backoff;
use crate::token;

impl Actor {
    pub(super) fn schedule_refresh(&mut self, link: &mut Link) {
        self.refresh_failures = 0;
        if self.config.get_token.is_none() {
            return;
        }
        let Some(left) = self.token.as_deref().and_then(token::lifetime) else {
            return;
        };
        let margin = self.config.token_refresh_margin.min(left / 2);
        link.refresh_at = Some(Instant::now() + left.saturating_sub(margin));
    }

    /// Fetches a token in the background; the answer comes back through `tokens`.
    pub(super) fn fetch_token(&mut self) {
        let Some(get) = self.config.get_token.clone() else {
            return;
        };
        let answer = self.tokens.0.clone();
        tokio::spawn(async move {
            let _ = answer.send(get().await);
        });
    }

    pub(super) fn refreshed(&mut self, link: &mut Link, token: Option<Fetched>) {
        match token {
            Some(Ok(token)) => {
                self.token = Some(token.clone());
                self.send_internal(
                    link,
                    Internal::Refresh,
                    Command::Connect { token: Some(token) },
                );
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "getting a token failed; retrying");
                let (min, max) = (
                    self.config.min_reconnect_delay,
                    self.config.max_reconnect_delay,
                );
                let delay = backoff(self.refresh_failures, min, max, &mut self.rng);
                self.refresh_failures += 1;
                link.refresh_at = Some(Instant::now() + delay);
            }
            None => {}
        }
    }
}
