//! The wire's `Encoding` numbers and Spoke's [`Encoding`]: the one
//! mapping every gRPC peer (connector, hub, `spoke call`) uses.

use spoke_proto::v1::Encoding as Wire;

use crate::encoding::Encoding;
use crate::error::ActionError;

/// The encoding a wire number names (`0`, unspecified, is JSON), or an
/// `invalid_input` error for a number this build does not know.
///
/// ```
/// use spoke::Encoding;
/// use spoke::grpc::wire_encoding::{from_wire, to_wire};
/// assert_eq!(from_wire(0).unwrap(), Encoding::Json);
/// assert_eq!(from_wire(to_wire(Encoding::ArrowIpc)).unwrap(), Encoding::ArrowIpc);
/// assert!(from_wire(99).is_err());
/// ```
pub fn from_wire(value: i32) -> Result<Encoding, ActionError> {
    let encoding = match Wire::try_from(value) {
        Ok(Wire::Unspecified | Wire::Json) => Encoding::Json,
        Ok(Wire::RawBytes) => Encoding::RawBytes,
        Ok(Wire::JsonLines) => Encoding::JsonLines,
        Ok(Wire::Msgpack) => Encoding::Msgpack,
        Ok(Wire::Protobuf) => Encoding::Protobuf,
        Ok(Wire::ArrowIpc) => Encoding::ArrowIpc,
        Ok(Wire::Parquet) => Encoding::Parquet,
        Err(_) => {
            return Err(ActionError::invalid_input(format!(
                "payload encoding #{value} is unknown: known are json, raw_bytes, json_lines, msgpack, protobuf, arrow_ipc and parquet"
            )));
        }
    };
    Ok(encoding)
}

/// The wire number of an encoding.
pub fn to_wire(encoding: Encoding) -> i32 {
    let wire = match encoding {
        Encoding::Json => Wire::Json,
        Encoding::RawBytes => Wire::RawBytes,
        Encoding::JsonLines => Wire::JsonLines,
        Encoding::Msgpack => Wire::Msgpack,
        Encoding::Protobuf => Wire::Protobuf,
        Encoding::ArrowIpc => Wire::ArrowIpc,
        Encoding::Parquet => Wire::Parquet,
    };
    wire as i32
}

/// A caller's `accept` list: unknown numbers (from a newer peer) are
/// skipped, unspecified means JSON, repeats are dropped. A list of unknown
/// numbers only is `invalid_input`: none of them can be answered (an empty
/// list would mean "the action's preferred").
pub fn accept_from_wire(list: &[i32]) -> Result<Vec<Encoding>, ActionError> {
    let mut accept = Vec::with_capacity(list.len());
    for encoding in list.iter().filter_map(|v| from_wire(*v).ok()) {
        if !accept.contains(&encoding) {
            accept.push(encoding);
        }
    }
    if accept.is_empty() && !list.is_empty() {
        return Err(ActionError::invalid_input(format!(
            "accept lists only encodings this connector does not know ({list:?})"
        )));
    }
    Ok(accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_has_its_own_number() {
        let numbers: Vec<i32> = Encoding::ALL.iter().map(|e| to_wire(*e)).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
        for e in Encoding::ALL {
            assert_eq!(from_wire(to_wire(e)).unwrap(), e);
        }
        assert_eq!(
            accept_from_wire(&[6, 42, 0, 1, 6]).unwrap(),
            [Encoding::ArrowIpc, Encoding::Json]
        );
        assert!(accept_from_wire(&[]).unwrap().is_empty());
        assert!(accept_from_wire(&[42]).is_err());
    }
}
