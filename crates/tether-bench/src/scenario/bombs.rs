//! `bombs`: hostile clients, all at once. Each opens a connection offering
//! permessage-deflate and sends one compressed message that inflates to
//! `--size` bytes of zeros (a deflate bomb, about a thousandth of that on the
//! wire), then waits for the server's close frame. Reports the close codes,
//! how long each took, and, given `--server-pid`, the server's memory before,
//! at its peak (sampled every 5 ms) and a few seconds after: what a flood of
//! bombs costs, and whether the memory comes back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};
use crate::latency::Latency;
use crate::meter::Meter;
use crate::options::Options;
use crate::procfs;
use crate::progress::Progress;
use crate::report::Report;

/// The smallest `--size` that is a bomb rather than a message.
const MIN_SIZE: usize = 1 << 20;
/// How long the server gets to give memory back before the last reading.
const SETTLE: Duration = Duration::from_secs(3);

pub(super) async fn run(options: &Options) -> Result<Report> {
    if options.size < MIN_SIZE {
        return Err(BenchError::Protocol(format!(
            "bombs: --size is what each bomb inflates to; give at least {MIN_SIZE} bytes"
        )));
    }
    let target = Target::parse(&options.url)?;
    let wire = Arc::new(bomb_frame(options.size));
    let pid = options.server_pid;
    let sampling = pid.map(procfs::PeakRss::start).transpose()?;
    let n = options.connections;
    let progress = Progress::new("bombs", Some(n as u64), options.progress);
    let meter = Meter::start(pid, progress);
    let mut bombs = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (target, wire, counter) = (target.clone(), wire.clone(), meter.counter());
        let timeout = options.timeout;
        bombs.spawn(async move {
            let result = tokio::time::timeout(timeout, send_bomb(&target, &wire)).await;
            counter.add(1);
            result.unwrap_or(Err(BenchError::Protocol("no answer in time".into())))
        });
    }
    let mut latency = Latency::new();
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = 0;
    while let Some(done) = bombs.join_next().await {
        match done.expect("bomb task") {
            Ok((code, took)) => {
                latency.record(took);
                *codes.entry(code).or_default() += 1;
            }
            Err(_) => errors += 1,
        }
    }
    let measured = meter.finish().await;
    let rss_before = sampling.as_ref().map(procfs::PeakRss::before);
    let peak_rss = sampling.as_ref().map_or(0, procfs::PeakRss::peak);
    drop(sampling);
    tokio::time::sleep(SETTLE).await;
    let rss_after = pid.map(procfs::rss_bytes).transpose()?;
    let mut report = Report::new(
        "bombs",
        options,
        "bombs",
        "send to close",
        &measured,
        &latency,
    );
    report.errors = errors;
    for (code, count) in &codes {
        report = report.detail(&format!("closed {code}"), *count as f64);
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
        report = report
            .detail("server RSS before, MiB", mib(before))
            .detail("server RSS peak, MiB", mib(peak_rss.max(before)))
            .detail("server RSS 3 s after, MiB", mib(after));
        if let Some(server) = &mut report.server {
            server.rss_bytes = Some(after);
        }
    }
    Ok(report)
}

/// Where the bombs go: `ws://HOST:PORT/PATH`.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    address: String,
    host: String,
    path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| BenchError::Protocol(format!("bombs: {url}: {why}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "ws" {
            return Err(bad("bombs go to ws:// URLs"));
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        Ok(Self {
            address: format!("{host}:{port}"),
            host,
            path: parsed.path().to_owned(),
        })
    }
}

/// Opens a connection offering permessage-deflate, sends `wire`, and reads
/// until the server's close frame: its code and the time since sending.
pub(crate) async fn send_bomb(target: &Target, wire: &[u8]) -> Result<(u16, Duration)> {
    let protocol = |why: &str| BenchError::Protocol(format!("bombs: {why}"));
    let mut tcp = TcpStream::connect(&target.address).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        target.path, target.host
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await?);
        if head.len() > 16 << 10 {
            return Err(protocol("handshake answer too long"));
        }
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(protocol(head.lines().next().unwrap_or("no answer")));
    }
    if !head.to_ascii_lowercase().contains("permessage-deflate") {
        return Err(protocol("the server did not accept permessage-deflate"));
    }
    let sent = Instant::now();
    let (mut read, mut write) = tcp.split();
    // Written while reading: the server may refuse before it has it all.
    let writing = async {
        let _ = write.write_all(wire).await;
    };
    let reading = async {
        loop {
            let mut frame = [0u8; 2];
            read.read_exact(&mut frame).await?;
            let opcode = frame[0] & 0x0f;
            let len = usize::from(frame[1] & 0x7f);
            // Only control frames (at most 125 bytes) are expected.
            if !matches!(opcode, 0x8..=0xa) || len > 125 {
                return Err(protocol(
                    "the server took the message (it inflates within the server's limit): raise --size",
                ));
            }
            let mut payload = vec![0u8; len];
            read.read_exact(&mut payload).await?;
            if opcode == 0x8 {
                let code = match payload[..] {
                    [high, low, ..] => u16::from_be_bytes([high, low]),
                    _ => 1005,
                };
                return Ok((code, sent.elapsed()));
            }
        }
    };
    let ((), answer) = tokio::join!(writing, reading);
    answer
}

/// Raw deflate of `zeros` zero bytes, sync-flushed, the flush's 4-byte tail
/// stripped as RFC 7692 sends a message. Made in 1 MiB chunks, so only the
/// compressed bytes (about a thousandth of `zeros`) are held.
pub fn deflate_bomb(zeros: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut compress = Compress::new(Compression::best(), false);
    let chunk = vec![0u8; 1 << 20];
    let mut deflated = Vec::with_capacity(zeros / 900 + (1 << 16));
    while (compress.total_in() as usize) < zeros {
        let left = zeros - compress.total_in() as usize;
        if deflated.capacity() - deflated.len() < 1 << 12 {
            deflated.reserve(1 << 16);
        }
        compress
            .compress_vec(
                &chunk[..left.min(chunk.len())],
                &mut deflated,
                FlushCompress::None,
            )
            .expect("deflating zeros");
    }
    loop {
        deflated.reserve(1 << 16);
        let before = compress.total_out();
        compress
            .compress_vec(&[], &mut deflated, FlushCompress::Sync)
            .expect("flushing");
        if compress.total_out() == before {
            break;
        }
    }
    // RFC 7692 §7.2.1: the sender removes the sync flush's 00 00 ff ff.
    deflated.truncate(deflated.len().saturating_sub(4));
    deflated
}

/// One masked (all-zero key) binary frame with RSV1 set: `zeros` zero bytes
/// deflated ([`deflate_bomb`]).
pub(crate) fn bomb_frame(zeros: usize) -> Vec<u8> {
    let deflated = deflate_bomb(zeros);
    let mut frame = vec![0xc2, 0x80 | 127];
    frame.extend((deflated.len() as u64).to_be_bytes());
    frame.extend([0; 4]);
    frame.extend_from_slice(&deflated);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bomb_is_small_on_the_wire_and_inflates_to_its_size() {
        let frame = bomb_frame(8 << 20);
        assert!(frame.len() < 64 << 10, "{} bytes", frame.len());
        let mut inflater = tether::proto::deflate::Inflater::new(15, true);
        let mut out = bytes::BytesMut::new();
        inflater.inflate(&frame[14..], &mut out, 16 << 20).unwrap();
        inflater.finish(&mut out, 16 << 20).unwrap();
        assert_eq!(out.len(), 8 << 20);
        assert!(out.iter().all(|&b| b == 0));
    }
}
