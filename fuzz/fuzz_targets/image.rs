//! PNG/JPEG decoding with the size checks, then the cover-crop resize and conversion.
#![no_main]
use cyberhost_engine::pipeline::image::{cover_crop, decode_image, to_chw_signed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, "fuzz.png") {
        let (crop, _t) = cover_crop(&img, 64, 48);
        assert_eq!(crop.dimensions(), (64, 48));
        assert_eq!(to_chw_signed(&crop).len(), 3 * 64 * 48);
    }
});
