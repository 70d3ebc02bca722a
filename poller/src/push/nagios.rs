//! Nagios 4's passive results for the site, as external commands
//! (`PROCESS_HOST_CHECK_RESULT`, `PROCESS_SERVICE_CHECK_RESULT`): per dom0
//! a host result (reachable or not) and its `xsmon` service (the words of
//! `poller nagios --dom0 NAME`); per guest a host result (running or not)
//! and its `xsmon` service (the words of `poller nagios --guest NAME`).
//! The objects they name are what `poller nagios-objects` generates. A
//! dom0 that could not be read gets its host result only (DOWN, with the
//! error): one alert; its service's and its guests' results stand until
//! the dom0 answers again or their freshness runs out.
//! A result pushed twice does no harm: Nagios takes the later.

use crate::outputs::nagios::nagios;
use crate::report;
use crate::site::Site;

/// The service every dom0 and guest host carries.
pub const SERVICE: &str = "xsmon";

/// The characters Nagios refuses in an object name (its default
/// `illegal_object_name_chars`), and the field separator.
pub fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !"`~!$%^&*|'\"<>?,()=;".contains(c))
}

/// Every command of one push, each a line for the command file. Names
/// Nagios would refuse are left out and returned, to be said.
pub fn commands(site: &Site, now: i64) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    let scoper = site.scoper();
    for (i, d) in site.dom0s.iter().enumerate() {
        if !valid_object_name(&d.name) {
            refused.push(d.name.clone());
            continue;
        }
        let (up, text) = match &d.error {
            None => (0, format!("XSMON UP - {} answered", d.target)),
            Some(e) => (1, format!("XSMON DOWN - {}", e)),
        };
        lines.push(host_result(now, &d.name, up, &text));
        if d.error.is_some() {
            // Its host is DOWN with the error: that is the one alert. Its
            // service and its guests' results stand as they were.
            continue;
        }
        let r = report::build(scoper.scoped(&[i]), Some(&d.name), None);
        let (out, state) = nagios(&r, Some(&d.name), None);
        lines.push(service_result(now, &d.name, state, &out));
    }
    for (guest, at) in site.guest_index() {
        if !valid_object_name(&guest) {
            refused.push(guest);
            continue;
        }
        let running = at.iter().any(|&i| {
            site.dom0s[i].guests.iter().any(|g| {
                crate::poll::base_name(&g.name) == guest
                    && !xsmon_proto::snmpline::probe_is_down(&g.probe)
            })
        });
        let text = if running {
            "XSMON UP - running".to_string()
        } else {
            "XSMON DOWN - should run and does not".to_string()
        };
        lines.push(host_result(now, &guest, if running { 0 } else { 1 }, &text));
        let r = report::build(scoper.scoped(&at), None, Some(&guest));
        let (out, state) = nagios(&r, None, Some(&guest));
        lines.push(service_result(now, &guest, state, &out));
    }
    (lines, refused)
}

/// Writes the commands into Nagios's command file (the FIFO Nagios
/// reads). Opened without waiting, so a Nagios that is not running is said
/// at once; then written whole, waiting while Nagios reads.
pub fn write_commands(path: &std::path::Path, lines: &[String]) -> Result<(), String> {
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
    for l in lines {
        w.write_all(l.as_bytes()).map_err(said)?;
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
    fn names_nagios_refuses_are_told_apart() {
        assert!(valid_object_name("web01"));
        assert!(valid_object_name("web01.example.org"));
        assert!(!valid_object_name("web;01"));
        assert!(!valid_object_name("web 01"));
        assert!(!valid_object_name(""));
    }

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
