//! Link settings for libtorch from the project venv, and the c10d shim.
//!
//! - An rpath to libtorch's directory, so the binaries run without `LD_LIBRARY_PATH`.
//! - `libtorch_cuda.so` kept as a dependency: nothing in our code references its symbols
//!   directly, so under `--as-needed` the linker would drop it and CUDA would be invisible
//!   at run time. The binary still starts on a machine without a GPU.
//! - `csrc/c10d_shim.cpp` (the process group of `trainer::dist`), compiled against the
//!   venv's torch headers with Gloo; `csrc/c10d_nccl.cpp` too when libtorch_cuda and the
//!   NCCL and CUDA headers (the `nvidia-*` wheels) are there, else the shim refuses NCCL.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-changed=csrc");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    let lib = Path::new(&lib);
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    build_shim(lib, cuda);
}

/// Compiles the shim; NCCL only when its headers are found next to torch.
fn build_shim(lib: &Path, cuda: bool) {
    let Some(torch) = lib.parent() else {
        return;
    };
    let include = torch.join("include");
    let nccl_includes = if cuda { nvidia_includes(torch) } else { None };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc/gloo-decls")
        .flag_if_supported("-Wno-interference-size")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .file("csrc/c10d_shim.cpp");
    match &nccl_includes {
        Some(dirs) => {
            build
                .define("JL_WITH_NCCL", None)
                .define("USE_C10D_NCCL", None);
            build.define("USE_CUDA", None).file("csrc/c10d_nccl.cpp");
            for dir in dirs {
                build.include(dir);
            }
        }
        None if cuda => println!(
            "cargo:warning=libtorch_cuda found but not the NCCL/CUDA headers (pip install -r scripts/requirements.txt): the c10d shim is built without NCCL"
        ),
        None => {}
    }
    build.compile("jl_c10d");
    // The static shim refers to libtorch: name the libraries after it on the link line.
    println!("cargo:rustc-link-search=native={}", lib.display());
    if nccl_includes.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// The include directories of the `nvidia-*` wheels holding nccl.h, the CUDA runtime, its
/// `crt/` headers and CCCL's `nv/target`, when all are there.
fn nvidia_includes(torch: &Path) -> Option<Vec<PathBuf>> {
    let nvidia = torch.parent()?.join("nvidia");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .filter(|d| d.is_dir())
        .collect();
    let has = |file: &str| dirs.iter().any(|d| d.join(file).exists());
    [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
    ]
    .iter()
    .all(|f| has(f))
    .then_some(dirs)
}
