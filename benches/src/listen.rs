//! A loopback listener for the benchmarks' own servers, with `TCP_NODELAY`
//! on every accepted connection, as the hub's listener has (tonic's
//! `Server::tcp_nodelay` does not reach connections it is handed).

use std::net::SocketAddr;

use tonic::transport::server::TcpIncoming;

/// Binds a fresh loopback port.
pub fn loopback() -> (SocketAddr, TcpIncoming) {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind a loopback port")
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().expect("the bound address");
    (addr, incoming)
}
