//! The process-wide buffer budget under attack, on the real `tether echo`,
//! whose budget holds only a few messages at the limit. First fifty
//! permessage-deflate bombs and fifty plain messages just under the limit, all
//! at once: every bomb is refused with 1009 and every message is echoed (the
//! ones over budget wait their turn). Then fifty bombs and fifty messages held
//! one byte short of their end: the process's memory stays under the budget
//! plus a stated base, and the connections that found no room are closed with
//! 1013 after the wait. A small-message client on the same server keeps
//! answering quickly throughout, and memory returns to where it was.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{spawn, Child};
use tether_testing::{deflate_bomb, rss_anon_bytes, Peak};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's message limit.
const LIMIT: usize = 2 << 20;
/// The server's budget: room for a few messages at the limit, not fifty.
const BUDGET: usize = 8 << 20;
/// Each attack: this many bombs and this many plain messages.
const EACH: usize = 50;
/// What the budget does not cover while messages are being read: every
/// connection's free allowance (128 KiB each, see
/// `tether::budget::FREE_PER_CONNECTION`), zlib states, task and socket
/// state, and a debug build's slack. (Messages once read are the
/// application's: the echo's copies on their way back are not counted, which
/// is why the bound is checked with messages that never finish.)
const BASE: usize = EACH * 2 * (128 << 10) + (16 << 20);
/// How long a connection waits for room before 1013.
const WAIT: Duration = Duration::from_secs(10);
/// The small-message client's slowest round trip while the attack runs.
const SLOWEST_ROUND_TRIP: Duration = Duration::from_secs(1);
/// How close to its earlier level memory must come once the attack is over.
const RETURN_MARGIN: usize = 8 << 20;

/// A client frame with an all-zero mask key (valid, and the payload is
/// then sent as it is).
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    tether_testing::masked_frame(first, [0; 4], payload)
}

/// Opens a WebSocket connection by hand, offering permessage-deflate if asked.
async fn open(port: u16, deflate: bool) -> TcpStream {
    let extension = match deflate {
        true => "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        false => "",
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tether_testing::raw_websocket(addr, "/", extension).await
}

/// How one attacking connection ended.
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    /// Its message came back whole.
    Echoed,
    /// The server closed with this code.
    Closed(u16),
    /// Still waiting for its message to end, unanswered.
    Held,
    /// Anything else (TCP ended without a close frame, a short echo).
    Other(String),
}

/// Sends `wire` (one frame) and reads what the server answers: the echo of a
/// `len`-byte message, or a close frame.
async fn attack(port: u16, deflate: bool, wire: &[u8], len: usize) -> Outcome {
    let mut tcp = open(port, deflate).await;
    let (mut read, mut write) = tcp.split();
    // Written while reading: the server may answer before it has it all.
    let writing = async {
        let _ = write.write_all(wire).await;
    };
    let reading = async {
        let mut head = [0u8; 2];
        if read.read_exact(&mut head).await.is_err() {
            return Outcome::Other("no frame".into());
        }
        let size = match head[1] & 0x7f {
            126 => read.read_u16().await.unwrap() as usize,
            127 => read.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; size];
        if read.read_exact(&mut payload).await.is_err() {
            return Outcome::Other(format!("cut off in a {size}-byte frame"));
        }
        match head[0] & 0x0f {
            0x8 if size >= 2 => Outcome::Closed(u16::from_be_bytes([payload[0], payload[1]])),
            0x2 if size == len => Outcome::Echoed,
            op => Outcome::Other(format!("opcode {op:#x}, {size} bytes")),
        }
    };
    let (_, outcome) = tokio::join!(writing, reading);
    outcome
}

/// Sends all of `wire` but its last byte, so the message never ends, and
/// waits for the server's answer: a close code, or `Held` if it keeps the
/// connection waiting past the budget's wait.
async fn hold(port: u16, wire: &[u8]) -> Outcome {
    let mut tcp = open(port, false).await;
    let (mut read, mut write) = tcp.split();
    let writing = async {
        let _ = write.write_all(&wire[..wire.len() - 1]).await;
    };
    let reading = async {
        let mut head = [0u8; 4];
        match tokio::time::timeout(WAIT + Duration::from_secs(5), read.read_exact(&mut head)).await
        {
            Err(_) => Outcome::Held,
            Ok(Err(_)) => Outcome::Other("TCP ended".into()),
            Ok(Ok(_)) if head[0] == 0x88 => Outcome::Closed(u16::from_be_bytes([head[2], head[3]])),
            Ok(Ok(_)) => Outcome::Other(format!("frame {:#x}", head[0])),
        }
    };
    let (_, outcome) = tokio::join!(writing, reading);
    outcome
}

/// A small-message client's round trips, timed, until `until`.
async fn round_trips(port: u16, until: Instant) -> Vec<Duration> {
    let (mut ws, _) = tether::connect(&format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let mut times = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        ws.send("ping me back").await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .expect("the small client is answered")
            .unwrap();
        assert_eq!(echoed, Some(tether::Message::text("ping me back")));
        times.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    times
}

/// Runs the attackers to the end; their outcomes counted, by kind.
async fn outcomes(
    mut attackers: tokio::task::JoinSet<(&'static str, Outcome)>,
) -> std::collections::BTreeMap<(&'static str, Outcome), usize> {
    let mut outcomes = std::collections::BTreeMap::new();
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = attackers.join_next().await {
            *outcomes.entry(done.unwrap()).or_insert(0) += 1;
        }
    })
    .await;
    assert!(finished.is_ok(), "attackers still running: {outcomes:?}");
    outcomes
}

/// The small client's round trips, checked against the bound.
fn check_round_trips(times: &[Duration], phase: &str) {
    let slowest = times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{phase}: the small client made {} round trips, the slowest {slowest:?}",
        times.len()
    );
    assert!(
        times.len() > 10 && slowest < SLOWEST_ROUND_TRIP,
        "{phase}: {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_bombs_and_fifty_large_messages_stay_within_the_budget() {
    let (server, port): (Child, u16) = spawn(
        &[
            "echo",
            "--threads",
            "2",
            "--max-message-size",
            &LIMIT.to_string(),
            "--max-buffered-bytes",
            &BUDGET.to_string(),
            "--buffer-wait",
            &WAIT.as_secs().to_string(),
        ],
        Stdio::null(),
    )
    .await;
    let pid = server.0.id();
    // 1 GiB of zeros in about 1 MiB: refused at 2 MiB inflated.
    let bomb = frame(0xc2, &deflate_bomb(1 << 30));
    let plain = frame(0x82, &vec![7u8; LIMIT - 1024]);

    // Warm up (the server's first connection, the client's runtime), then
    // take the level before.
    round_trips(port, Instant::now() + Duration::from_millis(200)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_anon_bytes(pid);

    // Served: every bomb refused, every message echoed, in turn.
    let small = tokio::spawn(round_trips(port, Instant::now() + Duration::from_secs(3)));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..EACH {
        let bomb = bomb.clone();
        attackers.spawn(async move { ("bomb", attack(port, true, &bomb, 0).await) });
        let plain = plain.clone();
        attackers.spawn(async move { ("plain", attack(port, false, &plain, LIMIT - 1024).await) });
    }
    let served = outcomes(attackers).await;
    assert_eq!(
        served.get(&("bomb", Outcome::Closed(1009))),
        Some(&EACH),
        "{served:?}"
    );
    assert_eq!(
        served.get(&("plain", Outcome::Echoed)),
        Some(&EACH),
        "{served:?}"
    );
    check_round_trips(&small.await.unwrap(), "served");

    // Bounded: messages that never end hold what they reserved; the rest
    // wait, then get 1013. Memory is sampled every few milliseconds.
    let level = rss_anon_bytes(pid);
    let peak = Peak::sample(move || rss_anon_bytes(pid));
    let small = tokio::spawn(round_trips(port, Instant::now() + Duration::from_secs(3)));
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..EACH {
        let bomb = bomb.clone();
        attackers.spawn(async move { ("bomb", attack(port, true, &bomb, 0).await) });
        let plain = plain.clone();
        attackers.spawn(async move { ("held", hold(port, &plain).await) });
    }
    let bounded = outcomes(attackers).await;
    let peak = peak.stop();
    check_round_trips(&small.await.unwrap(), "bounded");
    eprintln!("{bounded:?}");
    let count = |kind, outcome| bounded.get(&(kind, outcome)).copied().unwrap_or(0);
    let bombs = count("bomb", Outcome::Closed(1009)) + count("bomb", Outcome::Closed(1013));
    assert_eq!(
        bombs, EACH,
        "every bomb refused, 1009 or, without room, 1013: {bounded:?}"
    );
    let (held, refused) = (
        count("held", Outcome::Held),
        count("held", Outcome::Closed(1013)),
    );
    assert_eq!(held + refused, EACH, "{bounded:?}");
    assert!(
        held >= 1 && refused >= 1,
        "some held room, some waited in vain: {bounded:?}"
    );
    let grown = peak.saturating_sub(level);
    eprintln!(
        "anonymous RSS {} MiB as the bounded attack began, peak {} MiB (+{} MiB; budget {} MiB, base allowed {} MiB)",
        level >> 20,
        peak >> 20,
        grown >> 20,
        BUDGET >> 20,
        BASE >> 20
    );
    assert!(grown <= BUDGET + BASE, "grew by {} MiB", grown >> 20);

    // Memory given back: within a margin of the level before, in seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = rss_anon_bytes(pid);
    while now > before + RETURN_MARGIN && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = rss_anon_bytes(pid);
    }
    eprintln!(
        "anonymous RSS {} KiB at the start, {} KiB after the attack",
        before >> 10,
        now >> 10
    );
    assert!(
        now <= before + RETURN_MARGIN,
        "still {} MiB above the level before",
        (now - before) >> 20
    );
}

/// Sends one message frame on a fresh connection and reads its echo whole,
/// sampling the server's memory every 5 ms: returns its growth at the peak
/// over `before`, and the connection (kept open: what it holds afterwards
/// counts too).
async fn echo_once(
    port: u16,
    pid: u32,
    deflate: bool,
    wire: &[u8],
    before: usize,
) -> (usize, TcpStream) {
    let mut tcp = open(port, deflate).await;
    let peak = Peak::sample(move || rss_anon_bytes(pid));
    let (mut read, mut write) = tcp.split();
    let writing = async { write.write_all(wire).await.unwrap() };
    let reading = async {
        let mut head = [0u8; 2];
        read.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0] & 0x0f, 0x2, "a binary echo, not {:#x}", head[0]);
        let size = match head[1] & 0x7f {
            126 => read.read_u16().await.unwrap() as usize,
            127 => read.read_u64().await.unwrap() as usize,
            n => n as usize,
        };
        let mut left = size;
        let mut chunk = vec![0u8; 1 << 16];
        while left > 0 {
            let n = read.read(&mut chunk[..left.min(1 << 16)]).await.unwrap();
            assert!(n > 0, "cut off with {left} bytes to go");
            left -= n;
        }
    };
    tokio::join!(writing, reading);
    (peak.stop().max(before).saturating_sub(before), tcp)
}

/// A message at the limit costs about its size, plain, inflated or in large
/// fragments, echoed back and all: no doubling growth, no second copy on the
/// way in or out, and the memory is given back while the connection stays
/// open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_at_the_limit_costs_about_its_size() {
    const SIZE: usize = 32 << 20;
    let (server, port): (Child, u16) = spawn(
        &["echo", "--max-message-size", &SIZE.to_string()],
        Stdio::null(),
    )
    .await;
    let pid = server.0.id();
    let plain = frame(0x82, &vec![7u8; SIZE - 1024]);
    let deflated = frame(0xc2, &deflate_bomb(SIZE - 1024));
    let half = vec![7u8; SIZE / 2 - 512];
    let mut halves = frame(0x02, &half);
    halves.extend(frame(0x80, &half));
    round_trips(port, Instant::now() + Duration::from_millis(200)).await;
    let mut held = Vec::new();
    let cases = [
        ("plain", false, &plain),
        ("inflated", true, &deflated),
        ("in two fragments", false, &halves),
    ];
    for (name, deflate, wire) in cases {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_anon_bytes(pid);
        let (growth, tcp) = echo_once(port, pid, deflate, wire, before).await;
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        eprintln!(
            "{name}: a {:.0} MiB message echoed at {:.1} MiB over {:.1} MiB ({:.2}x)",
            mib(SIZE),
            mib(growth),
            mib(before),
            growth as f64 / SIZE as f64
        );
        // 1.25x the message plus a debug build's slack; a second copy
        // would be 2x.
        assert!(
            growth < SIZE + SIZE / 4 + (4 << 20),
            "{name}: {growth} bytes for a {SIZE}-byte message"
        );
        let mut after = rss_anon_bytes(pid);
        for _ in 0..50 {
            if after < before + RETURN_MARGIN {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = rss_anon_bytes(pid);
        }
        assert!(
            after < before + RETURN_MARGIN,
            "{name}: {after} bytes 5 s after, {before} before, the connection still open"
        );
        held.push(tcp);
    }
}
