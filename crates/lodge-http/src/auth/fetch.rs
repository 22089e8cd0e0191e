//! The few HTTP exchanges with an issuer (discovery, keys, introspection): each
//! bounded in time and size, since an issuer that hangs or answers megabytes must not
//! hold requests or memory.

use serde_json::Value;
use std::time::Duration;

/// The longest an issuer may take to answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from an issuer.
const MAX_ANSWER: usize = 256 << 10;

pub(crate) fn client() -> reqwest::Client {
    // https issuers need a TLS provider; the process may already have installed one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        // An issuer's endpoints are named by its metadata; a redirect is not followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Sends `request` and reads its JSON answer (2xx only).
pub(crate) async fn json(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut response = request.send().await.map_err(|e| fail(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(&format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(fail(&format!("answer larger than {MAX_ANSWER} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| fail(&format!("not JSON: {e}")))
}
