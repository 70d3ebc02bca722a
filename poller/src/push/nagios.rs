//! Nagios 4's passive results for the site (see the parent module), as
//! external commands (`PROCESS_HOST_CHECK_RESULT`,
//! `PROCESS_SERVICE_CHECK_RESULT`) written into its command file. The
//! objects they name are what `poller nagios-objects` generates.

use super::{Pushed, SERVICE};

/// The command file's line for one result, taken at `now`.
fn command(r: &Pushed, now: i64) -> String {
    if r.service {
        service_result(now, &r.host, r.state, &r.output)
    } else {
        host_result(now, &r.host, r.state, &r.output)
    }
}

/// Writes the commands of `results`, each taken at `now`, into Nagios's
/// command file (the FIFO Nagios reads), each line made as it is written
/// (a push of 100,000 guests holds no second copy of every output).
/// Opened without waiting, so a Nagios that is not running is said at
/// once; then written whole, waiting while Nagios reads.
pub fn write_commands(path: &std::path::Path, results: &[Pushed], now: i64) -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let said = |e: std::io::Error| {
        format!(
            "Nagios's command file {}: {e} (is Nagios running, with check_external_commands=1?)",
            path.display()
        )
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(said)?;
    let flags = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| said(e.into()))?;
    let blocking = nix::fcntl::OFlag::from_bits_truncate(flags) - nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(blocking))
        .map_err(|e| said(e.into()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    for r in results {
        w.write_all(command(r, now).as_bytes()).map_err(said)?;
    }
    w.flush().map_err(said)
}

fn host_result(now: i64, host: &str, state: u8, text: &str) -> String {
    format!(
        "[{now}] PROCESS_HOST_CHECK_RESULT;{host};{state};{}\n",
        one_line(text)
    )
}

fn service_result(now: i64, host: &str, state: u8, output: &str) -> String {
    format!(
        "[{now}] PROCESS_SERVICE_CHECK_RESULT;{host};{SERVICE};{state};{}\n",
        one_line(output)
    )
}

/// A plugin's output on one command line: its newlines as `\n`, which
/// Nagios 4 turns back into its long output.
fn one_line(text: &str) -> String {
    text.trim_end_matches('\n')
        .replace('\\', "/")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_one_command_line() {
        let line = service_result(
            7,
            "web01",
            2,
            "XSMON CRITICAL - x | 'a'=1\nERROR xen01/web01 disk: full\n",
        );
        assert_eq!(
            line,
            "[7] PROCESS_SERVICE_CHECK_RESULT;web01;xsmon;2;XSMON CRITICAL - x | 'a'=1\\nERROR xen01/web01 disk: full\n"
        );
        assert_eq!(line.lines().count(), 1);
    }
}
