//! With the `tch` feature: libtorch's library folder becomes the run-time search path (rpath)
//! of kd's binaries, tests and examples, so `cargo run --features tch -- --backend tch` runs
//! without `LD_LIBRARY_PATH`, wherever torch-sys found libtorch (`LIBTORCH`, an installed
//! PyTorch with `LIBTORCH_USE_PYTORCH=1`, or its own download).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys (`links = "tch"`) tells its direct dependents where libtorch's libraries are.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
