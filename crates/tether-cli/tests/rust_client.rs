//! The Rust client (`tether-client`) against the real `tether serve`: acks,
//! presence, history and numbered errors; resume across cuts of the network
//! with no gap and no duplicate; `Unrecovered` when the server lost the
//! history; seeded backoff within its bounds; subscribe, drop, subscribe;
//! `wss://` over HTTP/1.1 and HTTP/2.

mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tether_client::{Client, ClientConfig, Event, State, Subscription, SubscriptionEvent};
use tether_testing::Relay;

/// Fast reconnects, so a test spends its time on what it checks.
fn fast(url: String) -> ClientConfig {
    ClientConfig {
        min_reconnect_delay: Duration::from_millis(20),
        max_reconnect_delay: Duration::from_millis(200),
        ..ClientConfig::new(url)
    }
}

/// The numbers published on a subscription, until `count` of them (or 15 s).
async fn numbers(sub: &mut Subscription, count: usize) -> (Vec<u64>, usize) {
    let (mut seen, mut unrecovered) = (Vec::new(), 0);
    tokio::time::timeout(Duration::from_secs(15), async {
        while seen.len() < count {
            match sub.next().await.expect("the subscription goes on") {
                SubscriptionEvent::Publication(p) => seen.push(
                    p.parse::<serde_json::Value>().unwrap()["n"]
                        .as_u64()
                        .unwrap(),
                ),
                SubscriptionEvent::Unrecovered { .. } => unrecovered += 1,
                SubscriptionEvent::Failed(error) => panic!("{error}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} numbers arrived", seen.len()));
    (seen, unrecovered)
}

/// Waits for the subscription's next `Subscribed`.
async fn subscribed(sub: &mut Subscription) -> (bool, bool) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Some(SubscriptionEvent::Subscribed {
                recovering,
                recovered,
                ..
            })) => return (recovering, recovered),
            Ok(Some(SubscriptionEvent::Failed(error))) => panic!("{error}"),
            Ok(Some(_)) => {}
            other => panic!("no subscribed event: {other:?}"),
        }
    }
}

#[tokio::test]
async fn acks_presence_history_and_numbered_errors() {
    let (_server, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let client = Client::new(fast(format!("http://127.0.0.1:{port}")));
    let mut events = client.events();
    client.connected().await.unwrap();
    assert_eq!(client.state(), State::Connected);
    let mut sub = client.subscribe("chat:room").await.unwrap();
    assert_eq!(subscribed(&mut sub).await, (false, false));
    let ack = client.publish("chat:room", &json!({"n": 1})).await.unwrap();
    assert_eq!(ack.offset, 1);
    let (seen, _) = numbers(&mut sub, 1).await;
    assert_eq!(seen, [1]);
    let presence = client.presence("chat:room").await.unwrap();
    assert_eq!(presence.clients.len(), 1);
    let history = client.history("chat:room", None).await.unwrap();
    assert_eq!(history.publications.len(), 1);
    assert_eq!(history.publications[0].data.get(), r#"{"n":1}"#);
    // The server's numbered error, as it is.
    let error = client.publish("", &1).await.unwrap_err();
    assert_eq!(error.code(), Some(102), "{error}");
    // A second subscription to the same channel from the same client is refused here.
    assert!(matches!(
        client.subscribe("chat:room").await,
        Err(tether_client::Error::AlreadySubscribed(_))
    ));
    client.close().await;
    assert_eq!(client.state(), State::Disconnected);
    assert!(matches!(
        client.publish("chat:room", &2).await,
        Err(tether_client::Error::Closed)
    ));
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.iter().any(|e| matches!(e, Event::Connected { .. })),
        "{seen:?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(Event::Disconnected {
                reconnect: false,
                ..
            })
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn resumes_across_cuts_with_no_gap_and_no_duplicate() {
    let (_server, port) = common::spawn(
        &["serve", "--log", "warn", "--history-size", "1000"],
        Stdio::null(),
    )
    .await;
    let relay = Relay::start(port).await;
    let subscriber = Client::new(fast(format!("ws://{}", relay.addr())));
    let mut reconnects = subscriber.events();
    let mut sub = subscriber.subscribe("numbers").await.unwrap();
    subscribed(&mut sub).await;
    let publisher = Client::new(fast(format!("http://127.0.0.1:{port}")));
    let total = 300;
    let publishing = tokio::spawn(async move {
        for n in 1..=total {
            publisher
                .publish("numbers", &json!({ "n": n }))
                .await
                .unwrap();
            if n % 80 == 0 {
                relay.cut();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        relay
    });
    let (seen, unrecovered) = numbers(&mut sub, total as usize).await;
    let _relay = publishing.await.unwrap();
    assert_eq!(seen, (1..=total).collect::<Vec<u64>>());
    assert_eq!(unrecovered, 0);
    let mut cuts = 0;
    while let Ok(event) = reconnects.try_recv() {
        if let Event::Reconnecting { .. } = event {
            cuts += 1;
        }
    }
    assert!(cuts >= 3, "reconnected {cuts} times");
    // Nothing more, and nothing twice, arrives afterwards.
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next())
        .await
        .is_err());
}

#[tokio::test]
async fn a_server_that_lost_the_history_is_reported_as_unrecovered() {
    let (first, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let relay = Relay::start(port).await;
    let client = Client::new(fast(format!("ws://{}", relay.addr())));
    let mut sub = client.subscribe("feed").await.unwrap();
    subscribed(&mut sub).await;
    for n in 1..=5 {
        client.publish("feed", &json!({ "n": n })).await.unwrap();
    }
    assert_eq!(numbers(&mut sub, 5).await.0, [1, 2, 3, 4, 5]);
    // A new server (empty memory engine) behind the same address.
    let (_second, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    relay.retarget(port);
    drop(first);
    assert_eq!(subscribed(&mut sub).await, (true, false));
    client.publish("feed", &json!({ "n": 6 })).await.unwrap();
    let (seen, _) = numbers(&mut sub, 1).await;
    assert_eq!(seen, [6]);
}

#[tokio::test]
async fn reconnect_delays_stay_within_the_backoff_bounds_and_spread() {
    let (_server, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let relay = Relay::start(port).await;
    let config = ClientConfig {
        min_reconnect_delay: Duration::from_millis(10),
        max_reconnect_delay: Duration::from_millis(80),
        seed: Some(42),
        ..ClientConfig::new(format!("ws://{}", relay.addr()))
    };
    let client = Client::new(config);
    let mut events = client.events();
    client.connected().await.unwrap();
    relay.block(true);
    relay.cut();
    let mut delays = Vec::new();
    while delays.len() < 12 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::Reconnecting { attempt, delay } = event {
            delays.push((attempt, delay));
        }
    }
    relay.block(false);
    for (attempt, delay) in &delays {
        let ceiling =
            (Duration::from_millis(10) * 2u32.pow(attempt - 1)).min(Duration::from_millis(80));
        assert!(
            *delay >= Duration::from_millis(10) && *delay <= ceiling,
            "attempt {attempt}: {delay:?}"
        );
    }
    let late: Vec<_> = delays.iter().skip(4).map(|(_, d)| *d).collect();
    assert!(
        late.iter().max().unwrap() > late.iter().min().unwrap(),
        "jitter spreads the delays: {late:?}"
    );
    client.connected().await.unwrap();
}

#[tokio::test]
async fn subscribe_drop_subscribe_ends_subscribed_once() {
    let (_server, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let client = Client::new(fast(format!("http://127.0.0.1:{port}")));
    client.connected().await.unwrap();
    let first = client.subscribe("ui").await.unwrap();
    drop(first);
    let second = client.subscribe("ui").await.unwrap();
    second.unsubscribe();
    let mut third = client.subscribe("ui").await.unwrap();
    subscribed(&mut third).await;
    client.publish("ui", &json!({ "n": 1 })).await.unwrap();
    assert_eq!(numbers(&mut third, 1).await.0, [1]);
    assert_eq!(client.presence("ui").await.unwrap().clients.len(), 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), third.next())
            .await
            .is_err(),
        "delivered once"
    );
}

#[tokio::test]
async fn a_handler_sees_each_publication_once_and_stops_when_dropped() {
    let (_server, port) = common::spawn(&["serve", "--log", "warn"], Stdio::null()).await;
    let client = Client::new(fast(format!("http://127.0.0.1:{port}")));
    let (seen, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let handler = client
        .subscribe_with("alerts", move |event| {
            if let SubscriptionEvent::Publication(p) = event {
                let _ = seen.send(p.offset);
            }
        })
        .await
        .unwrap();
    client.connected().await.unwrap();
    let members = || async { client.presence("alerts").await.map(|p| p.clients.len()) };
    tether_testing::eventually(
        "the handler's subscription",
        Duration::from_secs(5),
        || async { members().await == Ok(1) },
    )
    .await;
    for n in 1..=3 {
        client.publish("alerts", &n).await.unwrap();
    }
    for offset in 1..=3 {
        let next = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await;
        assert_eq!(next.unwrap(), Some(offset));
    }
    handler.unsubscribe();
    tether_testing::eventually("the channel left", Duration::from_secs(5), || async {
        members().await == Ok(0)
    })
    .await;
}

#[tokio::test]
async fn connects_over_wss_on_http1_and_http2() {
    let certificate = common::TestCertificate::new();
    let (_server, port) = common::serve_tls(&certificate, &[]).await;
    let trust = certificate.trust();
    for http2 in [false, true] {
        let config = fast(format!("https://localhost:{port}"))
            .tls(trust.clone())
            .http2(http2);
        let client = Client::new(config);
        client.connected().await.unwrap();
        let channel = format!("secure:{http2}");
        let mut sub = client.subscribe(channel.as_str()).await.unwrap();
        subscribed(&mut sub).await;
        for n in 1..=3 {
            client.publish(&channel, &json!({ "n": n })).await.unwrap();
        }
        assert_eq!(numbers(&mut sub, 3).await.0, [1, 2, 3], "http2: {http2}");
        client.close().await;
    }
    // The server saw one WebSocket over each HTTP version.
    let metrics = curl_metrics(port, &certificate.cert);
    for http in ["1.1", "2"] {
        let line = format!(r#"tether_websocket_upgrades_total{{http="{http}"}} 1"#);
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    // Without the trust, the client does not connect.
    let client = Client::new(fast(format!("https://localhost:{port}")));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), client.connected())
            .await
            .is_err(),
        "connected to a server it cannot trust"
    );
    client.close().await;
}

/// `/metrics` over HTTPS, trusting the certificate in the PEM file `ca`.
fn curl_metrics(port: u16, ca: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(format!("https://localhost:{port}/metrics"))
        .output()
        .expect("curl runs (scripts/setup.sh installs it)");
    String::from_utf8(output.stdout).unwrap()
}
