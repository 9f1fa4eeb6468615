//! Who may do what: the Origin allow-list, JWT authentication (HS256,
//! ES256) and its channel claims, per-namespace subscribe and publish rules.

mod common;

use common::{hs256, http, now, start, Client};
use serde_json::json;
use tether_server::{NamespaceOptions, ServerConfig};
use tether_testing::Conversation;

#[tokio::test]
async fn refuses_a_foreign_origin_with_403() {
    let config = ServerConfig::default().allowed_origins(vec!["http://app.example".into()]);
    let server = start(config).await;
    let url = format!("ws://{}/connection/websocket", server.addr);
    let refused = tether::ClientBuilder::new(&url)
        .header("Origin", "http://evil.example")
        .connect()
        .await;
    assert!(
        matches!(
            refused,
            Err(tether::Error::Handshake(
                tether::HandshakeError::UnexpectedStatus(403)
            ))
        ),
        "{refused:?}"
    );
    let allowed = tether::ClientBuilder::new(&url)
        .header("Origin", "http://app.example")
        .connect()
        .await;
    assert!(allowed.is_ok());
}

#[tokio::test]
async fn authenticates_with_jwt_and_enforces_channel_claims() {
    let auth = tether_server::auth::AuthConfig::default().hmac_secret("s3cret");
    let server = start(ServerConfig::default().auth(auth)).await;

    let mut anonymous = Client::connect(&server).await;
    let reply = anonymous
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert_eq!(
        reply["error"]["code"], 111,
        "anonymous access is off once a key is set"
    );

    let mut expired = Client::connect(&server).await;
    let token = hs256("s3cret", json!({"sub": "alice", "exp": now() - 3600}));
    let reply = expired.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Expired"),
        "{reply}"
    );

    let mut forged = Client::connect(&server).await;
    let token = hs256("wrong key", json!({"sub": "mallory", "exp": now() + 3600}));
    let reply = forged.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");

    let mut alice = Client::connect(&server).await;
    let token = hs256(
        "s3cret",
        json!({"sub": "alice", "exp": now() + 3600, "channels": ["chat:*"]}),
    );
    let reply = alice.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["result"]["user"], "alice");
    let reply = alice
        .call(json!({"op": "subscribe", "channel": "chat:lobby"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let presence = alice
        .call(json!({"op": "presence", "channel": "chat:lobby"}))
        .await;
    assert_eq!(
        presence["result"]["clients"][0]["user"], "alice",
        "presence shows the token's user"
    );
    let reply = alice
        .call(json!({"op": "subscribe", "channel": "admin:secrets"}))
        .await;
    assert_eq!(
        reply["error"]["code"], 103,
        "the token's channel claims are enforced"
    );
    let reply = alice
        .call(json!({"op": "publish", "channel": "admin:secrets", "data": 1}))
        .await;
    assert_eq!(reply["error"]["code"], 103);
}

#[tokio::test]
async fn accepts_es256_tokens() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let auth = tether_server::auth::AuthConfig::default().ec_public_key_pem(key.public_key_pem());
    let server = start(ServerConfig::default().auth(auth)).await;
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    let claims = json!({"sub": "bob", "exp": now() + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &encoding,
    )
    .unwrap();
    let mut bob = Client::connect(&server).await;
    let reply = bob.call(json!({"op": "connect", "token": token})).await;
    assert_eq!(reply["result"]["user"], "bob", "{reply}");
    let hs = hs256("any", json!({"sub": "eve", "exp": now() + 600}));
    let reply = bob.call(json!({"op": "connect", "token": hs})).await;
    assert_eq!(
        reply["error"]["code"], 111,
        "HS256 is not configured here: {reply}"
    );
}

#[tokio::test]
async fn enforces_per_namespace_subscribe_and_publish_permissions() {
    use tether_server::Access;
    let auth = tether_server::auth::AuthConfig::default()
        .hmac_secret("s3cret")
        .allow_anonymous(true);
    let config = ServerConfig::default()
        .auth(auth)
        .namespace("news", NamespaceOptions::default().publish(Access::Nobody))
        .namespace(
            "team",
            NamespaceOptions::default()
                .subscribe(Access::Authenticated)
                .publish(Access::Authenticated),
        )
        .namespace(
            "vip",
            NamespaceOptions::default().subscribe(Access::Granted),
        );
    let server = start(config).await;
    let mut anonymous = Client::connect(&server).await;
    let mut member = Client::connect(&server).await;
    let token = hs256("s3cret", json!({"sub": "ann", "exp": now() + 600}));
    member.call(json!({"op": "connect", "token": token})).await;
    let mut vip = Client::connect(&server).await;
    let token = hs256(
        "s3cret",
        json!({"sub": "vic", "exp": now() + 600, "channels": ["vip:*", "news:*", "team:*"]}),
    );
    vip.call(json!({"op": "connect", "token": token})).await;

    // news: anyone reads, no client publishes, the API does.
    let reply = anonymous
        .call(json!({"op": "subscribe", "channel": "news:today"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    for client in [&mut anonymous, &mut member, &mut vip] {
        let reply = client
            .call(json!({"op": "publish", "channel": "news:today", "data": 1}))
            .await;
        assert_eq!(reply["error"]["code"], 103, "{reply}");
    }
    let body = json!({"channel": "news:today", "data": "headline"}).to_string();
    let (status, _) = http(server.addr, "POST", "/api/publish", &body, "").await;
    assert_eq!(status, 200);
    assert_eq!(anonymous.publication().await["data"], "headline");

    // team: a token is needed to subscribe, publish, or read history and presence.
    for op in ["subscribe", "history", "presence"] {
        let reply = anonymous
            .call(json!({"op": op, "channel": "team:dev"}))
            .await;
        assert_eq!(reply["error"]["code"], 111, "{op}: {reply}");
    }
    let reply = anonymous
        .call(json!({"op": "publish", "channel": "team:dev", "data": 1}))
        .await;
    assert_eq!(reply["error"]["code"], 111, "{reply}");
    let reply = member
        .call(json!({"op": "subscribe", "channel": "team:dev"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let reply = member
        .call(json!({"op": "publish", "channel": "team:dev", "data": 2}))
        .await;
    assert_eq!(reply["result"]["offset"], 1, "{reply}");

    // vip: only a token that lists the channel.
    let reply = member
        .call(json!({"op": "subscribe", "channel": "vip:lounge"}))
        .await;
    assert_eq!(reply["error"]["code"], 103, "{reply}");
    let reply = vip
        .call(json!({"op": "subscribe", "channel": "vip:lounge"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
    let reply = vip
        .call(json!({"op": "unsubscribe", "channel": "vip:lounge"}))
        .await;
    assert!(reply["result"].is_object(), "{reply}");
}
