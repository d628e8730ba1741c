//! Bulk transfer through the server under test: one connection moves `N` bytes one way, timed from the request
//! to the last byte (`down`) or to the backend's receipt (`up`). Used by `bulk-transfer` (the client) and by
//! `bench-backend --bulk` (the far end).
//!
//! The protocol needs no half-close, which not every proxy passes on (nginx's stream module closes both
//! directions at the first FIN unless `proxy_half_close` is on): the client sends a 9-byte header, `D` or `U`
//! and the byte count as a big-endian u64. Down: the backend writes that many bytes. Up: the client writes
//! them and the backend, once it has read them all, answers with the count (8 bytes, big-endian). Either way
//! the client closes afterwards.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::client::{Conn, CpuSpent, ProcessCpu, TargetReport};

/// The `schema` value of the JSON report.
pub const SCHEMA: &str = "bulk-transfer/1";
/// Bytes per read or write call on both ends.
pub const CHUNK: usize = 256 * 1024;
const HEADER_LEN: usize = 9;
const GIB: f64 = (1u64 << 30) as f64;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Backend to client: the server under test encrypts.
    Down,
    /// Client to backend: the server under test decrypts.
    Up,
}

impl Direction {
    fn byte(self) -> u8 {
        match self {
            Direction::Down => b'D',
            Direction::Up => b'U',
        }
    }
}

/// The request header.
pub fn header(direction: Direction, bytes: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = direction.byte();
    h[1..].copy_from_slice(&bytes.to_be_bytes());
    h
}

/// Reads a request header; `None` if it is not one.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Option<(Direction, u64)> {
    let direction = match h[0] {
        b'D' => Direction::Down,
        b'U' => Direction::Up,
        _ => return None,
    };
    let mut count = [0u8; 8];
    count.copy_from_slice(&h[1..]);
    Some((direction, u64::from_be_bytes(count)))
}

/// A chunk of non-repeating-looking bytes to send (TLS does not compress; this only avoids all-zero pages).
pub fn chunk() -> Arc<[u8]> {
    (0..CHUNK).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// The backend's side of one connection: reads the header, then sends or receives. Returns once the client
/// closed.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, data: &[u8]) -> std::io::Result<()> {
    let mut h = [0u8; HEADER_LEN];
    stream.read_exact(&mut h).await?;
    let (direction, bytes) = parse_header(&h).ok_or(std::io::ErrorKind::InvalidData)?;
    let mut buf = vec![0u8; CHUNK];
    match direction {
        Direction::Down => write_n(&mut stream, data, bytes).await?,
        Direction::Up => {
            let got = read_n(&mut stream, &mut buf, bytes).await?;
            stream.write_all(&got.to_be_bytes()).await?;
        }
    }
    stream.flush().await?;
    // Wait for the client to close, so the client, not us, ends in TIME_WAIT.
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the backend counted {got} bytes of {want}")]
    Short { got: u64, want: u64 },
}

/// The client's side: sends the request and moves `bytes`; returns the time from the request to the end.
pub async fn transfer(conn: &mut Conn, direction: Direction, bytes: u64) -> Result<Duration, TransferError> {
    let data = chunk();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    conn.write_all(&header(direction, bytes)).await?;
    conn.flush().await?;
    let got = match direction {
        Direction::Down => read_n(conn, &mut buf, bytes).await?,
        Direction::Up => {
            write_n(conn, &data, bytes).await?;
            conn.flush().await?;
            let mut count = [0u8; 8];
            conn.read_exact(&mut count).await?;
            u64::from_be_bytes(count)
        }
    };
    let elapsed = start.elapsed();
    if got != bytes {
        return Err(TransferError::Short { got, want: bytes });
    }
    Ok(elapsed)
}

async fn write_n<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], bytes: u64) -> std::io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
        w.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads until `bytes` came or the stream ended; returns the count.
async fn read_n<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], bytes: u64) -> std::io::Result<u64> {
    let mut got = 0u64;
    while got < bytes {
        let want = usize::try_from(bytes - got).unwrap_or(usize::MAX).min(buf.len());
        match r.read(&mut buf[..want]).await? {
            0 => break,
            n => got += n as u64,
        }
    }
    Ok(got)
}

/// The `--json` report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    #[serde(flatten)]
    pub target: TargetReport,
    pub direction: Direction,
    pub bytes: u64,
    /// The transfer alone (the connection and its handshake were made before).
    pub elapsed_s: f64,
    /// 10^6 bytes per second.
    pub mb_per_s: f64,
    pub cpu: ProcessCpu,
    pub server_cpu: Option<ProcessCpu>,
    /// Server CPU seconds per GiB moved (with --server-pid).
    pub server_cpu_s_per_gib: Option<f64>,
}

impl Report {
    pub fn new(target: TargetReport, direction: Direction, bytes: u64, cpu: &CpuSpent, pids: &[u32]) -> Self {
        let elapsed_s = cpu.elapsed.as_secs_f64();
        let gib = bytes as f64 / GIB;
        Self {
            schema: SCHEMA,
            target,
            direction,
            bytes,
            elapsed_s,
            mb_per_s: if elapsed_s > 0.0 { bytes as f64 / 1e6 / elapsed_s } else { 0.0 },
            cpu: ProcessCpu::new(cpu.client, cpu.elapsed, &[]),
            server_cpu: cpu.server.map(|s| ProcessCpu::new(s, cpu.elapsed, pids)),
            server_cpu_s_per_gib: cpu.server.filter(|_| bytes > 0).map(|s| s.total().as_secs_f64() / gib),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Down => "down (server to client)",
            Direction::Up => "up (client to server)",
        };
        writeln!(
            f,
            "bulk-transfer -> {} ({}): {} bytes {dir} in {:.3} s: {:.1} MB/s",
            self.target.target, self.target.transport, self.bytes, self.elapsed_s, self.mb_per_s
        )?;
        writeln!(f, "  client CPU  {:.2} s, {:.2} CPUs busy", self.cpu.total_s, self.cpu.utilization)?;
        if let (Some(s), Some(per)) = (&self.server_cpu, self.server_cpu_s_per_gib) {
            writeln!(f, "  server CPU  {:.2} s, {:.2} CPUs busy, {per:.3} s per GiB", s.total_s, s.utilization)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_and_garbage_is_refused() {
        assert_eq!(parse_header(&header(Direction::Down, 1 << 30)), Some((Direction::Down, 1 << 30)));
        assert_eq!(parse_header(&header(Direction::Up, 7)), Some((Direction::Up, 7)));
        assert_eq!(parse_header(b"GET / HTT"), None);
    }

    #[tokio::test]
    async fn both_directions_move_every_byte() {
        for direction in [Direction::Down, Direction::Up] {
            let (client, server) = tokio::io::duplex(64 * 1024);
            let backend = tokio::spawn(async move { serve(server, &chunk()).await });
            let (mut read, mut write) = tokio::io::split(client);
            let bytes = 3 * CHUNK as u64 + 17;
            write.write_all(&header(direction, bytes)).await.unwrap();
            let got = match direction {
                Direction::Down => read_n(&mut read, &mut vec![0; CHUNK], bytes).await.unwrap(),
                Direction::Up => {
                    write_n(&mut write, &chunk(), bytes).await.unwrap();
                    let mut count = [0u8; 8];
                    read.read_exact(&mut count).await.unwrap();
                    u64::from_be_bytes(count)
                }
            };
            assert_eq!(got, bytes);
            drop((read, write));
            backend.await.unwrap().unwrap();
        }
    }
}
