//! Helpers shared by the driver's integration tests.

use std::path::PathBuf;

/// The cdylib cargo built for this test run (`target/<profile>/deps/libptx_emu_driver.so`, next to
/// the test executable, or its uplifted copy one level up).
pub fn driver_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test executable has a directory");
    let name = format!(
        "{}ptx_emu_driver{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [deps.join(&name), deps.parent().unwrap_or(deps).join(&name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found next to {}", exe.display()))
}
