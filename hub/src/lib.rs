//! The Spoke hub: connectors attach over gRPC and clients invoke through it.
