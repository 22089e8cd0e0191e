//! W3C Trace Context: a client's `traceparent` continued by Lodge, so an HTTP-transport
//! server's spans join the client's trace with Lodge's hop in between.

/// `traceparent` as Lodge passes it on: the client's trace id and flags, with a new
/// parent id (Lodge's own hop). `None` for anything that is not a valid version-00
/// `traceparent` (it is then not passed on at all).
pub(crate) fn continued(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    let valid = parts.next().is_none()
        && version == "00"
        && hex(trace_id, 32)
        && !all_zero(trace_id)
        && hex(parent_id, 16)
        && !all_zero(parent_id)
        && hex(flags, 2);
    if !valid {
        return None;
    }
    let own: u64 = rand::random::<u64>().max(1);
    Some(format!("00-{trace_id}-{own:016x}-{flags}"))
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
