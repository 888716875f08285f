//! Link settings for libtorch from the project venv.
//!
//! - An rpath to libtorch's directory, so the binaries run without `LD_LIBRARY_PATH`.
//! - `libtorch_cuda.so` kept as a dependency: nothing in our code references its symbols
//!   directly, so under `--as-needed` the linker would drop it and CUDA would be invisible
//!   at run time. The binary still starts on a machine without a GPU.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
