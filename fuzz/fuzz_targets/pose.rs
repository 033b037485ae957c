//! Pose JSON: parse, check against an image, map into the crop.
#![no_main]
use cyberhost_engine::pipeline::conditions::{Conditions, PoseFile};
use cyberhost_engine::pipeline::image::CropTransform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = PoseFile::parse(text, "fuzz.json") {
        if p.check_against_image(320, 240, "fuzz.json").is_ok() {
            let t = CropTransform { scale: 0.5, off_x: 8.0, off_y: 0.0 };
            let _ = Conditions::resolve(&p, &t, 64, 64);
        }
    }
});
