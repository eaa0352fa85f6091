//! Compiles the eBPF programs with clang and generates their libbpf-rs
//! skeleton, so the object is embedded in whatever binary links this crate.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/leco.bpf.c";

fn main() {
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("leco.skel.rs");
    SkeletonBuilder::new()
        .source(SRC)
        // v3: atomics that return the old value (fetch-and-add, exchange),
        // which the UDP owner hand-off needs; every kernel leco runs on
        // (6.3+) has them.
        .clang_args(["-Wall", "-Werror", "-O2", "-g", "-mcpu=v3"])
        .build_and_generate(&out)
        .unwrap_or_else(|e| {
            panic!(
                "building {SRC} failed: {e:#}\n\
                 (needs clang with the BPF target: `apt-get install clang llvm`)"
            )
        });
    for f in ["src/bpf/leco.bpf.c", "src/bpf/leco.h", "src/bpf/kernel.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
}
