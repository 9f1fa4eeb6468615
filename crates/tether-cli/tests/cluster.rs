//! Several `tether serve` nodes on one real `redis-server` act as one server:
//! a publication on any node reaches subscribers on every node in order;
//! concurrent publishes through all nodes get gap-free offsets; an
//! idempotency key holds across nodes; presence spans nodes and a killed
//! node's clients leave within the expiry; a client that comes back through
//! another node resumes with no gap and no duplicate; `/readyz` follows Redis.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tether_client::{Client, ClientConfig, PublishOptions, Subscription, SubscriptionEvent};
use tether_testing::{eventually, Child, RedisServer, Relay};

/// A node of the cluster on `redis`, with presence expiring after 2 s.
async fn node(redis: &RedisServer) -> (Child, u16) {
    let engine = redis.url();
    common::spawn(
        &[
            "serve",
            "--log",
            "warn",
            "--engine",
            &engine,
            "--engine.redis-presence-ttl",
            "2s",
        ],
        Stdio::null(),
    )
    .await
}

fn client(port: u16) -> Client {
    Client::new(ClientConfig {
        min_reconnect_delay: Duration::from_millis(20),
        max_reconnect_delay: Duration::from_millis(200),
        ..ClientConfig::new(format!("http://127.0.0.1:{port}"))
    })
}

/// Waits for the subscription's `Subscribed`; whether it recovered.
async fn subscribed(sub: &mut Subscription) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Some(SubscriptionEvent::Subscribed { recovered, .. })) => return recovered,
            Ok(Some(SubscriptionEvent::Failed(error))) => panic!("{error}"),
            Ok(Some(_)) => {}
            other => panic!("no subscribed event: {other:?}"),
        }
    }
}

/// The next `count` publications' offsets.
async fn offsets(sub: &mut Subscription, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        while seen.len() < count {
            if let Some(SubscriptionEvent::Publication(p)) = sub.next().await {
                seen.push(p.offset);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} publications", seen.len()));
    seen
}

#[tokio::test]
async fn three_nodes_deliver_everywhere_with_gap_free_offsets() {
    let redis = RedisServer::start().await;
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let clients: Vec<Client> = nodes.iter().map(|(_, port)| client(*port)).collect();
    let mut subs = Vec::new();
    for client in &clients {
        let mut sub = client.subscribe("scores").await.unwrap();
        subscribed(&mut sub).await;
        subs.push(sub);
    }
    // Client ids stay unique across nodes.
    let presence = clients[0].presence("scores").await.unwrap();
    let ids: BTreeSet<String> = presence.clients.iter().map(|e| e.client.clone()).collect();
    assert_eq!(ids.len(), 3, "{presence:?}");

    // 3 x 100 publishes at once, through all three nodes.
    let mut publishing = Vec::new();
    for client in &clients {
        let client = client.clone();
        publishing.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for n in 0..100 {
                mine.push(
                    client
                        .publish("scores", &json!({ "n": n }))
                        .await
                        .unwrap()
                        .offset,
                );
            }
            mine
        }));
    }
    let mut acked = BTreeSet::new();
    for task in publishing {
        let mine = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        acked.extend(mine);
    }
    assert_eq!(
        acked,
        (1..=300).collect::<BTreeSet<u64>>(),
        "gap-free, no offset twice"
    );
    for sub in &mut subs {
        assert_eq!(offsets(sub, 300).await, (1..=300).collect::<Vec<u64>>());
    }

    // One idempotency key, two nodes: one publication.
    let once = PublishOptions {
        idempotency_key: Some("goal-7".into()),
        key: None,
    };
    let first = clients[0]
        .publish_with("scores", &"goal", once.clone())
        .await
        .unwrap();
    let again = clients[1]
        .publish_with("scores", &"goal", once)
        .await
        .unwrap();
    assert_eq!((first.offset, again.offset), (301, 301));
    assert_eq!(offsets(&mut subs[2], 1).await, [301]);
    let next = clients[2].publish("scores", &"after").await.unwrap();
    assert_eq!(next.offset, 302);
}

#[tokio::test]
async fn presence_spans_nodes_and_a_killed_nodes_clients_leave() {
    let redis = RedisServer::start().await;
    let (a, port_a) = node(&redis).await;
    let (b, port_b) = node(&redis).await;
    let on_a = client(port_a);
    let mut watcher = on_a.subscribe("room").await.unwrap();
    subscribed(&mut watcher).await;
    let on_b = client(port_b);
    let mut guest = on_b.subscribe("room").await.unwrap();
    subscribed(&mut guest).await;
    eventually(
        "both present, seen from A",
        Duration::from_secs(5),
        || async {
            on_a.presence("room")
                .await
                .is_ok_and(|p| p.clients.len() == 2)
        },
    )
    .await;
    let before = on_a.presence("room").await.unwrap();
    // B dies without a word: its client leaves within the expiry (2 s),
    // and A's subscriber hears the leave.
    drop(b);
    let killed = std::time::Instant::now();
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(SubscriptionEvent::Leave { client, .. }) = watcher.next().await {
                return client;
            }
        }
    })
    .await
    .expect("a leave within the expiry");
    println!(
        "node SIGKILLed: its client's leave reached the other node after {:?} (expiry 2 s)",
        killed.elapsed()
    );
    let after = on_a.presence("room").await.unwrap();
    assert_eq!(after.clients.len(), 1, "{after:?}");
    assert!(before.clients.iter().any(|e| e.client == left));
    assert_ne!(after.clients[0].client, left);
    drop(guest);
    drop(a);
}

#[tokio::test]
async fn a_client_resumes_through_another_node_with_no_gap_and_no_duplicate() {
    let redis = RedisServer::start().await;
    let (_a, port_a) = node(&redis).await;
    let (_b, port_b) = node(&redis).await;
    // The client reaches the cluster through one address, as through a load balancer.
    let balancer = Relay::start(port_a).await;
    let roaming = client(balancer.addr().port());
    let mut sub = roaming.subscribe("feed").await.unwrap();
    subscribed(&mut sub).await;
    let publisher = client(port_b);
    for n in 1..=50 {
        publisher.publish("feed", &n).await.unwrap();
    }
    assert_eq!(offsets(&mut sub, 50).await, (1..=50).collect::<Vec<u64>>());
    // Its node is taken out of the balancer; what is published meanwhile
    // waits in Redis's history.
    balancer.block(true);
    balancer.cut();
    for n in 51..=120 {
        publisher.publish("feed", &n).await.unwrap();
    }
    balancer.retarget(port_b);
    balancer.block(false);
    // The recovered publications come first, then `Subscribed` says so.
    let (mut seen, mut recovered) = (Vec::new(), None);
    tokio::time::timeout(Duration::from_secs(15), async {
        while recovered.is_none() || seen.len() < 70 {
            match sub.next().await.unwrap() {
                SubscriptionEvent::Publication(p) => seen.push(p.offset),
                SubscriptionEvent::Subscribed { recovered: r, .. } => recovered = Some(r),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("resumed with {} of 70 ({recovered:?})", seen.len()));
    assert_eq!(recovered, Some(true), "recovered on the other node");
    assert_eq!(seen, (51..=120).collect::<Vec<u64>>());
    // Nothing twice (presence events may come: its old session's leave).
    let later = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Some(SubscriptionEvent::Publication(p)) = sub.next().await {
                return p.offset;
            }
        }
    })
    .await;
    assert!(later.is_err(), "publication {later:?} delivered again");
}

#[tokio::test]
async fn readyz_follows_redis_and_publishes_fail_while_it_is_away() {
    let redis = RedisServer::start().await;
    let (_node, port) = node(&redis).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = || async move { tether_testing::http(addr, "GET", "/readyz", "", "").await.0 };
    eventually("ready with Redis up", Duration::from_secs(5), || async {
        ready().await == 200
    })
    .await;
    let publish = || async move {
        tether_testing::http(
            addr,
            "POST",
            "/api/publish",
            r#"{"channel":"c","data":1}"#,
            "",
        )
        .await
        .0
    };
    assert_eq!(publish().await, 200);
    let port_redis = redis.port;
    redis.signal("KILL");
    drop(redis);
    let killed = std::time::Instant::now();
    eventually("503 with Redis away", Duration::from_secs(5), || async {
        ready().await == 503
    })
    .await;
    let unready_after = killed.elapsed();
    assert_eq!(publish().await, 503, "error 112, never a false ack");
    let _redis = RedisServer::start_on(port_redis).await;
    let restarted = std::time::Instant::now();
    eventually("ready again", Duration::from_secs(10), || async {
        ready().await == 200
    })
    .await;
    println!(
        "Redis SIGKILLed: /readyz 503 after {unready_after:?}, publish refused (503, error 112); \
         restarted: /readyz 200 after {:?}",
        restarted.elapsed()
    );
    eventually("publishing again", Duration::from_secs(10), || async {
        publish().await == 200
    })
    .await;
    // The metrics tell the story: errors while Redis was away, a reconnect after.
    let (_, metrics) = tether_testing::http_raw(addr, "GET", "/metrics", "", "").await;
    let sample = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(sample("tether_redis_errors_total") >= 1.0, "{metrics}");
    assert!(sample("tether_redis_reconnects_total") >= 1.0, "{metrics}");
    assert!(
        sample("tether_redis_command_seconds_count") >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stalled_redis_times_publishes_out_and_everything_resumes() {
    let redis = RedisServer::start().await;
    let (_a, port_a) = node(&redis).await;
    let (_b, port_b) = node(&redis).await;
    let subscriber = client(port_b);
    let mut sub = subscriber.subscribe("stall").await.unwrap();
    subscribed(&mut sub).await;
    let publisher = client(port_a);
    publisher.publish("stall", &1).await.unwrap();
    assert_eq!(offsets(&mut sub, 1).await, [1]);
    // Redis stops answering (a stalled host, a long fork) for 3 s.
    redis.signal("STOP");
    let started = std::time::Instant::now();
    let refused = publisher.publish("stall", &2).await.unwrap_err();
    assert!(
        refused.code() == Some(112) || matches!(refused, tether_client::Error::Timeout(_)),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    println!(
        "Redis SIGSTOPped: publish refused after {:?} ({refused})",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    redis.signal("CONT");
    // No node is wedged: publishing works again...
    let mut marker = None;
    for _ in 0..50 {
        marker = publisher.publish("stall", &"after").await.ok();
        if marker.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let marker = marker.expect("publishing again").offset;
    // ...and the other node delivers what Redis holds (the timed-out publish
    // too, if Redis ran it once it woke), once and in order.
    let history = publisher.history("stall", None).await.unwrap();
    let expected: Vec<u64> = history
        .publications
        .iter()
        .map(|p| p.offset)
        .filter(|o| *o > 1)
        .collect();
    assert_eq!(expected.last(), Some(&marker));
    assert_eq!(offsets(&mut sub, expected.len()).await, expected);
}

#[tokio::test]
async fn redis_restarted_empty_resumes_delivery_and_reports_the_lost_history() {
    let redis = RedisServer::start().await;
    let port_redis = redis.port;
    let (_a, port_a) = node(&redis).await;
    let (_b, port_b) = node(&redis).await;
    let subscriber = client(port_b);
    let mut sub = subscriber.subscribe("restart").await.unwrap();
    subscribed(&mut sub).await;
    let publisher = client(port_a);
    for n in 1..=5 {
        publisher.publish("restart", &n).await.unwrap();
    }
    assert_eq!(offsets(&mut sub, 5).await, [1, 2, 3, 4, 5]);
    // Killed, and started again without persistence: the channel is gone.
    redis.signal("KILL");
    drop(redis);
    let refused = publisher.publish("restart", &6).await.unwrap_err();
    assert!(
        refused.code() == Some(112) || matches!(refused, tether_client::Error::Timeout(_)),
        "{refused}"
    );
    let _redis = RedisServer::start_on(port_redis).await;
    let restarted = std::time::Instant::now();
    // Without restarting tether: node B finds the channel's history gone
    // and has its subscriber resubscribe (4003), which is told so.
    let told = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match sub.next().await.unwrap() {
                SubscriptionEvent::Unrecovered { .. } => return true,
                SubscriptionEvent::Publication(p) => {
                    panic!("a publication before the reset: {}", p.offset)
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the subscriber told its history is gone");
    assert!(told);
    println!(
        "Redis restarted empty: subscriber on the other node told unrecovered {:?} after the restart",
        restarted.elapsed()
    );
    // And delivery goes on, across nodes, in the new epoch.
    let mut ack = None;
    for _ in 0..50 {
        ack = publisher.publish("restart", &7).await.ok();
        if ack.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SubscriptionEvent::Publication(p) = sub.next().await.unwrap() {
                return p.offset;
            }
        }
    })
    .await
    .expect("delivery resumes");
    assert_eq!(Some(next), ack.map(|a| a.offset));
}

/// nginx (Debian's) in front of `ports`, on a free port, with
/// deploy/nginx.conf's settings; stopped (by PID) when dropped.
struct Nginx {
    _child: Child,
    port: u16,
    _dir: std::path::PathBuf,
}

impl Nginx {
    async fn start(ports: &[u16]) -> Self {
        let port = tether_testing::free_port();
        let dir = std::env::temp_dir().join(format!("tether-nginx-{port}"));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let template = include_str!("../../../deploy/nginx.conf");
        let upstreams: String = ports
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let mut config = String::new();
        let mut in_upstream = false;
        for line in template.lines() {
            if line.trim_start().starts_with("server 127.0.0.1:808") {
                if !in_upstream {
                    config.push_str(&upstreams);
                    in_upstream = true;
                }
                continue;
            }
            let line = line
                .replace(
                    "listen 127.0.0.1:8080;",
                    &format!("listen 127.0.0.1:{port};"),
                )
                .replace("worker_processes auto;", "worker_processes 1;");
            config.push_str(&line);
            config.push('\n');
        }
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        let child = Child(
            std::process::Command::new("/usr/sbin/nginx")
                .args([
                    "-c",
                    dir.join("nginx.conf").to_str().unwrap(),
                    "-p",
                    dir.to_str().unwrap(),
                ])
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx starts (scripts/setup.sh installs it)"),
        );
        eventually("nginx listening", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Self {
            _child: child,
            port,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn through_nginx_a_node_killed_mid_stream_loses_nothing() {
    let redis = RedisServer::start().await;
    let mut nodes = vec![node(&redis).await, node(&redis).await, node(&redis).await];
    let ports: Vec<u16> = nodes.iter().map(|(_, p)| *p).collect();
    let nginx = Nginx::start(&ports).await;
    // 60 clients, spread over the three nodes by nginx's round robin.
    let mut clients = Vec::new();
    for _ in 0..60 {
        let c = client(nginx.port);
        let events = c.events();
        let mut sub = c.subscribe("numbers").await.unwrap();
        subscribed(&mut sub).await;
        clients.push((c, sub, events));
    }
    let publisher = client(ports[0]);
    let total = 300u64;
    for n in 1..=total {
        publisher.publish("numbers", &n).await.unwrap();
        if n == 100 {
            // A node dies mid-stream: its clients come back through nginx
            // to the others and resume.
            let (killed, _) = nodes.remove(1);
            drop(killed);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut moved = 0;
    for (_, sub, events) in &mut clients {
        assert_eq!(
            offsets(sub, total as usize).await,
            (1..=total).collect::<Vec<u64>>()
        );
        let mut reconnected = false;
        while let Ok(event) = events.try_recv() {
            reconnected |= matches!(event, tether_client::Event::Reconnecting { .. });
        }
        moved += usize::from(reconnected);
    }
    // The killed node's share came back through nginx; the others never left.
    assert!((5..=40).contains(&moved), "{moved} of 60 reconnected");
    println!("through nginx: node SIGKILLed at 100 of {total}; {moved} of 60 clients moved; all saw 1..{total} once, in order");
}

#[tokio::test]
async fn pubsub_connections_killed_mid_stream_lose_no_publication() {
    let redis = RedisServer::start().await;
    let (_a, port_a) = node(&redis).await;
    let (_b, port_b) = node(&redis).await;
    let mut subs = Vec::new();
    let subscribers: Vec<Client> = (0..5).map(|_| client(port_b)).collect();
    for c in &subscribers {
        let mut sub = c.subscribe("ticker").await.unwrap();
        subscribed(&mut sub).await;
        subs.push(sub);
    }
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let publisher = client(port_a);
    let total = 400u64;
    for n in 1..=total {
        publisher.publish("ticker", &n).await.unwrap();
        if n % 100 == 50 {
            // Every node's pub/sub connection dropped, with what was in flight.
            let killed: u64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut admin)
                .await
                .unwrap();
            assert!(killed >= 1, "node B's pub/sub connection is there to kill");
        }
    }
    for sub in &mut subs {
        assert_eq!(
            offsets(sub, total as usize).await,
            (1..=total).collect::<Vec<u64>>()
        );
    }
    // Node B counted what it read back or reconnected for.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port_b}").parse().unwrap();
    let (_, metrics) = tether_testing::http_raw(addr, "GET", "/metrics", "", "").await;
    let reconnects = metrics
        .lines()
        .find(|line| line.starts_with("tether_redis_reconnects_total"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(reconnects >= 4.0, "{metrics}");
    let filled = metrics
        .lines()
        .find(|line| line.starts_with("tether_redis_gaps_filled_total"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    println!(
        "pub/sub killed 4 times in {total} publications: 5 subscribers got all once, in order; \
         node B reconnected {reconnects} times, filled {filled} from the stream"
    );
}
