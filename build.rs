//! Compiles the XDP fast path's BPF program (xdp/relay.bpf.c) with clang when the `xdp` feature
//! is on. Without clang the crate still builds; the server then reports, when `relay.xdp` is
//! set, that this binary carries no BPF program, and relays in user space.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=xdp/relay.bpf.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo::rustc-check-cfg=cfg(turnpike_xdp_object)");
    if std::env::var_os("CARGO_FEATURE_XDP").is_none() {
        return;
    }
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("relay.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]);
    // <asm/types.h>, which <linux/bpf.h> includes, lives under the multiarch directory.
    if let Ok(o) = Command::new("gcc").arg("-print-multiarch").output() {
        let triple = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !triple.is_empty() {
            cmd.arg(format!("-I/usr/include/{triple}"));
        }
    }
    cmd.args(["-c", "xdp/relay.bpf.c", "-o"]).arg(&out);
    match cmd.status() {
        Ok(status) if status.success() => {
            println!("cargo:rustc-cfg=turnpike_xdp_object");
            println!("cargo:rustc-env=TURNPIKE_XDP_OBJECT={}", out.display());
        }
        Ok(status) => println!(
            "cargo:warning=xdp/relay.bpf.c did not compile ({clang} exited with {status}); \
             the XDP fast path is left out of this build"
        ),
        Err(e) => println!(
            "cargo:warning=cannot run {clang} ({e}): the XDP fast path is left out of this build \
             (install clang and libbpf-dev)"
        ),
    }
}
