//! `jupyter-session`: the session keeper, the diagnostic and session
//! management. The work is done by session-lib; this is argument parsing
//! and output.
#![forbid(unsafe_code)]

fn main() {
    eprintln!("jupyter-session: no subcommands yet");
    std::process::exit(2);
}
