//! A minimal HTTP/1.1 client for the admin endpoints (hyper's connection-level client).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// `GET path` on `addr`; returns the status code and the body as text.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    request(addr, "GET", path).await
}

/// `POST path` with an empty body.
pub async fn post(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    request(addr, "POST", path).await
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req =
        Request::builder().method(method).uri(path).header("host", addr.to_string()).body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
