//! Clients that drop their connection at random and come back with `recover`,
//! and the publisher they follow. Each keeps a ledger of the offsets it was
//! given; at the end every client must hold every publication from its first
//! subscribe to the last one published, each exactly once.

use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tether::Message;
use tether_protocol::{Command, Published, Push, Reply, Request, StreamPosition, Subscribed};
use tokio::sync::watch;

use super::Rng;
use crate::dial::{Connection, Dialer};
use crate::error::{BenchError, Result};

/// The channel the resuming clients follow.
pub(super) const CHANNEL: &str = "soak:resume";
/// How long a client stays connected before it drops: a random time in this range.
const STAY: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(20));
/// How long it stays away before it comes back: a random time up to this.
const AWAY: Duration = Duration::from_secs(1);
/// How long the clients get, once publishing stops, to reach the last offset.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The offsets one client was given, counted.
#[derive(Debug, Default)]
struct Ledger {
    /// The newest offset when the client first subscribed: it is owed every
    /// publication after it.
    start: u64,
    /// Times each offset after `start` arrived (index 0 is `start + 1`).
    seen: Vec<u8>,
    /// Offsets at or before `start` that arrived anyway.
    early: u64,
}

impl Ledger {
    fn record(&mut self, offset: u64) {
        let Some(index) = offset.checked_sub(self.start + 1) else {
            self.early += 1;
            return;
        };
        let index = index as usize;
        if self.seen.len() <= index {
            self.seen.resize(index + 1, 0);
        }
        self.seen[index] = self.seen[index].saturating_add(1);
    }

    /// (missing, duplicated) publications up to `last`.
    fn check(&self, last: u64) -> (u64, u64) {
        let owed = last.saturating_sub(self.start) as usize;
        let missing = (0..owed)
            .filter(|&i| self.seen.get(i).copied().unwrap_or(0) == 0)
            .count() as u64;
        let duplicated = self
            .seen
            .iter()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum::<u64>()
            + self.early
            + self.seen.len().saturating_sub(owed) as u64;
        (missing, duplicated)
    }
}

/// What the resuming clients did and got, added up.
#[derive(Debug, Default)]
pub(super) struct Resumed {
    /// Clients that finished with a complete ledger.
    pub(super) complete: u64,
    /// Publications owed and never received, over all clients.
    pub(super) missing: u64,
    /// Publications received more than once (or before the client's start).
    pub(super) duplicated: u64,
    /// Connections opened (the first and every return).
    pub(super) sessions: u64,
    /// Returns whose subscribe reply said `recovered: true`.
    pub(super) recovered: u64,
    /// Returns the server could not recover (`recovered: false`, a new epoch).
    pub(super) unrecovered: u64,
    /// Connections the client dropped without a close frame.
    pub(super) dropped: u64,
    /// Connections the client closed politely.
    pub(super) closed: u64,
    /// Connections the server ended (a `disconnect` push or a close).
    pub(super) ended_by_server: u64,
    /// Connects or subscribes that failed (retried).
    pub(super) failures: u64,
    /// Clients that never reached the last offset.
    pub(super) stuck: u64,
}

impl Resumed {
    fn add(&mut self, client: Client) {
        let last = client.last;
        let (missing, duplicated) = client.ledger.check(last);
        let reached = client.position.as_ref().is_some_and(|p| p.offset >= last);
        self.complete += u64::from(reached && missing == 0 && duplicated == 0);
        self.stuck += u64::from(!reached);
        self.missing += missing;
        self.duplicated += duplicated;
        self.sessions += client.sessions;
        self.recovered += client.recovered;
        self.unrecovered += client.unrecovered;
        self.dropped += client.dropped;
        self.closed += client.closed;
        self.ended_by_server += client.ended_by_server;
        self.failures += client.failures;
    }
}

/// One resuming client's state across its connections.
#[derive(Debug)]
struct Client {
    ledger: Ledger,
    position: Option<StreamPosition>,
    /// The last offset published, once known.
    last: u64,
    sessions: u64,
    recovered: u64,
    unrecovered: u64,
    dropped: u64,
    closed: u64,
    ended_by_server: u64,
    failures: u64,
}

/// Why a connection ended.
enum Ended {
    /// The client left on purpose (its stay ran out) and will come back.
    Left,
    /// The server ended it, or it failed; the client comes back.
    Lost,
    /// The client holds the last offset: done.
    Done,
}

/// Runs `n` resuming clients until the last offset (sent on `last` once the
/// publisher is done) is in every ledger, or [`CATCH_UP`] after it is known.
pub(super) async fn clients(
    dialer: std::sync::Arc<Dialer>,
    n: usize,
    last: watch::Receiver<Option<u64>>,
    timeout: Duration,
) -> Resumed {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (dialer, last) = (dialer.clone(), last.clone());
        tasks.spawn(async move { run_client(&dialer, i as u64, last, timeout).await });
    }
    let mut resumed = Resumed::default();
    while let Some(done) = tasks.join_next().await {
        resumed.add(done.expect("resuming client task"));
    }
    resumed
}

async fn run_client(
    dialer: &Dialer,
    index: u64,
    mut last: watch::Receiver<Option<u64>>,
    timeout: Duration,
) -> Client {
    let mut rng = Rng::new(index);
    let mut client = Client {
        ledger: Ledger::default(),
        position: None,
        last: 0,
        sessions: 0,
        recovered: 0,
        unrecovered: 0,
        dropped: 0,
        closed: 0,
        ended_by_server: 0,
        failures: 0,
    };
    let mut give_up: Option<Instant> = None;
    loop {
        if let Some(offset) = *last.borrow_and_update() {
            client.last = offset;
            give_up.get_or_insert_with(|| Instant::now() + CATCH_UP);
        }
        if client.reached() || give_up.is_some_and(|at| Instant::now() >= at) {
            return client;
        }
        let ws = match tokio::time::timeout(timeout, dialer.connect()).await {
            Ok(Ok(ws)) => ws,
            _ => {
                client.failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        client.sessions += 1;
        let ws = match client.subscribe(ws, timeout).await {
            Ok(ws) => ws,
            Err(_) => {
                client.failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let stay = rng.between(STAY.0, STAY.1);
        match client.follow(ws, &mut last, stay, &mut rng).await {
            Ended::Done => return client,
            Ended::Left | Ended::Lost => {}
        }
        tokio::time::sleep(rng.between(Duration::ZERO, AWAY)).await;
    }
}

impl Client {
    fn reached(&self) -> bool {
        self.last > 0
            && self
                .position
                .as_ref()
                .is_some_and(|p| p.offset >= self.last)
    }

    /// Subscribes, recovering from the position reached if there is one, and
    /// records what the reply brings.
    async fn subscribe(&mut self, mut ws: Connection, timeout: Duration) -> Result<Connection> {
        let request = Request::new(
            1,
            Command::Subscribe {
                channel: CHANNEL.to_owned(),
                recover: self.position.clone(),
            },
        );
        ws.send(request.to_json()).await?;
        let reply = tokio::time::timeout(timeout, async {
            loop {
                match ws.recv().await? {
                    Some(Message::Text(text)) if text.starts_with("{\"id\":") => {
                        let reply: Reply<Subscribed> = serde_json::from_str(&text)
                            .map_err(|e| BenchError::Protocol(e.to_string()))?;
                        return reply
                            .into_result()
                            .map_err(|e| BenchError::Protocol(e.to_string()));
                    }
                    Some(_) => {}
                    None => return Err(BenchError::Protocol("closed while subscribing".into())),
                }
            }
        })
        .await
        .map_err(|_| BenchError::Protocol("no subscribe reply in time".into()))??;
        match &self.position {
            None => self.ledger.start = reply.offset,
            Some(at) if reply.recovered == Some(true) && *reply.epoch == *at.epoch => {
                self.recovered += 1;
            }
            Some(_) => self.unrecovered += 1,
        }
        let mut offset = self.position.as_ref().map_or(reply.offset, |p| p.offset);
        for publication in &reply.publications {
            self.ledger.record(publication.offset);
            offset = offset.max(publication.offset);
        }
        if reply.recovered == Some(false) {
            // Whatever was lost is counted as missing at the end; carry on
            // from where the server stands.
            offset = offset.max(reply.offset);
        }
        self.position = Some(StreamPosition {
            offset,
            epoch: reply.epoch.to_string(),
        });
        Ok(ws)
    }

    /// Reads publications until the stay is over (then drops or closes the
    /// connection), the server ends it, or the last offset is in.
    async fn follow(
        &mut self,
        mut ws: Connection,
        last: &mut watch::Receiver<Option<u64>>,
        stay: Duration,
        rng: &mut Rng,
    ) -> Ended {
        let leave = tokio::time::sleep(stay);
        tokio::pin!(leave);
        let mut staying = true;
        loop {
            if self.reached() {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return Ended::Done;
            }
            tokio::select! {
                received = ws.recv() => match received {
                    Ok(Some(Message::Text(text))) => match serde_json::from_str::<Push>(&text) {
                        Ok(Push::Publication { offset, .. }) => {
                            self.ledger.record(offset);
                            if let Some(position) = &mut self.position {
                                position.offset = position.offset.max(offset);
                            }
                        }
                        Ok(Push::Disconnect { .. }) => {
                            self.ended_by_server += 1;
                            return Ended::Lost;
                        }
                        _ => {}
                    },
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        self.ended_by_server += 1;
                        return Ended::Lost;
                    }
                },
                () = &mut leave, if staying => {
                    if rng.below(2) == 0 {
                        // Gone without a word, as a phone that loses its signal.
                        self.dropped += 1;
                        drop(ws);
                    } else {
                        self.closed += 1;
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    }
                    return Ended::Left;
                }
                changed = last.changed() => {
                    if changed.is_ok() {
                        if let Some(offset) = *last.borrow_and_update() {
                            self.last = offset;
                            // Publishing is over: stay until the last offset is in.
                            staying = false;
                        }
                    } else {
                        staying = false;
                    }
                }
            }
        }
    }
}

/// What the resume channel's publisher sent.
#[derive(Debug, Default)]
pub(super) struct Publishing {
    /// Publications sent.
    pub(super) sent: u64,
    /// Publications acknowledged with an offset.
    pub(super) acked: u64,
    /// The highest offset acknowledged: what every client is owed up to.
    pub(super) last_offset: u64,
    /// Publications refused with an error reply.
    pub(super) refused: u64,
}

/// Publishes `{"n": N}` on [`CHANNEL`] at `rate` per second until `deadline`,
/// then waits for every acknowledgement.
pub(super) async fn publish(
    dialer: &Dialer,
    rate: f64,
    deadline: Instant,
    timeout: Duration,
) -> Result<Publishing> {
    let ws = dialer.connect().await?;
    let (mut reader, writer) = ws.split();
    let (acks_tx, mut acks) = watch::channel((0u64, 0u64, 0u64));
    let reading = tokio::spawn(async move {
        let (mut acked, mut last, mut refused) = (0, 0, 0);
        while let Ok(Some(message)) = reader.recv().await {
            let Message::Text(text) = message else {
                continue;
            };
            if let Ok(reply) = serde_json::from_str::<Reply<Published>>(&text) {
                match reply.into_result() {
                    Ok(published) => {
                        acked += 1;
                        last = u64::max(last, published.offset);
                    }
                    Err(_) => refused += 1,
                }
                let _ = acks_tx.send((acked, last, refused));
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        ticker.tick().await;
        sent += 1;
        let data = RawValue::from_string(format!("{{\"n\":{sent}}}")).expect("valid JSON");
        let command = Command::Publish {
            channel: CHANNEL.to_owned(),
            data,
            idempotency_key: None,
            key: None,
        };
        writer.send(Request::new(sent, command).to_json()).await?;
    }
    let answered = tokio::time::timeout(
        timeout,
        acks.wait_for(|&(acked, _, refused)| acked + refused >= sent),
    )
    .await
    .is_ok_and(|waited| waited.is_ok());
    let (acked, last_offset, refused) = *acks.borrow();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.close(None)).await;
    reading.abort();
    if !answered {
        return Err(BenchError::Protocol(format!(
            "{CHANNEL}: {} of {sent} publications answered",
            acked + refused
        )));
    }
    Ok(Publishing {
        sent,
        acked,
        last_offset,
        refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_finds_gaps_and_repeats() {
        let mut ledger = Ledger {
            start: 10,
            ..Ledger::default()
        };
        for offset in [11, 12, 14, 14, 15, 9] {
            ledger.record(offset);
        }
        assert_eq!(ledger.check(15), (1, 2), "13 missing; 14 twice and 9 early");
        assert_eq!(ledger.check(16), (2, 2), "16 owed too");
        let mut whole = Ledger::default();
        (1..=5).for_each(|offset| whole.record(offset));
        assert_eq!(whole.check(5), (0, 0));
    }
}
