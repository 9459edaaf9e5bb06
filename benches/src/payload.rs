//! The echo inputs the benchmarks send: `{"text":"aaa…"}` of an exact size.

/// `{"text":"…"}` exactly `size` bytes long (at least 11).
pub fn echo_input(size: usize) -> Vec<u8> {
    let text_len = size.saturating_sub(r#"{"text":""}"#.len());
    format!(r#"{{"text":"{}"}}"#, "a".repeat(text_len)).into_bytes()
}

/// The payload sizes every transport benchmark runs.
pub const SIZES: [(usize, &str); 2] = [(64, "64 B"), (4096, "4 KiB")];

/// The calls-in-flight levels every transport benchmark runs.
pub const IN_FLIGHT: [usize; 2] = [1, 64];

#[cfg(test)]
mod tests {
    #[test]
    fn inputs_have_the_exact_size_and_parse() {
        for size in [64, 4096] {
            let input = super::echo_input(size);
            assert_eq!(input.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&input).unwrap();
            assert_eq!(v["text"].as_str().unwrap().len(), size - 11);
        }
    }
}
