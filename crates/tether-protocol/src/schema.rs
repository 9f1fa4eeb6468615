//! The JSON Schema (draft 2020-12) of every message, generated from the types
//! themselves: the contract the JavaScript client follows. The repository
//! keeps a copy in docs/protocol.schema.json, which a test keeps equal to
//! [`schema`] (`TETHER_BLESS=1 cargo test -p tether-protocol` rewrites it).

use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

use crate::api::{
    ApiError, BroadcastBody, BroadcastResults, ChannelList, DisconnectBody, HistoryQuery,
    PublishBody,
};
use crate::http::{Accepted, PollAnswer, SessionOpened};
use crate::push::Push;
use crate::reply::{Connected, Empty, HistoryPage, PresenceList, Published, Reply, Subscribed};
use crate::request::Request;

/// The schema document: one definition per type under `$defs`, and the
/// messages of each direction named at the top.
pub fn schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let client = generator.subschema_for::<Request>();
    let reply = generator.subschema_for::<Reply<Value>>();
    let push = generator.subschema_for::<Push>();
    for_results(&mut generator);
    let api = json!({
        "POST /api/publish": {
            "body": generator.subschema_for::<PublishBody>(),
            "answer": generator.subschema_for::<Published>(),
        },
        "POST /api/broadcast": {
            "body": generator.subschema_for::<BroadcastBody>(),
            "answer": generator.subschema_for::<BroadcastResults>(),
        },
        "POST /api/disconnect": {
            "body": generator.subschema_for::<DisconnectBody>(),
            "answer": generator.subschema_for::<Empty>(),
        },
        "GET /api/channels": { "answer": generator.subschema_for::<ChannelList>() },
        "GET /api/presence/{channel}": { "answer": generator.subschema_for::<PresenceList>() },
        "GET /api/history/{channel}": {
            "query": generator.subschema_for::<HistoryQuery>(),
            "answer": generator.subschema_for::<HistoryPage>(),
        },
        "errors": generator.subschema_for::<ApiError>(),
    });
    let http = json!({
        "POST /connection/longpoll": { "answer": generator.subschema_for::<SessionOpened>() },
        "GET /connection/longpoll/{session}": { "answer": generator.subschema_for::<PollAnswer>() },
        "POST /connection/session/{session}": { "answer": generator.subschema_for::<Accepted>() },
        "GET /connection/sse": { "session event": { "$ref": "#/$defs/SessionOpened" } },
    });
    let defs = generator.take_definitions(true);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tether serve wire protocol",
        "description": "Generated from crates/tether-protocol; docs/PROTOCOL.md explains it. A client sends ClientMessage and receives ServerMessage: a Reply (its result is the operation's result type, e.g. Subscribed for subscribe) or a Push.",
        "$defs": defs,
        "ClientMessage": client,
        "ServerMessage": { "oneOf": [reply, push] },
        "results": {
            "connect": { "$ref": "#/$defs/Connected" },
            "subscribe": { "$ref": "#/$defs/Subscribed" },
            "unsubscribe": { "$ref": "#/$defs/Empty" },
            "publish": { "$ref": "#/$defs/Published" },
            "presence": { "$ref": "#/$defs/PresenceList" },
            "history": { "$ref": "#/$defs/HistoryPage" },
            "ping": { "$ref": "#/$defs/Empty" },
        },
        "api": api,
        "http": http,
    })
}

/// Adds each operation's result type to the definitions.
fn for_results(generator: &mut schemars::SchemaGenerator) {
    generator.subschema_for::<Connected>();
    generator.subschema_for::<Subscribed>();
    generator.subschema_for::<Empty>();
    generator.subschema_for::<Published>();
    generator.subschema_for::<PresenceList>();
    generator.subschema_for::<HistoryPage>();
}

/// The schema as the committed file holds it: pretty JSON and a newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_schema_is_the_generated_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.schema.json"
        );
        let generated = schema_text();
        if std::env::var_os("TETHER_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/protocol.schema.json is out of date: run TETHER_BLESS=1 cargo test -p tether-protocol"
        );
    }

    #[test]
    fn every_referenced_definition_exists() {
        let schema = schema();
        let text = schema.to_string();
        let defs = schema["$defs"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(defs.contains_key(name), "no definition {name}");
        }
        for name in [
            "Request",
            "Push",
            "Subscribed",
            "ErrorBody",
            "StreamPosition",
        ] {
            assert!(defs.contains_key(name), "{name} is defined");
        }
    }
}
