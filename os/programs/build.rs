//! Links every program as a static ELF at the user addresses of `user.ld`.

fn main() {
    let script = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("user.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    for arg in [
        &format!("-Wl,-T,{}", script.display()),
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
