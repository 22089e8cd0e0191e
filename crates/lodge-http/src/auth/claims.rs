//! The rules every access token's claims must meet, whether they came from a verified
//! JWT or from the issuer's introspection answer: one set of checks, without I/O.

use super::AuthRefusal;
use lodge_runtime::Principal;
use serde_json::Value;
use std::time::Duration;

/// The longest principal (subject or client id) Lodge accepts: it is logged, put in
/// the sandbox's environment and in HTTP headers to the server.
const MAX_PRINCIPAL: usize = 256;

/// What a token must say to be accepted.
pub(crate) struct Rules<'a> {
    pub issuers: &'a [String],
    /// Audiences that name this request's resource: Lodge's, or this server's.
    pub audiences: &'a [String],
    pub scopes: &'a [String],
    pub allowed_clients: &'a [String],
    pub principal_claim: &'a str,
    pub leeway: Duration,
    /// Unix seconds.
    pub now: u64,
    /// JWTs must carry `exp`; an introspection answer may leave it out.
    pub require_exp: bool,
}

fn invalid(why: impl Into<String>) -> AuthRefusal {
    AuthRefusal::Invalid(why.into())
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn number(claims: &Value, name: &str) -> Result<Option<u64>, AuthRefusal> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| Some(n as u64))
            .ok_or_else(|| invalid(format!("the token's {name} is not a time"))),
    }
}

/// A principal name Lodge can pass on unchanged: non-empty, bounded, printable.
fn usable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_PRINCIPAL && name.chars().all(|c| !c.is_control())
}

/// Checks `claims` against `rules`; the principal they name, or why they are refused.
/// `default_issuer` stands in for a missing `iss` (only an introspection answer may
/// leave it out: the endpoint speaks for its issuer).
pub(crate) fn check(
    claims: &Value,
    rules: &Rules<'_>,
    default_issuer: Option<&str>,
) -> Result<Principal, AuthRefusal> {
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) => iss.as_str(),
        None if default_issuer.is_some() => default_issuer.unwrap_or_default(),
        _ => return Err(invalid("the token names no issuer")),
    };
    if !rules.issuers.iter().any(|i| i == issuer) {
        return Err(invalid(format!(
            "tokens from issuer {issuer:?} are not accepted"
        )));
    }
    let audiences = strings(claims.get("aud"));
    if !audiences
        .iter()
        .any(|a| rules.audiences.iter().any(|r| r == a))
    {
        return Err(invalid(format!(
            "the token is not for this resource (audience {audiences:?}, expected {:?})",
            rules.audiences[0]
        )));
    }
    let leeway = rules.leeway.as_secs();
    match number(claims, "exp")? {
        Some(exp) if rules.now > exp.saturating_add(leeway) => {
            return Err(invalid("the token has expired"));
        }
        None if rules.require_exp => return Err(invalid("the token has no expiry")),
        _ => {}
    }
    if let Some(nbf) = number(claims, "nbf")?
        && rules.now.saturating_add(leeway) < nbf
    {
        return Err(invalid("the token is not valid yet"));
    }
    let client = ["azp", "client_id"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str));
    if !rules.allowed_clients.is_empty()
        && !client.is_some_and(|c| rules.allowed_clients.iter().any(|a| a == c))
    {
        return Err(AuthRefusal::ClientNotAllowed(
            client.unwrap_or("(none)").to_string(),
        ));
    }
    let granted: Vec<&str> = match claims.get("scope") {
        Some(Value::String(s)) => s.split_ascii_whitespace().collect(),
        _ => strings(claims.get("scp"))
            .into_iter()
            .flat_map(str::split_ascii_whitespace)
            .collect(),
    };
    if let Some(missing) = rules.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
        return Err(AuthRefusal::InsufficientScope(missing.clone()));
    }
    // A client-credentials token may name no user: the client is the principal.
    let subject = claims
        .get(rules.principal_claim)
        .and_then(Value::as_str)
        .or(client)
        .ok_or_else(|| {
            invalid(format!(
                "the token has no {:?} claim and no client id",
                rules.principal_claim
            ))
        })?;
    if !usable(subject) || !usable(issuer) {
        return Err(invalid(
            "the token's subject or issuer is empty, too long or not printable",
        ));
    }
    Ok(Principal::new(issuer, subject))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn rules<'a>(
        issuers: &'a [String],
        audiences: &'a [String],
        scopes: &'a [String],
    ) -> Rules<'a> {
        Rules {
            issuers,
            audiences,
            scopes,
            allowed_clients: &[],
            principal_claim: "sub",
            leeway: Duration::from_secs(60),
            now: NOW,
            require_exp: true,
        }
    }

    fn good() -> Value {
        json!({"iss": "https://idp", "aud": ["https://lodge/mcp"], "sub": "alice",
               "exp": NOW + 300, "scope": "openid mcp", "azp": "app"})
    }

    fn run(claims: Value) -> Result<Principal, AuthRefusal> {
        let issuers = ["https://idp".to_string()];
        let audiences = ["https://lodge/mcp".to_string()];
        let scopes = ["mcp".to_string()];
        check(&claims, &rules(&issuers, &audiences, &scopes), None)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut claims = good();
        claims[key] = value;
        claims
    }

    #[test]
    fn a_good_token_names_its_issuer_and_subject() {
        assert_eq!(
            run(good()).ok(),
            Some(Principal::new("https://idp", "alice"))
        );
        // aud as a single string, scopes as scp.
        let mut claims = with("aud", json!("https://lodge/mcp"));
        claims.as_object_mut().map(|c| c.remove("scope"));
        claims["scp"] = json!(["mcp"]);
        assert!(run(claims).is_ok());
    }

    #[test]
    fn each_rule_refuses_what_breaks_it() {
        let refused = |claims: Value, what: &str| {
            let e = run(claims).expect_err(what);
            assert!(e.to_string().contains(what), "{e} lacks {what:?}");
        };
        refused(with("iss", json!("https://evil")), "not accepted");
        refused(
            with("aud", json!("https://other/mcp")),
            "not for this resource",
        );
        refused(with("exp", json!(NOW - 61)), "expired");
        refused(with("exp", json!("soon")), "not a time");
        refused(with("nbf", json!(NOW + 61)), "not valid yet");
        refused(with("scope", json!("openid")), "mcp");
        refused(with("sub", json!("x".repeat(257))), "too long");
        refused(with("sub", json!("a\nb")), "not printable");
        let mut no_exp = good();
        no_exp.as_object_mut().map(|c| c.remove("exp"));
        refused(no_exp, "no expiry");
    }

    #[test]
    fn leeway_admits_a_token_just_past_its_expiry() {
        assert!(run(with("exp", json!(NOW - 59))).is_ok());
        assert!(run(with("nbf", json!(NOW + 59))).is_ok());
    }

    #[test]
    fn a_client_credentials_token_is_its_client() {
        let mut claims = good();
        claims.as_object_mut().map(|c| c.remove("sub"));
        claims["client_id"] = json!("robot");
        claims.as_object_mut().map(|c| c.remove("azp"));
        assert_eq!(
            run(claims).ok(),
            Some(Principal::new("https://idp", "robot"))
        );
    }

    #[test]
    fn missing_scope_and_unlisted_clients_are_forbidden_not_unauthenticated() {
        assert!(matches!(
            run(with("scope", json!("openid"))),
            Err(AuthRefusal::InsufficientScope(s)) if s == "mcp"
        ));
        let (issuers, audiences, scopes) = (
            ["https://idp".to_string()],
            ["https://lodge/mcp".to_string()],
            ["mcp".to_string()],
        );
        let allowed = ["other-app".to_string()];
        let mut r = rules(&issuers, &audiences, &scopes);
        r.allowed_clients = &allowed;
        assert!(
            matches!(check(&good(), &r, None), Err(AuthRefusal::ClientNotAllowed(c)) if c == "app")
        );
    }

    #[test]
    fn an_introspection_answer_without_iss_speaks_for_its_issuer() {
        let mut claims = good();
        claims.as_object_mut().map(|c| c.remove("iss"));
        let (issuers, audiences, scopes) = (
            ["https://idp".to_string()],
            ["https://lodge/mcp".to_string()],
            ["mcp".to_string()],
        );
        let r = rules(&issuers, &audiences, &scopes);
        assert!(check(&claims, &r, Some("https://idp")).is_ok());
        assert!(check(&claims, &r, None).is_err());
    }
}
