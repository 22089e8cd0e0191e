//! Who a session belongs to.

use std::sync::Arc;

/// The issuer and subject of the token that created a session; both empty when
/// Lodge runs without authentication. A session answers only its own principal:
/// to anyone else it does not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Principal {
    issuer: Arc<str>,
    subject: Arc<str>,
}

impl Principal {
    pub fn new(issuer: &str, subject: &str) -> Self {
        Principal {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }

    /// Everyone, when authentication is off.
    pub fn anonymous() -> Self {
        Principal::default()
    }

    pub fn is_anonymous(&self) -> bool {
        self.issuer.is_empty() && self.subject.is_empty()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// One string naming both, unambiguous whatever either contains (the issuer's
    /// length comes first): what a sealed `requestState` records.
    pub fn key(&self) -> String {
        format!("{}:{}{}", self.issuer.len(), self.issuer, self.subject)
    }

    /// What a sandboxed server learns of its user (`LODGE_PRINCIPAL`,
    /// `LODGE_PRINCIPAL_ISSUER`): nothing without authentication.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        if self.is_anonymous() {
            return Vec::new();
        }
        vec![
            ("LODGE_PRINCIPAL", self.subject.to_string()),
            ("LODGE_PRINCIPAL_ISSUER", self.issuer.to_string()),
        ]
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_anonymous() {
            return f.write_str("(anonymous)");
        }
        write!(f, "{} ({})", self.subject, self.issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide_where_issuer_and_subject_meet() {
        assert_ne!(
            Principal::new("https://a", "bc").key(),
            Principal::new("https://ab", "c").key()
        );
        assert_eq!(Principal::anonymous().key(), "0:");
        assert!(Principal::anonymous().environment().is_empty());
    }
}
