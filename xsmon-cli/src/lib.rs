//! What xsmon's four programs share at their command line.
//!
//! * [`init_logging`]: `tracing` to stderr, `-v`/`-vv` or `XSMON_LOG`.
//! * [`load_config`]: a TOML config file, all defaults when the default
//!   file is missing, an error naming the file and line when it is broken.
//! * [`unix_now`]: the time as every record keeps it.
//! * [`maybe_generate`]: `PROGRAM --generate man|bash|zsh|fish DIR` writes
//!   the man page or a shell completion generated from the program's clap
//!   definition (as ripgrep's `--generate` does), for the packages.

use std::path::Path;

use clap_complete::Shell;

/// Logs to stderr: warnings by default, `-v` info, `-vv` debug; the
/// `XSMON_LOG` variable (tracing's filter syntax) overrides.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("XSMON_LOG").unwrap_or_else(|_| level.into());
    // Colours only on a terminal: cron mail, journald and log files get
    // plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads a TOML config. A missing file is all defaults unless
/// `must_exist` (a path the user gave); a broken one is an error naming the
/// file and the line.
pub fn load_config<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    must_exist: bool,
) -> Result<T, String> {
    match read_config(path, must_exist)? {
        Some(text) => parse_config(path, &text),
        None => Ok(T::default()),
    }
}

/// A config file's text; `None` for a missing file unless `must_exist`.
pub fn read_config(path: &Path, must_exist: bool) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(None),
        Err(e) => Err(format!("cannot read config {}: {e}", path.display())),
    }
}

/// A config's text, parsed; an error names the file and places the fault.
pub fn parse_config<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        format!(
            "invalid config {}: {}",
            path.display(),
            parse_error(text, &e)
        )
    })
}

/// Where and what the TOML error is, without toml's quote of the line: a
/// config may hold secrets (the poller's community and passwords), and an
/// error is printed, logged and mailed by cron. On a line that names a
/// community or a password, the values the message quotes go too.
fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    if line.contains("community") || line.contains("password") {
        message = redact_quoted(&message);
    }
    format!(
        "line {line_no}, column {}: {message}",
        start - line_start + 1
    )
}

/// The message with every `quoted` part replaced by `…`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for part in message.split('`') {
        out.push_str(if inside { "`…`" } else { part });
        inside = !inside;
    }
    out
}

/// If the program was run as `PROGRAM --generate KIND DIR`, writes that
/// file into DIR and exits; otherwise returns. Checked before normal
/// argument parsing, so it works for programs whose subcommand is required.
pub fn maybe_generate(cmd: impl FnOnce() -> clap::Command) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("--generate") {
        return;
    }
    let (Some(kind), Some(dir)) = (args.get(2), args.get(3)) else {
        eprintln!("usage: {} --generate man|bash|zsh|fish DIR", args[0]);
        std::process::exit(2);
    };
    match generate(cmd(), kind, Path::new(dir)) {
        Ok(path) => {
            println!("{}", path.display());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{}: --generate {kind}: {e}", args[0]);
            std::process::exit(1);
        }
    }
}

/// Writes the man page (`NAME.1`) or a completion file into `dir`.
pub fn generate(
    mut cmd: clap::Command,
    kind: &str,
    dir: &Path,
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = cmd.get_name().to_string();
    if kind == "man" {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        return Ok(path);
    }
    let shell: Shell = kind.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown kind {kind:?}: man, bash, zsh or fish"),
        )
    })?;
    clap_complete::generate_to(shell, &mut cmd, &name, dir)
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    #[allow(dead_code)]
    struct Snmp {
        community: String,
    }

    #[derive(serde::Deserialize, Default, Debug)]
    #[allow(dead_code)]
    struct WithSecret {
        snmp: Snmp,
    }

    #[test]
    fn a_broken_config_is_placed_without_quoting_its_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (text, place) in [
            ("[snmp]\ncommunity = \"s3cret\n", "line 2, column "),
            (
                "[snmp]\ncommunity = 12345678\n",
                "line 2, column 13: invalid type: integer `…`, expected a string",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load_config::<WithSecret>(&p, true).unwrap_err();
            assert!(e.contains(place), "{e}");
            assert!(!e.contains("s3cret") && !e.contains("12345678"), "{e}");
        }
    }

    #[test]
    fn man_page_and_completions() {
        let dir = std::env::temp_dir().join(format!("xsmon-cli-{}", std::process::id()));
        let cmd = || {
            clap::Command::new("demo")
                .about("Does a thing")
                .arg(clap::Arg::new("x").long("xylophone"))
        };
        let man = generate(cmd(), "man", &dir).unwrap();
        let text = std::fs::read_to_string(&man).unwrap();
        assert!(text.contains(".TH demo") && text.contains("xylophone"));
        let bash = generate(cmd(), "bash", &dir).unwrap();
        assert!(std::fs::read_to_string(bash)
            .unwrap()
            .contains("--xylophone"));
        assert!(generate(cmd(), "tcsh-or-so", &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
