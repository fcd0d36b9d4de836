//! The configuration's documentation, from one source: the `///` comments
//! on the fields of [`Config`](crate::config::Config), read from the source
//! of `config.rs` itself. Each comment is one or two sentences for a
//! sysadmin ending in "Default: `VALUE`" (VALUE as TOML). From them come the
//! man page jupyter-session.toml(5) (`jupyter-session generate-man`), the key
//! list in docs/configuration.md and the key table in README.md; the tests
//! below fail when a field has no comment or default, when a stated default
//! is not `Config::default()`'s, or when either document differs.
#![forbid(unsafe_code)]

const SOURCE: &str = include_str!("config.rs");

/// One key of the config file, as documented on its `Config` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDoc {
    /// The field's (and the key's) name.
    pub key: String,
    /// The comment without its "Default: `...`" sentence.
    pub text: String,
    /// The stated default, as TOML; `None` when the comment states none.
    pub default: Option<String>,
}

/// Every field of `Config`, in declaration order.
pub fn keys() -> Vec<KeyDoc> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut doc: Vec<&str> = Vec::new();
    for line in SOURCE.lines() {
        let line = line.trim();
        if !inside {
            inside = line == "pub struct Config {";
            continue;
        }
        if line == "}" {
            break;
        }
        if let Some(comment) = line.strip_prefix("///") {
            doc.push(comment.trim());
            continue;
        }
        if let Some((name, _)) = line.strip_prefix("pub ").and_then(|field| field.split_once(':')) {
            let text = doc.join(" ");
            let (text, default) = split_default(&text);
            out.push(KeyDoc { key: name.trim().to_string(), text, default });
        }
        if !line.starts_with("#[") {
            doc.clear();
        }
    }
    out
}

/// "Meaning. Default: `x`." → ("Meaning.", Some("x")). Also takes
/// "default: `x`" and "(default `x`)" at the end, as others may write it.
fn split_default(text: &str) -> (String, Option<String>) {
    let lower = text.to_ascii_lowercase();
    let found = ["default: `", "default `"].iter().filter_map(|m| lower.rfind(m).map(|at| (at, m.len()))).max();
    let Some((at, len)) = found else {
        return (text.trim().to_string(), None);
    };
    let rest = &text[at + len..];
    let Some(end) = rest.find('`') else {
        return (text.trim().to_string(), None);
    };
    let before = text[..at].trim_end();
    let before = before.strip_suffix('(').unwrap_or(before).trim_end();
    let before = before.strip_suffix(';').or_else(|| before.strip_suffix(',')).unwrap_or(before).trim_end();
    let mut meaning = before.to_string();
    let after = rest[end + 1..].trim_start_matches([')', '.', ' ']);
    if !after.is_empty() {
        meaning = format!("{meaning} {after}");
    }
    if !meaning.ends_with('.') {
        meaning.push('.');
    }
    (meaning, Some(rest[..end].to_string()))
}

/// The key list of docs/configuration.md (between its `config-keys` markers).
pub fn markdown_list() -> String {
    let mut out = String::new();
    for k in keys() {
        let default = k.default.as_deref().unwrap_or("(none)");
        out.push_str(&wrap(&format!("- `{}` (default `{default}`): {}", k.key, k.text), "  ", 118));
    }
    out
}

/// The key table of README.md (between its `config-keys` markers).
pub fn markdown_table() -> String {
    let mut out = String::from("| key | default |\n| --- | --- |\n");
    for k in keys() {
        out.push_str(&format!("| `{}` | `{}` |\n", k.key, k.default.as_deref().unwrap_or("(none)")));
    }
    out
}

fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line = indent.to_string();
        } else if !line.is_empty() && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The commented /etc/security/jupyter-session.toml the packages ship:
/// every key with its meaning and default, all commented out.
pub fn commented_toml() -> String {
    let mut out = String::from(concat!(
        "# /etc/security/jupyter-session.toml: settings of pam_jupyter and jupyter-session.\n",
        "# Nothing needs to be set: every key below is commented out and shows its default.\n",
        "# This file and every directory above it must be root's and not writable by group or\n",
        "# others. Module arguments (key=value on the PAM line) override it.\n",
        "# See jupyter-session.toml(5).\n",
    ));
    for k in keys() {
        out.push('\n');
        out.push_str(&wrap(&format!("# {}", k.text.replace('`', "")), "# ", 100));
        out.push_str(&format!("#{} = {}\n", k.key, k.default.as_deref().unwrap_or("")));
    }
    out
}

/// Text for roff: backslashes and leading control characters escaped,
/// `code` spans in bold.
fn roff(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("\\fB");
            out.push_str(part);
            out.push_str("\\fR");
        } else {
            out.push_str(part);
        }
    }
    let out = out.trim().to_string();
    if out.starts_with('.') || out.starts_with('\'') { format!("\\&{out}") } else { out }
}

/// jupyter-session.toml(5), in man(7) markup.
pub fn man_page(version: &str, date: &str) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        ".TH JUPYTER\\-SESSION.TOML 5 {date} \"jupyter\\-session {}\" \"File Formats Manual\"\n",
        roff(version)
    ));
    m.push_str(".SH NAME\njupyter\\-session.toml \\- configuration of pam_jupyter and jupyter\\-session\n");
    m.push_str(".SH SYNOPSIS\n.B /etc/security/jupyter\\-session.toml\n");
    m.push_str(concat!(
        ".SH DESCRIPTION\n",
        "Nothing needs a config file. Settings come from the built\\-in defaults, then this file if it exists ",
        "(or the file named by the module argument \\fBconfig=\\fR\\fIPATH\\fR), then the module arguments ",
        "(\\fIkey\\fR=\\fIvalue\\fR). The CLI reads the same file, or the one named by \\fB\\-\\-config\\fR.\n",
        ".PP\n",
        "The file is TOML. An unknown key, a wrong type or a bad value refuses the session, with a log line ",
        "naming the key, the value and the file and line.\n",
        ".PP\n",
        "The file is trusted only if it and every directory above it are owned by root and not writable by ",
        "group or others (a root\\-owned sticky directory such as /tmp excepted); otherwise the module refuses ",
        "every session and every \\fBjupyter\\-session\\fR subcommand exits 125, naming the culprit and the ",
        "\\fBchown\\fR/\\fBchmod\\fR that fixes it.\n",
        ".SH KEYS\n",
    ));
    for k in keys() {
        m.push_str(&format!(
            ".TP\n.BR {} \" = \" {}\n{}\n",
            k.key,
            roff(k.default.as_deref().unwrap_or("(none)")).replace('"', "\\(dq"),
            roff(&k.text)
        ));
    }
    m.push_str(concat!(
        ".SH EXAMPLES\n",
        ".EX\n",
        "tmpfs_size = \"1G\"\n",
        "linger_users = [\"svc\\-builds\"]\n",
        "path = \"/opt/conda/bin:/usr/local/bin:/usr/bin:/bin\"\n",
        ".EE\n",
        ".PP\nThe same as module arguments:\n",
        ".EX\n",
        "session required pam_jupyter.so tmpfs_size=1G linger_users=svc\\-builds\n",
        ".EE\n",
        ".SH FILES\n",
        ".TP\n.I /etc/security/jupyter\\-session.toml\nthe default file\n",
        ".SH SEE ALSO\n",
        ".BR pam_jupyter (8),\n.BR jupyter\\-session (1)\n",
    ));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, KEYS, RawValue, Source};

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The text between `<!-- config-keys:begin -->` and `<!-- config-keys:end -->`.
    fn between_markers(text: &str, file: &str) -> String {
        let begin = "<!-- config-keys:begin -->\n";
        let a = text.find(begin).unwrap_or_else(|| panic!("{file} has no {begin}")) + begin.len();
        let b = text[a..].find("<!-- config-keys:end -->").unwrap_or_else(|| panic!("{file} has no end marker"));
        text[a..a + b].to_string()
    }

    #[test]
    fn config_doc_every_field_has_text_and_its_true_default() {
        let keys = keys();
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(names, KEYS, "Config's fields and config::KEYS must list the same keys, in the same order");
        for k in &keys {
            assert!(k.text.len() > 20, "Config.{}: write a `///` comment a sysadmin can read", k.key);
            let default = k.default.as_deref().unwrap_or_else(|| {
                panic!("Config.{}: its `///` comment must end with \"Default: `VALUE`.\" (VALUE as TOML)", k.key)
            });
            let value: toml::Table = toml::from_str(&format!("v = {default}"))
                .unwrap_or_else(|e| panic!("Config.{}: default `{default}` is not a TOML value: {e}", k.key));
            let mut config = Config::default();
            config
                .set(&k.key, RawValue::Toml(value["v"].clone()), Source::CommandLine)
                .unwrap_or_else(|e| panic!("Config.{}: stated default `{default}`: {e}", k.key));
            assert_eq!(
                config,
                Config::default(),
                "Config.{}: the stated default `{default}` is not the real one",
                k.key
            );
        }
    }

    #[test]
    fn config_doc_docs_and_readme_are_generated_from_config() {
        let fix = "regenerate with `cargo run -p jupyter-session -- generate-docs .`";
        let page = repo_file("docs/configuration.md");
        assert_eq!(between_markers(&page, "docs/configuration.md"), markdown_list(), "docs/configuration.md: {fix}");
        let readme = repo_file("README.md");
        assert_eq!(between_markers(&readme, "README.md"), markdown_table(), "README.md: {fix}");
    }

    #[test]
    fn config_doc_man_page_names_every_key_and_default() {
        let man = man_page("0.0.0", "2026-12-01");
        for k in keys() {
            assert!(man.contains(&format!(".BR {} ", k.key)), "{}", k.key);
        }
        assert!(man.contains("\\fB\"/run/user\"\\fR") || man.contains("\\(dq/run/user\\(dq"), "{man}");
    }

    #[test]
    fn config_doc_commented_toml_is_the_defaults() {
        let text = commented_toml();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| keys().iter().any(|k| l.starts_with(&format!("{} = ", k.key))))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(uncommented.lines().count(), keys().len(), "{text}");
        let path = std::path::Path::new("/etc/security/jupyter-session.toml");
        assert_eq!(Config::from_toml(&uncommented, path).unwrap(), Config::default());
        assert_eq!(Config::from_toml(&text, path).unwrap(), Config::default());
    }

    #[test]
    fn config_doc_split_default() {
        assert_eq!(split_default("Meaning. Default: `1`."), ("Meaning.".to_string(), Some("1".to_string())));
        assert_eq!(split_default("No default here."), ("No default here.".to_string(), None));
        let other = split_default("Seconds to wait (default `30`).");
        assert_eq!(other, ("Seconds to wait.".to_string(), Some("30".to_string())));
        let other = split_default("Seconds to wait; default: `\"30s\"`");
        assert_eq!(other, ("Seconds to wait.".to_string(), Some("\"30s\"".to_string())));
    }
}
