//! Cutting a large Result into Chunks: what a connector (and the hub's
//! sidecar bridge, for its sidecars) sends for a payload over
//! [`CHUNK_THRESHOLD`](crate::CHUNK_THRESHOLD).

use crate::v1::{ConnectorFrame, connector_frame};

/// The frames that carry `frame`: itself, or, for a Result whose payload is
/// larger than [`CHUNK_THRESHOLD`](crate::CHUNK_THRESHOLD), its payload
/// in [`CHUNK_BYTES`](crate::CHUNK_BYTES) Chunks (seq from 0) and then
/// the Result with `chunked = true` and an empty payload. A result sent again
/// after a reconnect is cut the same way, so the hub can skip the Chunks it
/// already has.
pub fn in_pieces(frame: ConnectorFrame) -> Vec<ConnectorFrame> {
    use crate::v1::{Chunk, result::Outcome};
    let Some(connector_frame::Frame::Result(mut result)) = frame.frame else {
        return vec![frame];
    };
    let payload = match &mut result.outcome {
        Some(Outcome::Payload(payload)) if payload.len() > crate::CHUNK_THRESHOLD => {
            std::mem::take(payload)
        }
        _ => {
            return vec![ConnectorFrame {
                frame: Some(connector_frame::Frame::Result(result)),
            }];
        }
    };
    let mut frames: Vec<ConnectorFrame> = (0..payload.len())
        .step_by(crate::CHUNK_BYTES)
        .zip(0u64..)
        .map(|(start, seq)| ConnectorFrame {
            frame: Some(connector_frame::Frame::Chunk(Chunk {
                request_id: result.request_id.clone(),
                seq,
                // A view of the payload, not a copy.
                data: payload.slice(start..payload.len().min(start + crate::CHUNK_BYTES)),
            })),
        })
        .collect();
    result.chunked = true;
    frames.push(ConnectorFrame {
        frame: Some(connector_frame::Frame::Result(result)),
    });
    frames
}
