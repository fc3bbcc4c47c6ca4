//! Copying a tunnel's bytes both ways until both sides are done or it falls idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Copies `a` → `b` and `b` → `a` at the same time. A side that ends its writes (EOF) has that end passed on
/// (`shutdown`), and the other direction goes on. Returns when both directions ended, or when no byte moved
/// either way for `idle`. The directions run as independent futures so a slow reader on one side never
/// stalls the other.
pub(crate) async fn splice<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let start = Instant::now();
    let last_activity = AtomicU64::new(0);
    let both = async {
        tokio::join!(
            pump(&mut a_read, &mut b_write, &last_activity, start),
            pump(&mut b_read, &mut a_write, &last_activity, start),
        )
    };
    let watchdog = async {
        loop {
            let quiet_since = start + Duration::from_millis(last_activity.load(Ordering::Relaxed));
            tokio::time::sleep_until(quiet_since + idle).await;
            if start + Duration::from_millis(last_activity.load(Ordering::Relaxed)) == quiet_since {
                return;
            }
        }
    };
    tokio::select! {
        _ = both => {}
        () = watchdog => tracing::debug!(idle_secs = idle.as_secs(), "tunnel idle, closed"),
    }
}

async fn pump<R, W>(from: &mut R, to: &mut W, last_activity: &AtomicU64, start: Instant)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last_activity.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn given_two_peers_when_spliced_then_bytes_flow_both_ways_and_eof_is_passed_on() {
        let (mut client, proxy_client_side) = duplex(1024);
        let (proxy_upstream_side, mut upstream) = duplex(1024);
        let task = tokio::spawn(splice(proxy_client_side, proxy_upstream_side, Duration::from_secs(30)));
        let payload = vec![7u8; 300_000];
        let upload = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&upload).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), upstream.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got.len(), payload.len());
        upstream.write_all(b"pong").await.unwrap();
        upstream.shutdown().await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), writer).await.unwrap().unwrap();
        assert_eq!(back, b"pong");
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn given_a_quiet_tunnel_when_the_idle_time_passes_then_it_closes() {
        let (_client, proxy_client_side) = duplex(1024);
        let (proxy_upstream_side, _upstream) = duplex(1024);
        let started = Instant::now();
        splice(proxy_client_side, proxy_upstream_side, Duration::from_secs(120)).await;
        assert!(started.elapsed() >= Duration::from_secs(120));
    }
}
