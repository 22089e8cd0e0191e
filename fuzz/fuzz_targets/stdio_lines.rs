//! The stdio line reader on an arbitrary byte stream, delivered in arbitrary chunks:
//! every line it yields is non-empty, trimmed, free of newlines and within the cap,
//! and it never panics or loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// A reader handing out its bytes `chunk` at a time, as a pipe might.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the line cap and the chunk size; the rest is stdout.
    let [cap, chunk, stream @ ..] = data else {
        return;
    };
    let max_line = usize::from(*cap) * 8 + 1;
    let reader = Chunked {
        data: stream,
        chunk: usize::from(*chunk).max(1),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let (lines, _error) = runtime.block_on(lodge_runtime::fuzz_read_lines(reader, max_line));
    for line in lines {
        assert!(!line.is_empty() && line.len() <= max_line);
        assert!(!line.contains(&b'\n'));
        assert!(!line[0].is_ascii_whitespace() && !line[line.len() - 1].is_ascii_whitespace());
    }
});
