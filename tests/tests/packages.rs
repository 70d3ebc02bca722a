//! The three Debian packages: built by scripts/package from the workspace's
//! binaries, checked by lintian (no errors), installed with dpkg -i, used,
//! removed with dpkg -r and purged, leaving nothing behind: on this Debian
//! 12 machine, and in a Debian 13 root (scripts/trixie-root).

use std::path::{Path, PathBuf};
use std::process::Command;

use xsmon_tests::stdout_ok;
use xsmon_xenstore::Store;

#[test]
fn packages_pass_lintian_install_work_and_remove_cleanly() {
    let out = tempfile::tempdir().unwrap();
    let profile = xsmon_tests::build_profile();
    let built = stdout_ok(
        Command::new(xsmon_tests::repo_root().join("scripts/package"))
            .args(["--profile", profile])
            .arg(out.path()),
    );
    let debs: Vec<&str> = built.lines().filter(|l| l.ends_with(".deb")).collect();
    assert_eq!(debs.len(), 3, "{built}");

    for deb in &debs {
        let l = Command::new("lintian")
            .args(["--tag-display-limit", "0", deb])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&l.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E: ")).collect();
        assert!(
            errors.is_empty(),
            "lintian errors in {deb}:\n{}",
            errors.join("\n")
        );
    }

    install_on_debian_13(&debs);

    stdout_ok(Command::new("dpkg").arg("-i").args(&debs));
    for (prog, pkg) in [
        ("guest-probe", "xsmon-guest"),
        ("host-collector", "xsmon-dom0"),
        ("snmp-extend", "xsmon-dom0"),
        ("poller", "xsmon-poller"),
    ] {
        let help = stdout_ok(Command::new(format!("/usr/bin/{prog}")).arg("--help"));
        assert!(help.contains("Usage:"), "{prog}: {help}");
        assert!(
            Path::new(&format!("/usr/share/man/man1/{prog}.1.gz")).exists(),
            "{prog} man page"
        );
        assert!(
            Path::new(&format!("/usr/share/bash-completion/completions/{prog}")).exists(),
            "{prog} completion"
        );
        let listed = stdout_ok(Command::new("dpkg").args(["-L", pkg]));
        assert!(listed.contains(&format!("/usr/bin/{prog}")));
    }
    assert!(Path::new("/etc/cron.d/xsmon-guest-probe").exists());
    assert!(Path::new("/etc/snmp/snmpd.conf.d/xsmon.conf").exists());
    // The poller's service, its state's directory, its dashboard.
    assert!(Path::new("/lib/systemd/system/xsmon-poller.service").exists());
    assert!(Path::new("/var/lib/xsmon").is_dir());
    assert!(Path::new("/usr/share/xsmon/grafana/xsmon-site.json").exists());
    let unit = std::fs::read_to_string("/lib/systemd/system/xsmon-poller.service").unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/poller serve"), "{unit}");
    // The installed probe reads its installed config.
    let p = stdout_ok(Command::new("/usr/bin/guest-probe").args([
        "--config",
        "/etc/xsmon/probe.toml",
        "--help",
    ]));
    assert!(p.contains("--domain-path"));
    installed_probe_config_writes_the_newest_layout();

    stdout_ok(Command::new("dpkg").args(["-r", "xsmon-guest", "xsmon-dom0", "xsmon-poller"]));
    assert!(!Path::new("/usr/bin/guest-probe").exists());
    assert!(!Path::new("/usr/bin/poller").exists());
    // Config files stay after -r, as Debian does, and go with --purge.
    assert!(Path::new("/etc/xsmon/probe.toml").exists());
    stdout_ok(Command::new("dpkg").args(["--purge", "xsmon-guest", "xsmon-dom0", "xsmon-poller"]));
    assert!(!Path::new("/etc/xsmon/probe.toml").exists());
    assert!(!Path::new("/etc/cron.d/xsmon-host-collector").exists());
}

/// The same packages on Debian 13: installed with dpkg in a minimal trixie
/// root (debootstrap minbase: what the packages' Depends name and nothing
/// more), each program run there, then purged, leaving nothing behind.
fn install_on_debian_13(debs: &[&str]) {
    let root = PathBuf::from(
        stdout_ok(&mut Command::new(
            xsmon_tests::repo_root().join("scripts/trixie-root"),
        ))
        .trim(),
    );
    let version = std::fs::read_to_string(root.join("etc/debian_version")).unwrap();
    assert!(version.starts_with("13"), "not Debian 13: {version}");
    let inside = root.join("tmp/xsmon-debs");
    let _ = std::fs::remove_dir_all(&inside);
    std::fs::create_dir_all(&inside).unwrap();
    let mut names = Vec::new();
    for deb in debs {
        let name = Path::new(deb)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::copy(deb, inside.join(&name)).unwrap();
        names.push(format!("/tmp/xsmon-debs/{name}"));
    }
    let chroot = |args: &[&str]| stdout_ok(Command::new("chroot").arg(&root).args(args));
    let mut install = vec!["dpkg", "-i"];
    install.extend(names.iter().map(String::as_str));
    chroot(&install);
    for pkg in ["xsmon-guest", "xsmon-dom0", "xsmon-poller"] {
        let status = chroot(&["dpkg-query", "-W", "-f", "${Status}", pkg]);
        assert_eq!(status, "install ok installed", "{pkg} on Debian 13");
    }
    for prog in ["guest-probe", "host-collector", "snmp-extend", "poller"] {
        let help = chroot(&[&format!("/usr/bin/{prog}"), "--help"]);
        assert!(help.contains("Usage:"), "{prog} on Debian 13: {help}");
    }
    // The collector's first cycle on Debian 13 (no xenstore here: the
    // cycle is stored with that error and the command says so).
    let out = Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/bin/host-collector",
            "collect",
            "--xenstore",
            "/nonexistent/socket",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/socket"),
        "{err}"
    );
    let status = chroot(&["/usr/bin/host-collector", "status"]);
    assert!(status.contains("cannot read xenstore"), "{status}");
    assert!(root.join("etc/cron.d/xsmon-guest-probe").exists());
    chroot(&[
        "dpkg",
        "--purge",
        "xsmon-guest",
        "xsmon-dom0",
        "xsmon-poller",
    ]);
    for gone in [
        "usr/bin/guest-probe",
        "usr/bin/poller",
        "etc/xsmon/probe.toml",
        "etc/cron.d/xsmon-host-collector",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left on Debian 13");
    }
    let _ = std::fs::remove_dir_all(&inside);
}

/// The packaged `/etc/xsmon/probe.toml`, as installed, drives a real run of
/// the installed probe into a real oxenstored: it writes the newest key
/// layout (the one whose `resumed` field tells dom0 a restore from a
/// reboot), never an older one a shipped config pinned.
fn installed_probe_config_writes_the_newest_layout() {
    let xs = xsmon_tests::Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    xsmon_tests::add_domain(&mut c, 7, "web01").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = xsmon_tests::probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    stdout_ok(
        Command::new("/usr/bin/guest-probe")
            .env_remove("XENSTORED_PATH")
            .arg("--config")
            .arg("/etc/xsmon/probe.toml")
            .arg("--root")
            .arg(root.path())
            .arg("--state-file")
            .arg(tmp.path().join("state"))
            .arg("--xenstore")
            .arg(xs.socket())
            .args(["--domain-path", "/local/domain/7"]),
    );
    let version = c.read("/local/domain/7/data/xsmon/version").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version),
        xsmon_proto::layout::VERSION.to_string(),
        "the packaged probe.toml makes the probe write layout {}",
        String::from_utf8_lossy(&version)
    );
    // Layout 6: the run line heads chunk/0 (`xsmon/6 <time> <seq>
    // <chunks> <resumed> ...`).
    let run = c.read("/local/domain/7/data/xsmon/chunk/0").unwrap();
    let run = String::from_utf8_lossy(&run);
    assert!(
        run.split(' ')
            .nth(4)
            .is_some_and(|r| r == "-" || r.contains(',')),
        "the run line carries the resumed field: {run}"
    );
}
