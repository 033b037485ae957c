//! A safetensors file image: header length, header JSON, dtypes, shapes, offsets; every
//! accepted float tensor is then converted to f32 (what the loader does next).
#![no_main]
use cyberhost_weights::safetensors_file::{parse_file_bytes, TensorView};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("fuzz.safetensors");
    if let Ok((_meta, infos)) = parse_file_bytes(data, file) {
        for t in &infos {
            assert!(t.start <= t.end && t.end <= data.len(), "accepted range out of the file");
            let v = TensorView {
                name: &t.name,
                dtype: t.dtype,
                shape: &t.shape,
                bytes: &data[t.start..t.end],
                file,
            };
            if v.dtype.is_float_supported() {
                let f = v.to_f32().expect("an accepted float tensor converts");
                assert_eq!(f.len(), t.elem_count());
            } else {
                assert!(v.to_f32().is_err());
            }
        }
    }
});
