//! An incremental reader of `text/event-stream` bodies: only what MCP needs
//! (`data:` lines joined per event; `id:` kept; comments and other fields ignored).

/// One event. Empty `data` is a priming event (an id to resume from, no message).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub data: String,
}

#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
}

impl Parser {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if a blank line has arrived after it.
    pub fn next_event(&mut self) -> Option<Event> {
        let (end, sep) = find_blank_line(&self.buf)?;
        let block: Vec<u8> = self.buf.drain(..end + sep).collect();
        let text = String::from_utf8_lossy(&block[..end]);
        let mut event = Event::default();
        let mut first_data = true;
        for line in text.lines() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    if !first_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    first_data = false;
                }
                "id" => event.id = Some(value.to_string()),
                _ => {}
            }
        }
        Some(event)
    }
}

/// Where the first event ends: (index of the blank line's start, its length).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks() {
        let mut p = Parser::default();
        p.push(b"id: 1-0\ndata:\n\nid: 1-1\nda");
        assert_eq!(
            p.next_event(),
            Some(Event {
                id: Some("1-0".into()),
                data: String::new()
            })
        );
        assert_eq!(p.next_event(), None);
        p.push(b"ta: {\"a\":1}\n\n");
        assert_eq!(
            p.next_event(),
            Some(Event {
                id: Some("1-1".into()),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn crlf_and_multiline_data() {
        let mut p = Parser::default();
        p.push(b": comment\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(
            p.next_event(),
            Some(Event {
                id: None,
                data: "a\nb".into()
            })
        );
    }
}
