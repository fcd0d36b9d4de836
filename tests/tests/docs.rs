//! The documentation a sysadmin reads: man pages (`mandoc -T lint`), shell
//! completions, `--help` texts, the README's Quick start, its links and
//! line width. The man pages and completions come from the CLI's hidden
//! `generate-man` / `generate-completions`, as install.sh and the packages
//! make them.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;

use jupyter_session_tests::*;

/// Every subcommand a user sees, as `jupyter-session --help` lists them
/// (the hidden generate-* ones and `help` excluded): a subcommand added
/// later is checked like the others.
fn subcommands() -> Vec<String> {
    let out = run_ok(Command::new(cli_path()).arg("--help"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let list = text.split("Commands:\n").nth(1).expect("--help lists Commands:");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for known in ["exec", "check", "open", "close", "list", "gc"] {
        assert!(names.iter().any(|n| n == known), "--help does not list {known}: {text}");
    }
    names
}

fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn man_pages_are_generated_for_everything_and_lint_clean() {
    let dir = temp_dir("jsman");
    run_ok(Command::new(cli_path()).arg("generate-man").arg(&dir));
    let mut pages = vec!["jupyter-session.1".to_string(), "jupyter-session.toml.5".into(), "pam_jupyter.8".into()];
    let subcommands = subcommands();
    pages.extend(subcommands.iter().map(|s| format!("jupyter-session-{s}.1")));
    let mut found: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    found.sort();
    pages.sort();
    assert_eq!(found, pages, "generate-man wrote other pages than expected (a subcommand without a page?)");
    let main = std::fs::read_to_string(dir.join("jupyter-session.1")).unwrap();
    for s in &subcommands {
        assert!(main.contains(&format!("jupyter\\-session\\-{s}(1)")), "jupyter-session(1) does not name {s}");
    }
    assert!(!main.contains("generate"), "the hidden generate-* subcommands are not for users");
    let toml5 = std::fs::read_to_string(dir.join("jupyter-session.toml.5")).unwrap();
    for key in session_lib::config::KEYS {
        assert!(toml5.contains(&format!(".BR {key} ")), "jupyter-session.toml(5) lacks {key}");
    }
    if require("man_pages_lint_clean", which("mandoc").is_some(), "mandoc (apt-get install mandoc)") {
        for page in &pages {
            let out = run(Command::new("mandoc").args(["-T", "lint", "-W", "warning"]).arg(dir.join(page)));
            assert!(
                out.status.success() && out.stdout.is_empty(),
                "mandoc -T lint -W warning {page}:\n{}",
                stdout_and_stderr(&out)
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_for_bash_zsh_and_fish_know_every_subcommand() {
    let dir = temp_dir("jscomp");
    run_ok(Command::new(cli_path()).arg("generate-completions").arg(&dir));
    for file in ["jupyter-session.bash", "_jupyter-session", "jupyter-session.fish"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for s in subcommands() {
            assert!(text.contains(&s), "{file} does not complete {s}");
        }
        assert!(text.contains("--env-fd") || text.contains("env-fd"), "{file} does not complete exec's options");
    }
    // bash loads it and registers the completion.
    let script = format!("source '{}' && complete -p jupyter-session", dir.join("jupyter-session.bash").display());
    let out = run_ok(Command::new("bash").args(["-c", &script]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("jupyter-session"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_of_every_subcommand_has_an_example_and_exec_its_exit_codes_and_signals() {
    for s in subcommands() {
        let out = run_ok(Command::new(cli_path()).args([&s, "--help"]));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "`jupyter-session {s} --help` has no example:\n{text}");
        assert!(text.contains(&format!("jupyter-session {s}")), "{s}: the example does not run {s}:\n{text}");
    }
    let out = run_ok(Command::new(cli_path()).args(["exec", "--help"]));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["Exit status", "125", "126", "127", "128+N", "SIGINT", "SIGTERM", "SIGKILL", "forwarded"] {
        assert!(text.contains(want), "`exec --help` does not say {want}:\n{text}");
    }
}

#[test]
fn quick_start_is_two_commands_a_root_shell_runs_without_sudo() {
    let commands = quick_start_commands();
    assert_eq!(commands[0], "./install.sh");
    assert!(commands[1].starts_with("jupyter-session exec --user alice -- "), "{}", commands[1]);
    for c in &commands {
        assert!(!c.split_whitespace().any(|w| w == "sudo"), "`{c}`: a root shell without sudo must be able to run it");
    }
}

#[test]
fn readme_is_short_every_link_exists_and_no_line_is_past_120_columns() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let n = readme.lines().count();
    assert!((120..=200).contains(&n), "README.md has {n} lines; keep it to about 150-200 and move detail to docs/");
    let mut pages = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    let mut missing = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        let base = Path::new(page).parent().unwrap();
        for (i, line) in text.lines().enumerate() {
            // docs/benchmarks.md's result tables are wider (numbers, not prose).
            if page != "docs/benchmarks.md" {
                assert!(line.chars().count() <= 120, "{page}:{} is longer than 120 columns: {line}", i + 1);
            }
            for link in line.split("](").skip(1) {
                let target = link.split(')').next().unwrap_or("");
                let target = target.split('#').next().unwrap_or("");
                if target.is_empty() || target.contains("://") {
                    continue;
                }
                if !root.join(base).join(target).exists() {
                    missing.push(format!("{page}:{}: {target}", i + 1));
                }
            }
        }
    }
    assert!(missing.is_empty(), "links to pages that do not exist:\n{}", missing.join("\n"));
}
