//! `runc-runtime-monitor`: the monitor of one container, started by `runc-runtime` as
//! `runc-runtime-monitor monitor DIR` (the arguments of `runc-runtime monitor DIR`, so that
//! either binary can serve). Only the monitor's code is linked in: no argument parser, no
//! gRPC stack.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next(), args.next()) {
        (Some(command), Some(dir), None) if command == "monitor" => {
            runc_runtime::monitor(dir.into())
        }
        _ => {
            eprintln!(
                "usage: runc-runtime-monitor monitor DIR\n\
                 (the monitor of one container; runc-runtime starts it, not a user)"
            );
            ExitCode::from(2)
        }
    }
}
