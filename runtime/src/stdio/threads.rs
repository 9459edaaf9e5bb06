//! The process's stdin and stdout for the stdio transport, each served by a
//! thread of its own.
//!
//! tokio's `stdin()`/`stdout()` hand every read, write and flush to the
//! blocking pool (a pool thread woken, then the task woken back): about six
//! cross-thread wake-ups per request and answer. Here one thread blocks in
//! `read` and passes each chunk it gets over a channel (one wake-up), and
//! one thread writes and flushes each batch of frames it is given (one
//! wake-up there, one for the acknowledgement). Async pipes on the
//! inherited descriptors would need no thread at all, but they set
//! `O_NONBLOCK` on file descriptions shared with the parent process.
//!
//! The reader thread may stay blocked in `read` after the session ends (a
//! host that never closes stdin); it holds nothing and ends with the process.

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// The most one `read` takes from stdin.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the session: reading stops when the session stops
/// taking input (backpressure reaches the host's pipe).
const READ_AHEAD: usize = 4;

/// stdin, read by a thread of its own.
#[derive(Debug)]
pub(crate) struct ThreadStdin {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

/// Starts the thread that reads the process's stdin.
pub(crate) fn stdin() -> io::Result<ThreadStdin> {
    reader(io::stdin())
}

fn reader(mut input: impl Read + Send + 'static) -> io::Result<ThreadStdin> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("spoke-stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                let sent = match input.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Ok(Vec::new()));
                        return;
                    }
                    Ok(n) => tx.blocking_send(Ok(buf[..n].to_vec())),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                if sent.is_err() {
                    return;
                }
            }
        })?;
    Ok(ThreadStdin {
        chunks: rx,
        chunk: Vec::new(),
        at: 0,
        done: false,
    })
}

impl AsyncRead for ThreadStdin {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.at < this.chunk.len() {
                let n = buf.remaining().min(this.chunk.len() - this.at);
                buf.put_slice(&this.chunk[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.chunks.poll_recv(cx)) {
                Some(Ok(chunk)) if chunk.is_empty() => this.done = true,
                Some(Ok(chunk)) => {
                    this.chunk = chunk;
                    this.at = 0;
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Err(e));
                }
                None => this.done = true,
            }
        }
    }
}

/// A batch for the writer thread and where to say how writing it went.
type Job = (Vec<u8>, oneshot::Sender<io::Result<()>>);

/// stdout, written by a thread of its own. Writes collect in a buffer; a
/// flush hands the buffer to the thread and completes when it is written
/// and flushed.
#[derive(Debug)]
pub(crate) struct ThreadStdout {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    buf: Vec<u8>,
    written: Option<oneshot::Receiver<io::Result<()>>>,
}

/// Starts the thread that writes the process's stdout.
pub(crate) fn stdout() -> io::Result<ThreadStdout> {
    writer(io::stdout())
}

fn writer(mut output: impl Write + Send + 'static) -> io::Result<ThreadStdout> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    std::thread::Builder::new()
        .name("spoke-stdout".into())
        .spawn(move || {
            while let Some((data, done)) = rx.blocking_recv() {
                let _ = done.send(output.write_all(&data).and_then(|()| output.flush()));
            }
        })?;
    Ok(ThreadStdout {
        jobs: Some(tx),
        buf: Vec::new(),
        written: None,
    })
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the stdout writer thread ended")
}

impl ThreadStdout {
    /// Waits for the batch being written, if any.
    fn poll_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(written) = &mut self.written else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(Pin::new(written).poll(cx)).unwrap_or_else(|_| Err(gone()));
        self.written = None;
        Poll::Ready(result)
    }
}

impl AsyncWrite for ThreadStdout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_written(cx))?;
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_written(cx))?;
            if this.buf.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let jobs = this.jobs.as_ref().ok_or_else(gone)?;
            let (done, written) = oneshot::channel();
            jobs.send((std::mem::take(&mut this.buf), done))
                .map_err(|_| gone())?;
            this.written = Some(written);
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // The thread ends once its queue is closed.
        self.get_mut().jobs = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A `Read` that hands out its pieces one per call, then an error or the end.
    struct Pieces(Vec<io::Result<Vec<u8>>>);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0)?;
            buf[..piece.len()].copy_from_slice(&piece);
            Ok(piece.len())
        }
    }

    #[tokio::test]
    async fn the_reader_passes_every_byte_in_order_then_the_end() {
        let pieces = (0..50u8).map(|i| Ok(vec![i; 1 + usize::from(i)])).collect();
        let mut input = reader(Pieces(pieces)).unwrap();
        let mut all = Vec::new();
        input.read_to_end(&mut all).await.unwrap();
        let expected: Vec<u8> = (0..50u8)
            .flat_map(|i| std::iter::repeat_n(i, 1 + usize::from(i)))
            .collect();
        assert_eq!(all, expected);
        // The end stays the end.
        assert_eq!(input.read(&mut [0u8; 4]).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_read_error_reaches_the_reader_after_the_bytes_before_it() {
        let pieces = vec![Ok(b"abc".to_vec()), Err(io::Error::other("disk on fire"))];
        let mut input = reader(Pieces(pieces)).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(input.read(&mut buf).await.unwrap(), 3);
        let err = input.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    /// A `Write` that records what it was given and can be made to fail.
    #[derive(Clone, Default)]
    struct Sink {
        data: Arc<Mutex<Vec<u8>>>,
        flushes: Arc<Mutex<usize>>,
        fail: Arc<Mutex<bool>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if *self.fail.lock().unwrap() {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "host gone"));
            }
            self.data.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            *self.flushes.lock().unwrap() += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_flush_completes_once_the_thread_has_written_and_flushed() {
        let sink = Sink::default();
        let mut out = writer(sink.clone()).unwrap();
        out.write_all(b"one\n").await.unwrap();
        out.write_all(b"two\n").await.unwrap();
        assert!(
            sink.data.lock().unwrap().is_empty(),
            "nothing before a flush"
        );
        out.flush().await.unwrap();
        assert_eq!(&*sink.data.lock().unwrap(), b"one\ntwo\n");
        assert_eq!(*sink.flushes.lock().unwrap(), 1, "one batch, one flush");
        out.flush().await.unwrap();
        assert_eq!(*sink.flushes.lock().unwrap(), 1, "nothing to write");
        out.write_all(b"three\n").await.unwrap();
        out.shutdown().await.unwrap();
        assert_eq!(&*sink.data.lock().unwrap(), b"one\ntwo\nthree\n");
    }

    #[tokio::test]
    async fn a_write_error_is_the_flushs_error() {
        let sink = Sink::default();
        *sink.fail.lock().unwrap() = true;
        let mut out = writer(sink).unwrap();
        out.write_all(b"lost\n").await.unwrap();
        let err = out.flush().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(err.to_string(), "host gone");
    }
}
