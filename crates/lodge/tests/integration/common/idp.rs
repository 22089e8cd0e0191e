//! A real authorization server for the OAuth tests: `oidc-provider` from npm (pinned in
//! scripts/setup-node-packages.sh) run by tests/fixtures/node/idp.mjs, which documents its
//! clients, its headless approval and its control port. Each [`Idp`] is its own issuer
//! with its own signing key, so a second one is the "wrong issuer".

use super::{node_package_paths, repo_root};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the IdP has to print its ready line (node startup, an RSA key).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The client Lodge introspects with, and its secret (test-only; see idp.mjs).
pub const INTROSPECTION_CLIENT: (&str, &str) = ("lodge", "lodge-secret");
/// The pre-registered public client (authorization code + PKCE).
pub const PUBLIC_CLIENT: &str = "public-client";

/// An access token's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jwt,
    Opaque,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jwt => "jwt",
            Format::Opaque => "opaque",
        }
    }

    /// The confidential client whose tokens come in this format (its id, its secret).
    pub fn client(self) -> (&'static str, &'static str) {
        match self {
            Format::Jwt => ("jwt-client", "jwt-secret"),
            Format::Opaque => ("opaque-client", "opaque-secret"),
        }
    }
}

/// What to mint: a user's token (or, with `user: None`, a client-credentials one).
#[derive(Clone, Debug)]
pub struct Mint {
    pub user: Option<String>,
    pub format: Format,
    pub scope: String,
    pub resource: String,
    /// Seconds until it expires; zero or less gives an already expired token.
    pub ttl: i64,
}

impl Mint {
    /// A one-hour token of `user` with scope `mcp` for `resource`.
    pub fn user(user: &str, format: Format, resource: &str) -> Mint {
        Mint {
            user: Some(user.to_owned()),
            format,
            scope: "mcp".to_owned(),
            resource: resource.to_owned(),
            ttl: 3600,
        }
    }

    pub fn scope(mut self, scope: &str) -> Mint {
        self.scope = scope.to_owned();
        self
    }

    pub fn ttl(mut self, seconds: i64) -> Mint {
        self.ttl = seconds;
        self
    }
}

/// A child process killed (and reaped) on drop, so no panic leaves a node behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running IdP, killed on drop.
pub struct Idp {
    _child: KillOnDrop,
    issuer: String,
    control: String,
    http: reqwest::Client,
    /// Holds the introspection client's secret file.
    dir: tempfile::TempDir,
}

impl Idp {
    /// Starts `node idp.mjs` on free loopback ports and waits for its ready line.
    pub fn start() -> Idp {
        super::install_tls_provider();
        let paths = node_package_paths();
        let script = repo_root().join("tests/fixtures/node/idp.mjs");
        let child = Command::new(paths("NODE"))
            .arg(&script)
            .arg(paths("OIDC_PROVIDER"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting node {}: {e}", script.display()));
        let mut child = KillOnDrop(child);
        let stdout = child.0.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = tx.send(first);
            // Keep reading (and showing) whatever else it prints, so node never gets EPIPE.
            for line in lines.map_while(Result::ok) {
                eprintln!("idp: {line}");
            }
        });
        let line = match rx.recv_timeout(READY_WITHIN) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                panic!("idp.mjs printed no ready line within {READY_WITHIN:?}: {other:?}");
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("idp.mjs ready line is not JSON ({e}): {line}"));
        let field = |name: &str| {
            ready[name]
                .as_str()
                .unwrap_or_else(|| panic!("idp.mjs ready line has no {name}: {line}"))
                .to_owned()
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("introspection.secret"),
            INTROSPECTION_CLIENT.1,
        )
        .unwrap();
        Idp {
            issuer: field("issuer"),
            control: field("control"),
            _child: child,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `[auth]` table for Lodge trusting this IdP, introspecting opaque tokens with the
    /// `lodge` client, and requiring scope `mcp`; `extra` lines are added to the table.
    pub fn auth_toml(&self, extra: &str) -> String {
        let secret = self.dir.path().join("introspection.secret");
        format!(
            "[auth]\nmode = \"oauth\"\nissuers = [{issuer:?}]\n\
             introspection = {{ url = \"{issuer}/token/introspection\", client_id = {id:?}, client_secret_file = {secret:?} }}\n\
             scopes = [\"mcp\"]\nleeway = \"5s\"\nintrospection_cache = \"1s\"\n{extra}\n",
            issuer = self.issuer,
            id = INTROSPECTION_CLIENT.0,
        )
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.control);
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {url} {body}: {status} {answer}");
        answer
    }

    /// Mints a token with the provider's own token classes.
    pub async fn token(&self, mint: Mint) -> String {
        let mut body = json!({
            "format": mint.format.name(),
            "scope": mint.scope,
            "resource": mint.resource,
            "ttl": mint.ttl,
        });
        if let Some(user) = &mint.user {
            body["user"] = json!(user);
        }
        self.control("/token", body).await["access_token"]
            .as_str()
            .expect("the control port answers an access_token")
            .to_owned()
    }

    /// A client-credentials token from the token endpoint itself (the grant, not the
    /// control port): no user, so the principal is the client.
    pub async fn client_credentials(&self, format: Format, resource: &str) -> String {
        let (id, secret) = format.client();
        let answer = self
            .form_post(
                "/token",
                (id, secret),
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "mcp"),
                    ("resource", resource),
                ],
            )
            .await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {answer}"))
            .to_owned()
    }

    /// A new signing key (returns its kid); the old one leaves the JWKS.
    pub async fn rotate_keys(&self) -> String {
        self.control("/rotate", json!({})).await["kid"]
            .as_str()
            .expect("the control port answers a kid")
            .to_owned()
    }

    /// Revokes an opaque token (RFC 7009) as its client, opaque-client.
    pub async fn revoke(&self, token: &str) {
        self.form_post(
            "/token/revocation",
            Format::Opaque.client(),
            &[("token", token)],
        )
        .await;
    }

    /// The provider's RFC 7662 introspection answer, as Lodge's client gets it.
    pub async fn introspect(&self, token: &str) -> Value {
        self.form_post(
            "/token/introspection",
            INTROSPECTION_CLIENT,
            &[("token", token)],
        )
        .await
    }

    async fn form_post(&self, path: &str, client: (&str, &str), form: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.issuer);
        let response = self
            .http
            .post(&url)
            .basic_auth(client.0, Some(client.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_urlencoded(form))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
        }
    }
}

/// `application/x-www-form-urlencoded` (every byte outside the unreserved set escaped).
fn form_urlencoded(form: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    form.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---------------------------------------------------------------------------------------
// JWT surgery for the forged-token tests: base64url edits only, no crypto.

/// A JWT's three parts, split; panics on anything else.
fn parts(jwt: &str) -> [&str; 3] {
    let parts: Vec<&str> = jwt.split('.').collect();
    match parts[..] {
        [h, p, s] => [h, p, s],
        _ => panic!("not a JWS compact JWT: {jwt}"),
    }
}

fn decode_part(part: &str) -> Value {
    let bytes = base64url::decode(part).unwrap_or_else(|| panic!("not base64url: {part}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {part}"))
}

/// A JWT's header.
pub fn jwt_header(jwt: &str) -> Value {
    decode_part(parts(jwt)[0])
}

/// A JWT's claims.
pub fn jwt_claims(jwt: &str) -> Value {
    decode_part(parts(jwt)[1])
}

/// The same claims under `{"alg": "none"}` and an empty signature (RFC 7519 §6.1).
pub fn forge_alg_none(jwt: &str) -> String {
    let [_, payload, _] = parts(jwt);
    let header = base64url::encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    format!("{header}.{payload}.")
}

/// The same token with different claims (`edit` changes them) and the original signature,
/// which then no longer matches.
pub fn forge_claims(jwt: &str, edit: impl FnOnce(&mut Value)) -> String {
    let [header, _, signature] = parts(jwt);
    let mut claims = jwt_claims(jwt);
    edit(&mut claims);
    let payload = base64url::encode(claims.to_string().as_bytes());
    format!("{header}.{payload}.{signature}")
}

/// The same header and claims with one signature bit flipped.
pub fn forge_bad_signature(jwt: &str) -> String {
    let [header, payload, signature] = parts(jwt);
    let mut bytes = base64url::decode(signature).expect("a base64url signature");
    let last = bytes.last_mut().expect("a non-empty signature");
    *last ^= 0x01;
    format!("{header}.{payload}.{}", base64url::encode(&bytes))
}

/// Unpadded base64url (RFC 4648 §5), as JWS compact serialization uses it.
pub mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in text.bytes() {
            let v = ALPHABET.iter().position(|a| *a == c)? as u32;
            acc = acc << 6 | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits & 0xff) as u8);
            }
        }
        // A lone sixth bit-group cannot end a valid encoding.
        (bits < 6).then_some(out)
    }

    #[test]
    fn round_trips() {
        for text in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0xff, 0xfe, 0x00],
        ] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(decode("Z"), None);
        assert_eq!(decode("Zm9v+"), None);
    }
}
