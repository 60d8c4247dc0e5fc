//! Workspace tasks.
//!
//! `cargo xtask codegen` regenerates the checked-in code of `cri-api` from
//! `crates/cri-api/proto/runtime/v1/api.proto`, entirely in Rust: the proto is compiled by
//! protox (no `protoc` anywhere), messages and gRPC stubs are emitted by tonic-prost-build,
//! proto3-JSON serde impls by pbjson-build, and every file is passed through rustfmt so that
//! `cargo fmt --check` and the drift check agree.
//!
//! `cargo xtask codegen --check` generates into a temporary directory and fails when any
//! checked-in file differs: the CI drift check.
//!
//! `cargo xtask oci-image --name REF --out FILE.tar` builds a small busybox OCI image offline,
//! for real runtimes under test (see `scripts/containerd-peer`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use prost::Message;

mod oci;

/// The files that make up the generated module, relative to `crates/cri-api/src/generated`.
const GENERATED: &[&str] = &[
    "runtime.v1.rs",
    "runtime.v1.serde.rs",
    "runtime.v1.descriptor.bin",
];

/// Messages whose `Debug` is written by hand because they carry secrets.
const REDACTED_DEBUG: &[&str] = &[".runtime.v1.AuthConfig"];

/// Messages whose JSON form is written by hand: `KeyValue.value` is `bytes` on the wire but
/// upstream renders it as a plain string.
const HAND_WRITTEN_JSON: &[&str] = &[".runtime.v1.KeyValue"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["codegen"] => codegen(false),
        ["codegen", "--check"] => codegen(true),
        ["oci-image", ..] => oci::parse(&args[1..]).and_then(|spec| {
            let digest = oci::build(&spec)?;
            println!("{} {} ({digest})", spec.out.display(), spec.name);
            Ok(())
        }),
        _ => Err(
            "usage: cargo xtask codegen [--check] | cargo xtask oci-image --name REF --out FILE"
                .to_string(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn codegen(check: bool) -> Result<(), String> {
    let api = workspace_root().join("crates/cri-api");
    if check {
        let drift = drifted_files(&api)?;
        if !drift.is_empty() {
            return Err(format!(
                "generated code is out of date: {} differ from what the proto produces; \
                 run `cargo xtask codegen` and commit the result",
                drift.join(", ")
            ));
        }
        println!("codegen: checked-in code matches the proto");
    } else {
        let out = api.join("src/generated");
        fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
        generate(&api.join("proto"), &out)?;
        println!("codegen: wrote {}", out.display());
    }
    Ok(())
}

/// Regenerates the code of the crate at `api` into a scratch directory and returns the
/// checked-in files that differ from it (missing files count as different).
fn drifted_files(api: &Path) -> Result<Vec<&'static str>, String> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "cri-codegen-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let result = generate(&api.join("proto"), &scratch).and_then(|()| {
        let mut drift = Vec::new();
        for name in GENERATED {
            let fresh = fs::read(scratch.join(name)).map_err(|e| format!("{name}: {e}"))?;
            let current = fs::read(api.join("src/generated").join(name)).unwrap_or_default();
            if fresh != current {
                drift.push(*name);
            }
        }
        Ok(drift)
    });
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn generate(proto_dir: &Path, out: &Path) -> Result<(), String> {
    let proto = proto_dir.join("runtime/v1/api.proto");
    let mut compiler = protox::Compiler::new([proto_dir]).map_err(|e| format!("protox: {e}"))?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_file(&proto)
        .map_err(|e| format!("protox: {e}"))?;
    // With source info: the generators turn the proto's comments into rustdoc.
    let fds = compiler.file_descriptor_set();

    // Messages and gRPC stubs (client and server, no transport: `cri-api` stays types-only).
    tonic_prost_build::configure()
        .out_dir(out)
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .generate_default_stubs(true)
        .skip_debug(REDACTED_DEBUG.iter().copied())
        .compile_fds_with_config(fds.clone(), prost_config())
        .map_err(|e| format!("tonic-prost-build: {e}"))?;

    // The encoded descriptor set for gRPC reflection and grpcurl: without source info, and
    // encoded by protox itself so that options prost-types does not model (`debug_redact`)
    // are kept.
    compiler.include_source_info(false);
    fs::write(
        out.join("runtime.v1.descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )
    .map_err(|e| format!("writing descriptor set: {e}"))?;

    // proto3 JSON mapping.
    let mut json = pbjson_build::Builder::new();
    json.register_descriptors(&fds.encode_to_vec())
        .map_err(|e| format!("pbjson-build: {e}"))?
        .out_dir(out)
        .exclude(HAND_WRITTEN_JSON.iter().copied())
        .build(&[".runtime.v1"])
        .map_err(|e| format!("pbjson-build: {e}"))?;

    for name in GENERATED.iter().filter(|n| n.ends_with(".rs")) {
        let path = out.join(name);
        let body = fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let header = "// @generated by `cargo xtask codegen` from proto/runtime/v1/api.proto. \
                      Do not edit.\n";
        let body = if body.starts_with(header) {
            body
        } else {
            format!("{header}{body}")
        };
        fs::write(&path, body).map_err(|e| format!("{name}: {e}"))?;
        rustfmt(&path)?;
    }
    Ok(())
}

fn prost_config() -> prost_build::Config {
    let mut config = prost_build::Config::new();
    // `prost::Name` impls give every message its fully-qualified proto name, which the JSON
    // helpers and gRPC reflection rely on.
    config.enable_type_names();
    config
}

fn rustfmt(path: &Path) -> Result<(), String> {
    let rustfmt = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".to_string());
    let status = Command::new(rustfmt)
        .args(["--edition", "2024"])
        .arg(path)
        .status()
        .map_err(|e| format!("running rustfmt: {e}"))?;
    if !status.success() {
        return Err(format!("rustfmt failed on {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies the proto and the checked-in code of `cri-api` into a scratch crate layout.
    fn scratch_copy(tag: &str) -> PathBuf {
        let api = workspace_root().join("crates/cri-api");
        let dir = std::env::temp_dir().join(format!("cri-xtask-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["proto/runtime/v1", "src/generated"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::copy(
            api.join("proto/runtime/v1/api.proto"),
            dir.join("proto/runtime/v1/api.proto"),
        )
        .unwrap();
        for name in GENERATED {
            fs::copy(
                api.join("src/generated").join(name),
                dir.join("src/generated").join(name),
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn checked_in_code_matches_the_proto() {
        let drift = drifted_files(&workspace_root().join("crates/cri-api")).unwrap();
        assert!(
            drift.is_empty(),
            "drift in {drift:?}: run `cargo xtask codegen`"
        );
    }

    #[test]
    fn editing_one_generated_line_is_detected() {
        let dir = scratch_copy("edit");
        let path = dir.join("src/generated/runtime.v1.rs");
        let text = fs::read_to_string(&path).unwrap();
        let edited = text.replacen("pub runtime_name:", "pub runtime_nam:", 1);
        assert_ne!(text, edited, "the line to edit exists");
        fs::write(&path, edited).unwrap();
        let drift = drifted_files(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(drift, vec!["runtime.v1.rs"]);
    }

    #[test]
    fn editing_the_proto_without_regenerating_is_detected() {
        let dir = scratch_copy("proto");
        let path = dir.join("proto/runtime/v1/api.proto");
        let text = fs::read_to_string(&path).unwrap();
        let edited = text.replacen("string runtime_name = 2;", "string runtime_label = 2;", 1);
        assert_ne!(text, edited, "the field to rename exists");
        fs::write(&path, edited).unwrap();
        let drift = drifted_files(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(drift.contains(&"runtime.v1.rs"), "{drift:?}");
        assert!(drift.contains(&"runtime.v1.descriptor.bin"), "{drift:?}");
    }
}
