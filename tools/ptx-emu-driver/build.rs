//! Give the cdylib the soname of the real driver so that, once it is loaded by path, a later
//! `dlopen("libcuda.so")` (cudarc's first candidate) returns it instead of searching the disk.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
