//! The PTX parser and the emulator's program builder (`Module::parse` does both), plus the
//! per-kernel queries the stand-in driver makes after loading a module.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = ptx_emu::Module::parse(text) {
        for k in m.kernel_names() {
            let _ = m.kernel_params(&k);
            let _ = m.static_shared_bytes(&k);
            let _ = m.local_bytes(&k);
            let _ = m.instruction_count(&k);
            let _ = m.unsupported(&k);
        }
        let _ = m.globals();
    }
});
