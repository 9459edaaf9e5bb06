//! Every payload kind as an input and an output: serde types, raw bytes,
//! JSON Lines, Protobuf messages (hand-written `prost::Message`), through
//! `Result`, plain values and `anyhow::Result`.
use spoke::prelude::*;
use spoke::{Bytes, JsonLines};

#[derive(Serialize, Deserialize, JsonSchema)]
pub struct Row {
    id: u64,
}

#[derive(Clone, PartialEq, Default, Debug)]
pub struct Ping {
    n: u32,
}

impl spoke::prost::Message for Ping {
    fn encode_raw(&self, buf: &mut impl spoke::prost::bytes::BufMut) {
        if self.n != 0 {
            spoke::prost::encoding::uint32::encode(1, &self.n, buf);
        }
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: spoke::prost::encoding::WireType,
        buf: &mut impl spoke::prost::bytes::Buf,
        ctx: spoke::prost::encoding::DecodeContext,
    ) -> Result<(), spoke::prost::DecodeError> {
        match tag {
            1 => spoke::prost::encoding::uint32::merge(wire_type, &mut self.n, buf, ctx),
            _ => spoke::prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }
    fn encoded_len(&self) -> usize {
        if self.n != 0 {
            spoke::prost::encoding::uint32::encoded_len(1, &self.n)
        } else {
            0
        }
    }
    fn clear(&mut self) {
        self.n = 0;
    }
}

impl spoke::prost::Name for Ping {
    const NAME: &'static str = "Ping";
    const PACKAGE: &'static str = "test";
}

#[connector(name = "kinds")]
#[derive(Default)]
pub struct Kinds;

#[connector]
impl Kinds {
    #[action(read)]
    async fn bytes(&self, #[input] data: Bytes) -> Bytes {
        data
    }

    #[action(read)]
    fn lines(&self, #[input] rows: JsonLines<Row>) -> Result<JsonLines<Row>, ActionError> {
        Ok(rows)
    }

    #[action(read)]
    async fn proto(&self, #[input] ping: Ping) -> anyhow::Result<Ping> {
        Ok(ping)
    }

    #[action(read)]
    async fn row(&self, #[input] row: Row) -> Row {
        row
    }

    #[action(read)]
    async fn unit(&self) {}
}

fn main() {}
