//! Reading `\n`-terminated lines with a length limit, in chunks: a line
//! longer than the limit is reported as soon as it passes the limit, and the
//! rest of it is skipped up to the next `\n` without being kept in memory.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How much is read from the input at a time.
const CHUNK: usize = 64 * 1024;

/// One line of input, numbered from 1.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line within the limit, without its `\n` (nor a `\r` before it).
    Data {
        /// Its number.
        number: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A line longer than the limit; the rest of it is being skipped.
    TooLong {
        /// Its number.
        number: u64,
    },
}

/// Reads lines of at most `limit` bytes (not counting the `\n`).
///
/// `next` is cancel-safe: everything read so far is kept in `self`, so it can
/// be used in a `select!` loop.
pub(crate) struct LineReader<R> {
    input: BufReader<R>,
    limit: usize,
    partial: Vec<u8>,
    skipping: bool,
    number: u64,
    done: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(input: R, limit: usize) -> Self {
        LineReader {
            input: BufReader::with_capacity(CHUNK, input),
            limit,
            partial: Vec::new(),
            skipping: false,
            number: 0,
            done: false,
        }
    }

    /// The next line; `None` at the end of the input. A last line without a
    /// `\n` still counts as a line.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Line>> {
        if self.done {
            return Ok(None);
        }
        loop {
            let chunk = self.input.fill_buf().await?;
            if chunk.is_empty() {
                self.done = true;
                if self.skipping || self.partial.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take_line()));
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let content = newline.unwrap_or(chunk.len());
            let used = newline.map_or(content, |at| at + 1);
            if self.skipping {
                self.input.consume(used);
                if newline.is_some() {
                    self.skipping = false;
                }
                continue;
            }
            if self.partial.len() + content > self.limit {
                self.input.consume(used);
                self.partial = Vec::new();
                self.skipping = newline.is_none();
                self.number += 1;
                return Ok(Some(Line::TooLong {
                    number: self.number,
                }));
            }
            self.partial.extend_from_slice(&chunk[..content]);
            self.input.consume(used);
            if newline.is_some() {
                return Ok(Some(self.take_line()));
            }
        }
    }

    fn take_line(&mut self) -> Line {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        self.number += 1;
        Line::Data {
            number: self.number,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn data(number: u64, s: &str) -> Option<Line> {
        Some(Line::Data {
            number,
            bytes: s.as_bytes().to_vec(),
        })
    }

    #[tokio::test]
    async fn lines_the_limit_and_the_end() {
        let input: &[u8] = b"one\r\n\ntoo long line\nfour\nlast";
        let mut r = LineReader::new(input, 5);
        assert_eq!(r.next().await.unwrap(), data(1, "one"));
        assert_eq!(r.next().await.unwrap(), data(2, ""));
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong { number: 3 }));
        assert_eq!(r.next().await.unwrap(), data(4, "four"));
        assert_eq!(r.next().await.unwrap(), data(5, "last"));
        assert_eq!(r.next().await.unwrap(), None);
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversized_line_is_reported_before_it_ends_and_never_buffered() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut r = LineReader::new(rx, 100);
        tx.write_all(&[b'x'; 150]).await.unwrap();
        // Reported while the line is still arriving.
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong { number: 1 }));
        let writer = tokio::spawn(async move {
            for _ in 0..100 {
                tx.write_all(&[b'y'; 1000]).await.unwrap();
            }
            tx.write_all(b"\nok\n").await.unwrap();
        });
        assert_eq!(r.next().await.unwrap(), data(2, "ok"));
        assert!(
            r.partial.capacity() <= 100 + CHUNK,
            "the long line was not kept"
        );
        writer.await.unwrap();
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn exactly_the_limit_is_allowed_and_a_long_last_line_is_skipped() {
        let input: &[u8] = b"12345\n123456";
        let mut r = LineReader::new(input, 5);
        assert_eq!(r.next().await.unwrap(), data(1, "12345"));
        assert_eq!(r.next().await.unwrap(), Some(Line::TooLong { number: 2 }));
        assert_eq!(r.next().await.unwrap(), None);
    }
}
