//! A sharded checkpoint's `*.safetensors.index.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(shards) = cyberhost_weights::checkpoint::parse_shard_index(text, "fuzz.index.json") {
        for name in shards.keys() {
            // Accepted shard names never leave the checkpoint folder.
            assert!(!name.contains('/') && name != ".." && !name.is_empty());
        }
    }
});
