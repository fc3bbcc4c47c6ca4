//! The one response body type the router sends: short texts, proxied upstream bodies, and files.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

use crate::pool::UpstreamConn;
use crate::routes::InFlight;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const FILE_CHUNK: usize = 64 * 1024;

pub(crate) struct RouterBody {
    kind: Kind,
}

enum Kind {
    Bytes(Option<Bytes>),
    Upstream(UpstreamBody),
    File(FileBody),
}

impl RouterBody {
    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Bytes(None) }
    }

    pub(crate) fn bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { kind: Kind::Bytes((!bytes.is_empty()).then_some(bytes)) }
    }

    /// Streams `body` from the upstream; `conn` goes back to the pool once the body is complete.
    pub(crate) fn upstream(body: Incoming, conn: Option<Box<UpstreamConn>>, in_flight: InFlight) -> Self {
        Self { kind: Kind::Upstream(UpstreamBody { body, conn, in_flight }) }
    }

    pub(crate) fn file(file: tokio::fs::File, len: u64, in_flight: InFlight) -> Self {
        Self { kind: Kind::File(FileBody { file, remaining: len, buf: BytesMut::new(), _in_flight: in_flight }) }
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Bytes(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Upstream(body) => body.poll_frame(cx),
            Kind::File(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Bytes(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.body.is_end_stream(),
            Kind::File(body) => body.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Bytes(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.body.size_hint(),
            Kind::File(body) => SizeHint::with_exact(body.remaining),
        }
    }
}

struct UpstreamBody {
    body: Incoming,
    /// The connection the response comes on (`None` when a task drives it): polled here, as it is what fills
    /// `body`, and put back in the pool once the response is complete.
    conn: Option<Box<UpstreamConn>>,
    // Declared last: dropped after `Drop` has put the connection back.
    in_flight: InFlight,
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut frame = Pin::new(&mut self.body).poll_frame(cx);
        if frame.is_pending()
            && let Some(conn) = &mut self.conn
        {
            let _ = conn.poll_io(cx);
            frame = Pin::new(&mut self.body).poll_frame(cx);
        }
        match ready!(frame) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(error)) => {
                self.conn = None;
                Poll::Ready(Some(Err(error.into())))
            }
            None => Poll::Ready(None),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body dropped before its end (the client went away) leaves the connection mid-response: not reusable.
        if let Some(conn) = self.conn.take()
            && self.body.is_end_stream()
        {
            self.in_flight.pool.put(conn);
        }
    }
}

struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
    _in_flight: InFlight,
}

impl FileBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(FILE_CHUNK);
        if self.buf.len() != want {
            self.buf.resize(want, 0);
        }
        let mut read = ReadBuf::new(&mut self.buf);
        ready!(Pin::new(&mut self.file).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            // The file shrank since its length was sent: the response cannot be completed honestly.
            self.remaining = 0;
            return Poll::Ready(Some(Err("file shrank while being served".into())));
        }
        self.remaining -= n as u64;
        let chunk = self.buf.split_to(n).freeze();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}
