//! `runc-runtime`: the CRI runtime (see the library's documentation and docs/runc-runtime.md).

fn main() -> std::process::ExitCode {
    runc_runtime::main()
}
