//! W3C Trace Context: a client's `traceparent` continued by Lodge, so an HTTP-transport
//! server's spans join the client's trace with Lodge's hop in between.
//!
//! When Lodge exports its spans ([`export_with`], set once by the binary), its `request`
//! span becomes the child of the client's span and the server's parent; otherwise the
//! hop gets a fresh parent id that no exported span has.

use std::sync::OnceLock;

/// What exports Lodge's spans, as far as trace context goes.
pub trait SpanExport: Send + Sync {
    /// Makes `span`, not yet entered, a child of the span `traceparent` (valid) names.
    fn adopt(&self, span: &tracing::Span, traceparent: &str);
    /// The `traceparent` naming `span`.
    fn traceparent(&self, span: &tracing::Span) -> Option<String>;
}

static EXPORT: OnceLock<Box<dyn SpanExport>> = OnceLock::new();

/// Installs the span exporter for the process (the first call wins).
pub fn export_with(export: Box<dyn SpanExport>) {
    let _ = EXPORT.set(export);
}

/// Called as a request's span is made: a valid client `traceparent` becomes its parent
/// when spans are exported; otherwise nothing happens.
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    if let Some(export) = EXPORT.get()
        && valid(traceparent)
    {
        export.adopt(span, traceparent.trim());
    }
}

/// `traceparent` as Lodge passes it on from within the request's span: the client's
/// trace id and flags, with Lodge's own hop as the parent. `None` for anything that is
/// not a valid version-00 `traceparent` (it is then not passed on at all).
pub(crate) fn continued(traceparent: &str) -> Option<String> {
    if !valid(traceparent) {
        return None;
    }
    if let Some(export) = EXPORT.get()
        && let Some(own) = export.traceparent(&tracing::Span::current())
    {
        return Some(own);
    }
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, flags) = (parts.next()?, parts.next()?, parts.nth(1)?);
    let own: u64 = rand::random::<u64>().max(1);
    Some(format!("{version}-{trace_id}-{own:016x}-{flags}"))
}

fn valid(traceparent: &str) -> bool {
    let mut parts = traceparent.trim().split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    parts.next().is_none()
        && version == "00"
        && hex(trace_id, 32)
        && !all_zero(trace_id)
        && hex(parent_id, 16)
        && !all_zero(parent_id)
        && hex(flags, 2)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_keeps_its_trace_and_flags_with_a_new_parent() {
        let next = continued(CLIENT).unwrap();
        let parts: Vec<&str> = next.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1], parts[3]),
            ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
        );
        assert_eq!(parts[2].len(), 16);
        assert_ne!(parts[2], "00f067aa0ba902b7");
        assert_ne!(
            continued(CLIENT).unwrap(),
            next,
            "a new parent id each time"
        );
    }

    #[test]
    fn anything_else_is_not_passed_on() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e473\n-00f067aa0ba902b7-01",
        ] {
            assert_eq!(continued(bad), None, "{bad:?}");
        }
    }
}
