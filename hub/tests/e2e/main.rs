//! End-to-end tests of the hub: the real `spoke` binary on loopback TCP,
//! driven by fake connectors (real gRPC peers) and real gRPC clients.

mod support;

mod attach;
mod calls;
mod cli;
mod routing;
mod service;
mod sidecars;
