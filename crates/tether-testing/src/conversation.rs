//! The request/reply side of `tether serve`'s protocol, written once for
//! every link a test speaks it over (a WebSocket, an SSE stream with POSTs,
//! long-polls): each request gets an id and waits for its reply, and the
//! pushes that arrive meanwhile are kept, in order, for later.

use std::collections::VecDeque;

use serde_json::{json, Value};

/// The ids given and the pushes kept by one conversation.
#[derive(Debug, Default)]
pub struct Sorted {
    next_id: u64,
    pushes: VecDeque<Value>,
}

impl Sorted {
    /// The pushes kept so far, oldest first; none are kept after this.
    pub fn take_pushes(&mut self) -> Vec<Value> {
        self.pushes.drain(..).collect()
    }
}

/// A link that speaks the protocol. A link provides [`Conversation::send`],
/// [`Conversation::next_message`] and its [`Sorted`]; the rest follows.
#[allow(async_fn_in_trait)] // Tests await these where they call them.
pub trait Conversation {
    /// Sends one request.
    async fn send(&mut self, request: &Value);

    /// The next message from the server; `None` once the session ended.
    async fn next_message(&mut self) -> Option<Value>;

    /// Its ids and kept pushes.
    fn sorted(&mut self) -> &mut Sorted;

    /// The next message, which must come.
    async fn next_value(&mut self) -> Value {
        self.next_message().await.expect("session open")
    }

    /// Sends a request with the next id and returns its reply; pushes that
    /// arrive first are kept.
    async fn call(&mut self, mut request: Value) -> Value {
        let sorted = self.sorted();
        sorted.next_id += 1;
        let id = sorted.next_id;
        request["id"] = json!(id);
        self.send(&request).await;
        self.reply_to(id).await
    }

    /// The reply to request `id`, keeping the pushes before it.
    async fn reply_to(&mut self, id: u64) -> Value {
        loop {
            let value = self.next_value().await;
            if value.get("push").is_some() {
                self.sorted().pushes.push_back(value);
            } else {
                assert_eq!(value["id"], json!(id), "reply out of order: {value}");
                return value;
            }
        }
    }

    /// The next push, from the kept ones first.
    async fn push(&mut self) -> Value {
        match self.sorted().pushes.pop_front() {
            Some(push) => push,
            None => self.next_value().await,
        }
    }

    /// The next publication push, skipping join and leave.
    async fn publication(&mut self) -> Value {
        loop {
            let push = self.push().await;
            if push["push"] == "publication" {
                return push;
            }
        }
    }
}
