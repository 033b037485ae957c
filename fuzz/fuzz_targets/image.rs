//! PNG/JPEG decoding with the size checks, then the cover-crop resize and conversion.
#![no_main]
use cyberhost_engine::pipeline::image::{cover_crop, decode_image_within, to_chw_signed};
use libfuzzer_sys::fuzz_target;

// The size checks and the crop paths are the same at any size; a budget of 2^18 pixels keeps each
// execution in the milliseconds (a 2 KB JPEG may claim millions of pixels, which take seconds to
// decode in this instrumented build). The full limit is tested in engine/src/pipeline/image.rs.
const FUZZ_MAX_PIXELS: u64 = 1 << 18;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image_within(data, "fuzz.png", FUZZ_MAX_PIXELS) {
        let (crop, _t) = cover_crop(&img, 64, 48);
        assert_eq!(crop.dimensions(), (64, 48));
        assert_eq!(to_chw_signed(&crop).len(), 3 * 64 * 48);
    }
});
