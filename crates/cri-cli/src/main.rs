//! The `cri` binary: everything happens in [`cri_cli::run`].

fn main() {
    let code = cri_cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
