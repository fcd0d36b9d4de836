//! `jupyter-session exec`: the session keeper.
#![forbid(unsafe_code)]

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub user: String,
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(_args: Args) -> i32 {
    eprintln!("jupyter-session exec: not built yet");
    125
}
