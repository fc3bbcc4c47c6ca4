//! The health check that gates traffic: the app answers an HTTP request on its port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One probe: any HTTP response (whatever its status) means the app is up and speaking HTTP.
pub async fn probe(addr: SocketAddr, host: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: deploy-mcp-health\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        let mut read = 0;
        while read < head.len() {
            let n = stream.read(&mut head[read..]).await.ok()?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Some(head[..read].starts_with(b"HTTP/1."))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten().unwrap_or(false)
}

/// Probes until the app answers or `timeout` passes; returns whether it answered.
pub async fn wait_healthy(addr: SocketAddr, host: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if probe(addr, host).await {
            return true;
        }
        if tokio::time::Instant::now() + pause >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        // Fast at first (most apps are up in tens of milliseconds), then gentler.
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
