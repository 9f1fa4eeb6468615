//! The hostile and careless part of the soak: consumers that stop reading,
//! and periodic floods of handshakes and deflate bombs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::Message;
use tether_protocol::Push;
use tokio::sync::watch;

use super::super::bombs;
use super::super::feed::Mode;
use super::Rng;
use crate::dial::Dialer;

/// The channel the slow consumers follow, fed fast enough that a consumer
/// that stops reading fills the kernel's buffers and then the channel's
/// stream within its stall.
pub(super) const SLOW_CHANNEL: &str = "soak:slow";
/// Payload bytes of each publication on [`SLOW_CHANNEL`]: small, so the
/// stream a lagging consumer holds (`outbound_queue` frames) swings the
/// server's memory by about a MiB, not by tens, and the memory trend stays
/// readable in a short run.
pub(super) const SLOW_SIZE: usize = 1 << 10;
/// Publications per second on [`SLOW_CHANNEL`].
pub(super) const SLOW_RATE: f64 = 200.0;
/// How long a slow consumer stops reading, a random time in this range: long
/// enough to fill the kernel's buffers and the channel's stream at
/// [`SLOW_RATE`]. Random, and started at random, so the consumers do not
/// swing the server's memory in step.
const STALL: (Duration, Duration) = (Duration::from_secs(20), Duration::from_secs(40));
/// Once it reads again, this much quiet means it caught up.
const QUIET: Duration = Duration::from_secs(1);
/// Handshakes opened at once in each flood, then dropped without a close.
const FLOOD_HANDSHAKES: usize = 200;
/// Deflate bombs in each flood.
const FLOOD_BOMBS: usize = 4;
/// What each bomb inflates to: four times `tether serve`'s message limit.
const BOMB_SIZE: usize = 4 << 20;

/// What the slow consumers went through.
#[derive(Debug, Default)]
pub(super) struct Slow {
    /// Times a consumer stopped reading.
    pub(super) stalls: u64,
    /// Stalls the server ended with a `disconnect` push or a close.
    pub(super) cut_off: u64,
    /// Stalls after which the consumer caught up without being cut off.
    pub(super) kept: u64,
    /// Connects or subscribes that failed.
    pub(super) failures: u64,
    /// Disconnect codes the server gave, by code.
    pub(super) codes: BTreeMap<u16, u64>,
}

/// Runs `n` consumers that subscribe to [`SLOW_CHANNEL`], stop reading for
/// [`STALL`], then read again until the server cuts them off or they catch up;
/// over and over until `stop`.
pub(super) async fn slow_consumers(
    dialer: Arc<Dialer>,
    n: usize,
    stop: watch::Receiver<bool>,
    timeout: Duration,
) -> Slow {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (dialer, mut stop) = (dialer.clone(), stop.clone());
        tasks.spawn(async move {
            let mut slow = Slow::default();
            let mut rng = Rng::new(1000 + i as u64);
            tokio::select! {
                () = tokio::time::sleep(rng.between(Duration::ZERO, STALL.0)) => {}
                _ = stop.changed() => return slow,
            }
            let mode = Mode::Tether {
                channel: SLOW_CHANNEL.to_owned(),
            };
            while !*stop.borrow() {
                let joined = async {
                    let mut ws = dialer.connect().await?;
                    mode.subscribe(&mut ws, timeout).await?;
                    Ok::<_, crate::BenchError>(ws)
                };
                let Ok(Ok(mut ws)) = tokio::time::timeout(timeout, joined).await else {
                    slow.failures += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                slow.stalls += 1;
                let stall = rng.between(STALL.0, STALL.1);
                tokio::select! {
                    () = tokio::time::sleep(stall) => {}
                    _ = stop.changed() => {}
                }
                // Read again: what the kernel held, then the server's verdict.
                let deadline = Instant::now() + STALL.1;
                let mut ended = None;
                while Instant::now() < deadline {
                    match tokio::time::timeout(QUIET, ws.recv()).await {
                        Err(_) => break, // caught up
                        Ok(Ok(Some(Message::Text(text)))) => {
                            if let Ok(Push::Disconnect { code, .. }) = serde_json::from_str(&text) {
                                ended = Some(code);
                            }
                        }
                        Ok(Ok(Some(Message::Close(frame)))) => {
                            ended = ended.or(frame.map(|f| f.code.0));
                        }
                        Ok(Ok(Some(_))) => {}
                        Ok(Ok(None)) | Ok(Err(_)) => {
                            ended = ended.or(Some(1006));
                            break;
                        }
                    }
                }
                match ended {
                    Some(code) => {
                        slow.cut_off += 1;
                        *slow.codes.entry(code).or_default() += 1;
                    }
                    None => {
                        slow.kept += 1;
                        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    }
                }
            }
            slow
        });
    }
    let mut total = Slow::default();
    while let Some(done) = tasks.join_next().await {
        let slow = done.expect("slow consumer task");
        total.stalls += slow.stalls;
        total.cut_off += slow.cut_off;
        total.kept += slow.kept;
        total.failures += slow.failures;
        for (code, count) in slow.codes {
            *total.codes.entry(code).or_default() += count;
        }
    }
    total
}

/// What the floods did and how the server answered.
#[derive(Debug, Default)]
pub(super) struct Floods {
    /// Floods run.
    pub(super) floods: u64,
    /// Flood handshakes completed (then dropped).
    pub(super) handshakes: u64,
    /// Flood handshakes refused or timed out.
    pub(super) refused_handshakes: u64,
    /// Bombs sent.
    pub(super) bombs: u64,
    /// Bombs answered by close code.
    pub(super) bomb_codes: BTreeMap<u16, u64>,
    /// Bombs with no close frame in time.
    pub(super) bomb_failures: u64,
}

impl Floods {
    /// Bombs answered with anything but 1009 (too big) or 1013 (no room in the
    /// buffer budget), or not answered at all.
    pub(super) fn wrong_answers(&self) -> u64 {
        let wrong: u64 = self
            .bomb_codes
            .iter()
            .filter(|(code, _)| !matches!(code, 1009 | 1013))
            .map(|(_, n)| n)
            .sum();
        wrong + self.bomb_failures
    }
}

/// Every `every` (the first after half of it), a flood: [`FLOOD_HANDSHAKES`]
/// connections at once, dropped without a close, and [`FLOOD_BOMBS`] deflate
/// bombs; until `stop`.
pub(super) async fn floods(
    dialer: Arc<Dialer>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
) -> Floods {
    let mut floods = Floods::default();
    let Ok(target) = bombs::Target::parse(dialer.url()) else {
        return floods;
    };
    let wire = Arc::new(bombs::bomb_frame(BOMB_SIZE));
    let mut next = Instant::now() + every / 2;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            _ = stop.changed() => return floods,
        }
        next += every;
        floods.floods += 1;
        let mut handshakes = tokio::task::JoinSet::new();
        for _ in 0..FLOOD_HANDSHAKES {
            let dialer = dialer.clone();
            handshakes.spawn(async move { tokio::time::timeout(timeout, dialer.connect()).await });
        }
        let mut bombs = tokio::task::JoinSet::new();
        for _ in 0..FLOOD_BOMBS {
            let (target, wire) = (target.clone(), wire.clone());
            bombs.spawn(async move {
                tokio::time::timeout(timeout, bombs::send_bomb(&target, &wire)).await
            });
        }
        // Held until all are in, then dropped together.
        let mut open = Vec::with_capacity(FLOOD_HANDSHAKES);
        while let Some(done) = handshakes.join_next().await {
            match done.expect("flood handshake task") {
                Ok(Ok(ws)) => {
                    floods.handshakes += 1;
                    open.push(ws);
                }
                _ => floods.refused_handshakes += 1,
            }
        }
        drop(open);
        while let Some(done) = bombs.join_next().await {
            floods.bombs += 1;
            match done.expect("bomb task") {
                Ok(Ok((code, _))) => *floods.bomb_codes.entry(code).or_default() += 1,
                _ => floods.bomb_failures += 1,
            }
        }
    }
}
