//! `git http-backend` as a streaming CGI: the request body flows into its stdin as it arrives
//! and its stdout flows back as the response body, so a clone or a push costs the gateway a few
//! buffers, not its size. A push is counted on the way in and cut off past its budget.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Slot;
use super::pkt::{Commands, Framer, sideband_message};

/// The longest a client may leave a request body without a byte: a stalled client gives its
/// place back.
const BODY_IDLE: Duration = Duration::from_secs(60);
/// Largest CGI header block git may write before the body.
const MAX_HEADERS: usize = 64 * 1024;
/// Bytes of stdout read at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Pack bytes fed to git past the budget before the gateway cuts the body itself: git's own
/// `receive.maxInputSize` stops it first, this is the backstop.
const SLACK: u64 = 64 * 1024;
/// What git has after it closed stdout to finish (reap) before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long a cut push's connection stays open, unread, for the answer (the refusal) to leave.
const ANSWER_GRACE: Duration = Duration::from_secs(30);

/// A push's budget and what follows it.
pub(super) struct Push {
    /// Pack bytes this push may bring.
    pub max_pack: u64,
    /// Told to the pusher (as `remote:` lines) when the pack is larger.
    pub refusal: String,
    /// Bytes of a refused push read (and thrown away) after the cut, so that the client
    /// finishes sending and reads the refusal; past it the connection is dropped.
    pub drain: u64,
    /// Runs once git is done and before the client gets the last bytes of the answer: a push
    /// reported done is a push announced.
    pub after: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// What the body feeder learnt, for the answer to act on.
#[derive(Debug, Default)]
struct Watch {
    exceeded: AtomicBool,
    sideband: AtomicBool,
}

/// Runs `cmd` (`git http-backend` with its CGI environment) on `body`; answers as soon as git
/// wrote its headers, streaming the rest. `slot` is held until both directions are done.
pub(super) async fn serve(mut cmd: Command, body: Body, push: Option<Push>, slot: Slot) -> std::io::Result<Response> {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let missing = || std::io::Error::other("http-backend without its pipes");
    let stdin = child.stdin.take().ok_or_else(missing)?;
    let mut stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let errors = tokio::spawn(first_bytes(stderr, 8 * 1024));
    let watch = Arc::new(Watch::default());
    let budget = push.as_ref().map(|p| (p.max_pack, p.drain));
    // Cancelled when the answer is done (or never comes).
    let answered = CancellationToken::new();
    let answering = answered.clone().drop_guard();
    tokio::spawn(feed(body.into_data_stream(), stdin, budget, watch.clone(), answered, slot.clone()));

    let mut buf = bytes::BytesMut::with_capacity(READ_CHUNK);
    let (head_end, body_start) = loop {
        if let Some(split) = header_end(&buf) {
            break split;
        }
        if buf.len() > MAX_HEADERS {
            return Err(std::io::Error::other("http-backend wrote no end to its headers"));
        }
        if stdout.read_buf(&mut buf).await? == 0 {
            let status = child.wait().await?;
            let err = errors.await.unwrap_or_default();
            return Err(std::io::Error::other(format!("http-backend exited with {status}: {}", err.trim())));
        }
    };
    let head = buf.split_to(body_start);
    let builder = cgi_headers(&head[..head_end])?;
    let (refusal, after) = match push {
        Some(p) => (Some(p.refusal), Some(p.after)),
        None => (None, None),
    };
    let mut framer = Framer::default();
    framer.feed(&buf);
    let answer =
        Answer { stdout, child, buf, framer, watch, refusal, after, _answering: answering, _slot: slot, done: false };
    builder.body(Body::from_stream(futures::stream::unfold(answer, Answer::next))).map_err(std::io::Error::other)
}

/// Copies the request body into git's stdin, counting a push's pack bytes; past the budget,
/// closes stdin and reads (without keeping) at most `drain` more bytes. Past those it reads no
/// more, but holds the connection until the answer is out, so the client still gets the
/// refusal.
async fn feed(
    mut body: BodyDataStream,
    stdin: ChildStdin,
    budget: Option<(u64, u64)>,
    watch: Arc<Watch>,
    answered: CancellationToken,
    _slot: Slot,
) {
    let mut stdin = Some(stdin);
    let mut commands = Commands::default();
    let (mut total, mut drained) = (0u64, 0u64);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(BODY_IDLE, body.next()).await {
        total += chunk.len() as u64;
        let Some(pipe) = stdin.as_mut() else {
            drained += chunk.len() as u64;
            match budget {
                Some((_, drain)) if drained <= drain => continue,
                _ => {
                    let _ = tokio::time::timeout(ANSWER_GRACE, answered.cancelled()).await;
                    break;
                }
            }
        };
        let mut send = &chunk[..];
        let mut cut = false;
        if let Some((max_pack, _)) = budget {
            commands.feed(&chunk);
            watch.sideband.store(commands.sideband, Ordering::Relaxed);
            let pack = commands.pack_bytes(total);
            if pack > max_pack {
                watch.exceeded.store(true, Ordering::Release);
            }
            // Past the backstop, git gets what it may have and then the end of its input.
            let over = pack.saturating_sub(max_pack.saturating_add(SLACK));
            if over > 0 {
                send = &send[..send.len().saturating_sub(usize::try_from(over).unwrap_or(usize::MAX))];
                cut = true;
            }
        }
        if pipe.write_all(send).await.is_err() || cut {
            // git stopped reading (it refused the push, or failed), or the push was cut: let
            // the client finish sending, within the drain.
            stdin = None;
        }
    }
}

/// The response body: git's stdout as it comes. For a push, the last 4 bytes are held back
/// until git is done: the final flush, before which a refusal is told, and after which the
/// client considers the push done.
struct Answer {
    stdout: ChildStdout,
    child: Child,
    buf: bytes::BytesMut,
    framer: Framer,
    watch: Arc<Watch>,
    refusal: Option<String>,
    after: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Tells the feeder the answer is done when dropped.
    _answering: DropGuard,
    _slot: Slot,
    done: bool,
}

impl Answer {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        let keep = if self.refusal.is_some() { 4 } else { 0 };
        loop {
            if self.buf.len() > keep {
                let out = self.buf.split_to(self.buf.len() - keep).freeze();
                return Some((Ok(out), self));
            }
            self.buf.reserve(READ_CHUNK);
            let before = self.buf.len();
            match self.stdout.read_buf(&mut self.buf).await {
                Ok(0) => return self.finish().await,
                Ok(_) => self.framer.feed(&self.buf[before..]),
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
        }
    }

    async fn finish(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        self.done = true;
        match tokio::time::timeout(EXIT_GRACE, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = self.child.kill().await;
            }
        }
        if let Some(after) = self.after.take() {
            after.await;
        }
        let mut rest = std::mem::take(&mut self.buf);
        let told = self.watch.exceeded.load(Ordering::Acquire) && self.watch.sideband.load(Ordering::Relaxed);
        if let (true, Some(refusal)) = (told, &self.refusal)
            && self.framer.ended_with_flush()
            && rest.ends_with(b"0000")
        {
            let flush = rest.split_off(rest.len() - 4);
            rest.extend_from_slice(&sideband_message(refusal));
            rest.unsplit(flush);
        }
        (!rest.is_empty()).then(|| (Ok(rest.freeze()), self))
    }
}

/// Where the CGI headers end: (end of the headers, start of the body).
fn header_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A response builder from CGI headers (`Status:` sets the status).
fn cgi_headers(head: &[u8]) -> std::io::Result<axum::http::response::Builder> {
    let head = String::from_utf8_lossy(head);
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            builder = builder.status(code);
        } else if let (Ok(n), Ok(v)) = (header::HeaderName::try_from(name.trim()), HeaderValue::from_str(value)) {
            builder = builder.header(n, v);
        }
    }
    Ok(builder)
}

/// The first `max` bytes of `pipe` as text; the rest is read and dropped, so git never blocks
/// on a full stderr.
async fn first_bytes(mut pipe: impl AsyncRead + Unpin, max: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_cgi_output_then_headers_end_at_the_first_blank_line() {
        assert_eq!(header_end(b"Status: 200\r\nA: b\r\n\r\nbody\n\nmore"), Some((17, 21)));
        assert_eq!(header_end(b"A: b\n\nbody\r\n\r\n"), Some((4, 6)));
        assert_eq!(header_end(b"A: b\r\n"), None);
    }

    #[test]
    fn given_a_cgi_status_then_the_response_carries_it() {
        let res =
            cgi_headers(b"Status: 404 Not Found\r\nContent-Type: text/plain").unwrap().body(Body::empty()).unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/plain");
    }
}
