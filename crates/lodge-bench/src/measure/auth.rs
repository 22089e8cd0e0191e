//! What validating an access token adds to a request: the same `tools/call echo`
//! round trip as the relay row, through a Lodge with `[auth] mode = "oauth"`, against
//! a Lodge started the same way without it, interleaved round by round.
//!
//! The issuer runs in this process (axum): RFC 8414 metadata, a JWKS with one Ed25519
//! key, and an RFC 7662 introspection endpoint that knows one opaque token. Ed25519
//! verification costs about what RS256 does (ring: tens of microseconds either way).
//! - **JWT**: every request's signature verified, keys cached after the first;
//! - **opaque**: introspected once, then answered from the positive cache.

use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::LodgeServer;
use crate::mcp;
use crate::report::Row;
use anyhow::Context;
use base64::Engine;
use lodge_testkit::server::{Launch, OnDrop};
use ring::signature::KeyPair;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TEXT: &str = "hi";
const OPAQUE: &str = "opaque-bench-token-0123456789";

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let issuer = Issuer::start().await?;
    let open = start_lodge(ctx, None)?;
    // A/A: two Lodges without auth differ by this much on their own.
    let also_open = start_lodge(ctx, None)?;
    let guarded = start_lodge(ctx, Some(&issuer.url))?;
    let off = McpHttp::new(open.url())?;
    let also_off = McpHttp::new(also_open.url())?;
    let jwt = McpHttp::with_bearer(guarded.url(), Some(&issuer.jwt))?;
    let opaque = McpHttp::with_bearer(guarded.url(), Some(OPAQUE))?;
    let clients = [&off, &jwt, &opaque, &also_off];
    let mut sessions = Vec::new();
    for client in clients {
        sessions.push(client.open_session().await?);
    }
    let mut took: [Vec<Duration>; 4] = Default::default();
    let mut next_id = 1u64;
    for round in 0..counts.warmup + counts.iterations {
        for k in 0..clients.len() {
            let which = (round + k) % clients.len();
            let id = next_id;
            next_id += 1;
            let start = Instant::now();
            let mut reply = clients[which]
                .post(Some(&sessions[which]), mcp::echo(id, TEXT))
                .await
                .with_context(|| format!("round {round}, client {which}"))?;
            let response = reply.response_to(id).await?;
            let elapsed = start.elapsed();
            reply.finish().await?;
            mcp::check_echo(&response, TEXT)?;
            if round >= counts.warmup {
                took[which].push(elapsed);
            }
        }
    }
    for (client, session) in clients.iter().zip(&sessions) {
        client.delete(session).await?;
    }
    const OFF: &str = "same call, Lodge without [auth]";
    Ok(vec![
        Row::new(
            "auth: same call with a JWT (signature checked, keys cached)",
            &took[1],
            Some((OFF, &took[0])),
        )?,
        Row::new(
            "auth: same call with an opaque token (introspection cached)",
            &took[2],
            Some((OFF, &took[0])),
        )?,
        Row::new(
            "A/A: same call, a second Lodge without [auth]",
            &took[3],
            Some((OFF, &took[0])),
        )?,
    ])
}

/// A Lodge hosting the demo, with `[auth]` trusting `issuer` if there is one.
fn start_lodge(ctx: &Ctx, issuer: Option<&str>) -> anyhow::Result<LodgeServer> {
    let dir = tempfile::tempdir().context("cannot make a temp dir")?;
    let secret = dir.path().join("introspection.secret");
    std::fs::write(&secret, "bench-secret").context("cannot write the client secret")?;
    let toml = match issuer {
        Some(issuer) => format!(
            "[auth]\nmode = \"oauth\"\nresource = \"http://lodge.bench/mcp\"\nissuers = [{issuer:?}]\nscopes = [\"mcp\"]\nintrospection = {{ url = \"{issuer}/introspect\", client_id = \"lodge\", client_secret_file = {secret:?} }}\n"
        ),
        None => String::new(),
    };
    let server = Launch::in_dir(&ctx.lodge_bin, dir, &toml)
        .args(["--demo"])
        .log("warn")
        .on_drop(OnDrop::Stop)
        .start()?;
    Ok(server)
}

struct Issuer {
    url: String,
    jwt: String,
}

impl Issuer {
    async fn start() -> anyhow::Result<Issuer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("cannot make an Ed25519 key"))?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("cannot read the Ed25519 key"))?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key());
        let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        let claims = json!({"iss": url, "aud": "http://lodge.bench/mcp", "sub": "bench",
                            "exp": exp, "scope": "mcp"});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("bench".into());
        let jwt = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
        )?;
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench", "alg": "EdDSA"}]});
        let mut active = claims.clone();
        active["active"] = json!(true);
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            )
            .route(
                "/introspect",
                axum::routing::post(move |body: String| async move {
                    match body.contains(&format!("token={OPAQUE}")) {
                        true => axum::Json(active),
                        false => axum::Json(json!({"active": false})),
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Issuer { url, jwt })
    }
}
