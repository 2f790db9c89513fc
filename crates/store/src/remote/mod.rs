//! Sharing one store between processes: a server that owns a backend (typically the embedded
//! redb file, which only one process may open) and serves the `Store` trait over a Unix
//! socket, and a client, `RemoteStore`, that implements `Store` over that socket.
//!
//! Unix sockets are filesystem objects, so processes in other network namespaces (the lab's
//! node agents) reach the server as long as they see the same filesystem. The protocol is in
//! `wire` (length-prefixed JSON frames, requests matched to answers by id).

mod client;
mod server;
pub mod wire;

pub use client::RemoteStore;
pub use server::{serve_unix, StoreServer};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads one frame body. `Ok(None)`: the peer closed the connection between frames.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame length",
                ))
            };
        }
        got += n;
    }
    let len = wire::check_len(prefix)
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidData, why))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("connection closed inside a frame: {e}"))
    })?;
    Ok(Some(body))
}

/// Writes queued frames until the queue closes or the socket fails, batching whatever is
/// queued into one flush. One writer per connection keeps frames from interleaving.
async fn write_frames<W: AsyncWriteExt + Unpin>(
    w: W,
    mut frames: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut w = tokio::io::BufWriter::new(w);
    while let Some(f) = frames.recv().await {
        w.write_all(&f).await?;
        while let Ok(f) = frames.try_recv() {
            w.write_all(&f).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}
