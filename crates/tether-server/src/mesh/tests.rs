//! The exchange over an in-process carrier that can lose messages on
//! purpose (the Redis one is tested against a real Redis in
//! `tests/redis_mesh.rs`).

use std::sync::atomic::AtomicUsize;

use super::*;

/// Nodes in one process; every `drop_every`-th part is lost when set.
#[derive(Debug, Default)]
struct Hall {
    nodes: Mutex<HashMap<String, mpsc::Sender<Bytes>>>,
    sent_parts: AtomicUsize,
    drop_every: AtomicUsize,
}

#[derive(Debug)]
struct Member {
    hall: Arc<Hall>,
    node: String,
    incoming: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

impl Member {
    fn join(hall: &Arc<Hall>, node: &str) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel(1024);
        hall.nodes.lock().unwrap().insert(node.to_owned(), sender);
        Arc::new(Self {
            hall: hall.clone(),
            node: node.to_owned(),
            incoming: Mutex::new(Some(receiver)),
        })
    }
}

impl Mesh for Member {
    fn node(&self) -> &str {
        &self.node
    }

    fn send<'a>(&'a self, node: &'a str, message: Bytes) -> MeshFuture<'a, bool> {
        Box::pin(async move {
            let sender = self.hall.nodes.lock().unwrap().get(node).cloned();
            let Some(sender) = sender else {
                return Ok(false);
            };
            if message.starts_with(b"R ") {
                let n = self.hall.sent_parts.fetch_add(1, Ordering::Relaxed) + 1;
                let every = self.hall.drop_every.load(Ordering::Relaxed);
                if every > 0 && n % every == 0 {
                    return Ok(true); // lost on the way
                }
            }
            Ok(sender.send(message).await.is_ok())
        })
    }

    fn incoming(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.incoming.lock().unwrap().take()
    }
}

/// Two exchanges, `a` and `b`; `b` answers a payload `n` with the parts
/// "0".."n-1", one every `gap`.
fn pair(hall: &Arc<Hall>, gap: Duration) -> (Arc<Exchange>, Arc<Exchange>, Arc<AtomicUsize>) {
    let a = Exchange::new(Member::join(hall, "a"));
    let b = Exchange::new(Member::join(hall, "b"));
    let ended = Arc::new(AtomicUsize::new(0));
    tokio::spawn(a.clone().run(|_| futures_util::stream::empty()));
    let counter = ended.clone();
    tokio::spawn(b.clone().run(move |payload| {
        let n: usize = std::str::from_utf8(&payload).unwrap().parse().unwrap();
        let counter = counter.clone();
        futures_util::stream::unfold(0, move |i| {
            let counter = counter.clone();
            async move {
                if i == n {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                tokio::time::sleep(gap).await;
                Some((Bytes::from(i.to_string()), i + 1))
            }
        })
    }));
    (a, b, ended)
}

#[tokio::test]
async fn an_answer_arrives_whole_and_in_order() {
    let hall = Arc::default();
    let (a, _b, _) = pair(&hall, Duration::ZERO);
    let answer = a
        .call("b", Bytes::from_static(b"300"), Duration::from_secs(5))
        .await
        .unwrap()
        .expect("b listens");
    let parts: Vec<Bytes> = answer.into_stream().map(Result::unwrap).collect().await;
    let expected: Vec<Bytes> = (0..300).map(|i| Bytes::from(i.to_string())).collect();
    assert_eq!(parts, expected);
    assert!(a.waiting().is_empty());
}

#[tokio::test]
async fn a_node_that_does_not_listen_is_told_apart() {
    let hall = Arc::default();
    let (a, _b, _) = pair(&hall, Duration::ZERO);
    let answer = a
        .call("c", Bytes::from_static(b"1"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.is_none());
    assert!(a.waiting().is_empty());
}

#[tokio::test]
async fn a_lost_part_breaks_the_answer_instead_of_leaving_a_hole() {
    let hall: Arc<Hall> = Arc::default();
    hall.drop_every.store(5, Ordering::Relaxed);
    let (a, _b, _) = pair(&hall, Duration::ZERO);
    let answer = a
        .call("b", Bytes::from_static(b"20"), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let parts: Vec<Result<Bytes, MeshError>> = answer.into_stream().collect().await;
    // Parts 0..3 came; the fifth was lost, so the sixth breaks it.
    assert_eq!(parts.len(), 5);
    assert!(parts[..4].iter().all(Result::is_ok));
    assert_eq!(parts[4], Err(MeshError::Broken("b".into())));
}

#[tokio::test(start_paused = true)]
async fn a_silent_answer_fails_and_a_dropped_one_stops_its_node() {
    let hall = Arc::default();
    let (a, b, ended) = pair(&hall, Duration::from_secs(10));
    let mut answer = a
        .call("b", Bytes::from_static(b"5"), Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    let first = answer.next().await.unwrap();
    assert!(matches!(first, Err(MeshError::Silent { .. })), "{first:?}");
    assert_eq!(b.serving().len(), 1);
    drop(answer);
    // The cancel reaches b, which stops before its stream ends.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(b.serving().is_empty());
    assert_eq!(ended.load(Ordering::Relaxed), 0);
}
