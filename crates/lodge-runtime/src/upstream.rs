//! The stdio link to a session's server: newline-delimited JSON-RPC both ways.

use bytes::Bytes;
use lodge_proto::Message;
use std::io;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::sync::mpsc;

/// Messages queued for a server that is slow to read before callers are told it is busy.
pub(crate) const WRITE_QUEUE: usize = 1024;

/// Writes queued messages to the server's stdin, one per line, flushing when the
/// queue runs dry. Ends when the queue closes (which closes stdin) or on a write error.
pub(crate) async fn write_loop(
    mut stdin: impl AsyncWrite + Unpin,
    mut queue: mpsc::Receiver<Bytes>,
) {
    while let Some(first) = queue.recv().await {
        // A buffer per burst, not per session: idle sessions hold no write buffer.
        let mut out = BufWriter::new(&mut stdin);
        let mut next = Some(first);
        while let Some(msg) = next {
            let line = one_line(msg);
            if out.write_all(&line).await.is_err() || out.write_all(b"\n").await.is_err() {
                return;
            }
            next = queue.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

/// The stdio transport is one message per line, but a client may send pretty-printed
/// JSON. Raw line breaks in JSON can only be whitespace between tokens (inside strings
/// they must be escaped), so turning them into spaces keeps the message identical.
fn one_line(msg: Bytes) -> Bytes {
    if !msg.iter().any(|&b| b == b'\n' || b == b'\r') {
        return msg;
    }
    msg.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect::<Vec<u8>>()
        .into()
}

/// The stdout read buffer, held by every session while idle: big enough for most
/// messages in one read, small enough for ten thousand idle sessions.
const READ_BUFFER: usize = 4096;

/// What the reader tells the session actor.
pub(crate) enum FromServer {
    Message(Message),
    /// stdout closed (the server exited or closed it), or it sent something we cannot carry.
    Closed(Option<String>),
}

/// Reads the server's stdout line by line, classifies each message, and hands it
/// to the actor. Lines that are not JSON-RPC are logged and skipped.
pub(crate) async fn read_loop(
    session: std::sync::Arc<str>,
    stdout: impl AsyncRead + Unpin,
    max_line: usize,
    to_actor: mpsc::Sender<FromServer>,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, stdout);
    // Grows to the longest message seen; empty until the first one.
    let mut line = Vec::new();
    let why = loop {
        line.clear();
        match read_line(&mut reader, &mut line, max_line).await {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(e.to_string()),
        }
        let text = trim_line(&line);
        if text.is_empty() {
            continue;
        }
        match Message::parse(Bytes::copy_from_slice(text)) {
            Ok(msg) => {
                if to_actor.send(FromServer::Message(msg)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(%session, error = %e, "server wrote a line that is not JSON-RPC; skipped")
            }
        }
    };
    let _ = to_actor.send(FromServer::Closed(why)).await;
}

async fn read_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max_line: usize,
) -> io::Result<usize> {
    let n = reader
        .take(max_line as u64 + 1)
        .read_until(b'\n', line)
        .await?;
    if line.len() > max_line && line.last() != Some(&b'\n') {
        return Err(io::Error::other(format!(
            "the server wrote a message longer than {max_line} bytes"
        )));
    }
    Ok(n)
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// For a server spoken to over HTTP: its stdout is only output, logged like stderr;
/// its end still tells the actor the server exited. Holding stdin keeps it open.
pub(crate) async fn drain_loop(
    session: std::sync::Arc<str>,
    stdin: impl AsyncWrite + Unpin,
    stdout: impl AsyncRead + Unpin,
    to_actor: mpsc::Sender<FromServer>,
) {
    let _stdin = stdin;
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "lodge::server_stdout", %session, "{line}");
    }
    let _ = to_actor.send(FromServer::Closed(None)).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_messages_skips_junk_and_reports_close() {
        let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\r\nnot json\n\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        let (tx, mut rx) = mpsc::channel(8);
        read_loop("s".into(), input, 1024, tx).await;
        let mut got = vec![];
        while let Some(ev) = rx.recv().await {
            match ev {
                FromServer::Message(m) => got.push(String::from_utf8(m.bytes.to_vec()).unwrap()),
                FromServer::Closed(why) => got.push(format!("closed {why:?}")),
            }
        }
        assert_eq!(
            got,
            vec![
                r#"{"jsonrpc":"2.0","method":"a"}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                "closed None"
            ]
        );
    }

    #[tokio::test]
    async fn oversized_line_closes_with_reason() {
        let input = [b'x'; 100];
        let (tx, mut rx) = mpsc::channel(8);
        read_loop("s".into(), &input[..], 10, tx).await;
        match rx.recv().await.unwrap() {
            FromServer::Closed(Some(why)) => assert!(why.contains("longer than 10 bytes")),
            _ => panic!("expected a close"),
        }
    }

    #[tokio::test]
    async fn writes_one_line_per_message() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(Bytes::from_static(b"{}")).await.unwrap();
        tx.send(Bytes::from_static(b"{\"a\":\r\n \"x\\ny\"}"))
            .await
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        write_loop(&mut out, rx).await;
        assert_eq!(out, b"{}\n{\"a\":   \"x\\ny\"}\n");
    }
}
