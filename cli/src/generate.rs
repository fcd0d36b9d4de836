//! Hidden subcommands that write the man pages, the shell completions and
//! the generated parts of the docs, all from the definitions they describe:
//! the clap definitions of this CLI, the `///` comments on `Config`
//! (session_lib::config_doc) and the hand-written pam_jupyter(8).
//! install.sh and the package builders run `generate-man` and
//! `generate-completions`; `generate-docs` rewrites the marked sections of
//! README.md and docs/configuration.md.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct DirArgs {
    /// Directory to write into (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// The date on every page: that of the last change to what they describe
/// (fixed, so that two builds give the same pages).
const MAN_DATE: &str = "2026-12-01";

/// pam_jupyter(8), written by hand (the module has no clap definitions).
const PAM_JUPYTER_8: &str = include_str!("../../docs/man/pam_jupyter.8");

fn fail(what: &str, path: &Path, e: impl std::fmt::Display) -> i32 {
    eprintln!("jupyter-session: cannot {what} {}: {e}", path.display());
    session_lib::exit_code::FAILED
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), i32> {
    std::fs::write(path, bytes).map_err(|e| fail("write", path, e))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), i32> {
    std::fs::create_dir_all(dir).map_err(|e| fail("create directory", dir, e))
}

/// jupyter-session.1, one jupyter-session-SUB.1 per visible subcommand,
/// jupyter-session.toml.5 and pam_jupyter.8.
pub fn man(args: DirArgs) -> i32 {
    match write_man(&args.dir) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

fn write_man(dir: &Path) -> Result<(), i32> {
    mkdir(dir)?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").cloned());
    let version = env!("CARGO_PKG_VERSION");
    for page in pages {
        let name = page.get_display_name().unwrap_or(page.get_name()).to_string();
        let mut out = Vec::new();
        let path = dir.join(format!("{name}.1"));
        clap_mangen::Man::new(page)
            .title(name.to_uppercase())
            .date(MAN_DATE)
            .source(format!("jupyter-session {version}"))
            .manual("User Commands")
            .render(&mut out)
            .map_err(|e| fail("render", &path, e))?;
        write(&path, &out)?;
    }
    let toml5 = session_lib::config_doc::man_page(version, MAN_DATE);
    write(&dir.join("jupyter-session.toml.5"), toml5.as_bytes())?;
    write(&dir.join("pam_jupyter.8"), PAM_JUPYTER_8.as_bytes())?;
    Ok(())
}

/// jupyter-session.bash, _jupyter-session (zsh), jupyter-session.fish.
pub fn completions(args: DirArgs) -> i32 {
    if let Err(code) = mkdir(&args.dir) {
        return code;
    }
    let mut cmd = crate::Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        match clap_complete::generate_to(shell, &mut cmd, "jupyter-session", &args.dir) {
            Ok(path) => println!("wrote {}", path.display()),
            Err(e) => return fail("write completions into", &args.dir, e),
        }
    }
    0
}

/// DIR/jupyter-session.toml: every key commented out, with its default.
pub fn config(args: DirArgs) -> i32 {
    match mkdir(&args.dir) {
        Ok(()) => {
            match write(&args.dir.join("jupyter-session.toml"), session_lib::config_doc::commented_toml().as_bytes()) {
                Ok(()) => 0,
                Err(code) => code,
            }
        }
        Err(code) => code,
    }
}

/// Replace the text between `<!-- config-keys:begin -->` and
/// `<!-- config-keys:end -->` in README.md and docs/configuration.md of the
/// source tree DIR.
pub fn docs(args: DirArgs) -> i32 {
    let files = [
        ("README.md", session_lib::config_doc::markdown_table()),
        ("docs/configuration.md", session_lib::config_doc::markdown_list()),
    ];
    for (rel, generated) in files {
        let path = args.dir.join(rel);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return fail("read", &path, e),
        };
        let (begin, end) = ("<!-- config-keys:begin -->\n", "<!-- config-keys:end -->");
        let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else {
            return fail("update", &path, format!("it needs the markers {begin:?} and {end:?}, in that order"));
        };
        let a = a + begin.len();
        if b < a {
            return fail("update", &path, "the end marker comes before the begin marker");
        }
        let new = format!("{}{generated}{}", &text[..a], &text[b..]);
        if let Err(code) = write(&path, new.as_bytes()) {
            return code;
        }
    }
    0
}
