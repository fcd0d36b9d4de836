//! `jupyter-session check`: the diagnostic.
#![forbid(unsafe_code)]

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> i32 {
    eprintln!("jupyter-session check: not built yet");
    2
}
