//! Reach beyond Debian 12: the static binaries (scripts/build-static) doing
//! their job in an empty chroot with no C library, and the RPM packages
//! (scripts/package) passing rpmlint, installed with rpm into an empty root,
//! run there, and erased.

use std::path::{Path, PathBuf};
use std::process::Command;

use xsmon_proto::snmpline::{parse_all, Record};
use xsmon_proto::Status;
use xsmon_tests::{add_domain, output_ok, probe_root, repo_root, sample_run, write_run, Xenstored};

const STATIC: [&str; 3] = ["guest-probe", "host-collector", "snmp-extend"];

/// Where scripts/build-static put them: XSMON_STATIC_DIR (scripts/test
/// builds them with its quicker profile), or the release build.
fn static_bin(name: &str) -> PathBuf {
    let p = std::env::var_os("XSMON_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/x86_64-unknown-linux-gnu/release"))
        .join(name);
    assert!(
        p.exists(),
        "{} not built: run scripts/build-static (scripts/test does)",
        p.display()
    );
    p
}

fn assert_static(path: &Path) {
    let segs =
        String::from_utf8(output_ok(Command::new("readelf").arg("-lW").arg(path)).stdout).unwrap();
    assert!(
        !segs.contains("program interpreter"),
        "{}: has an interpreter",
        path.display()
    );
    let dynamic =
        String::from_utf8(output_ok(Command::new("readelf").arg("-dW").arg(path)).stdout).unwrap();
    assert!(
        !dynamic.contains("NEEDED"),
        "{}: needs shared objects:\n{dynamic}",
        path.display()
    );
}

#[test]
fn static_binaries_do_their_job_in_an_empty_chroot() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for b in STATIC {
        assert_static(&static_bin(b));
        std::fs::copy(static_bin(b), r.join(b)).unwrap();
    }
    // Nothing else in the chroot: no /lib, no /usr, no /bin/sh.
    assert!(!r.join("lib").exists() && !r.join("usr").exists());

    // guest-probe --print on a fixture guest copied in.
    let fixture = probe_root("xen-guest", "a", &["127.0.0.1"]).unwrap();
    xsmon_tests::copy_tree(fixture.path(), &r.join("fixture")).unwrap();
    std::fs::write(r.join("probe.toml"), "[cpu]\nfirst_sample_ms = 100\n").unwrap();
    let out = output_ok(Command::new("chroot").arg(r).args([
        "/guest-probe",
        "--print",
        "--root",
        "/fixture",
        "--config",
        "/probe.toml",
        "--state-file",
        "/probe.state",
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    for check in ["cpu", "swap", "net0"] {
        assert!(text.contains(check), "{check} missing:\n{text}");
    }

    // host-collector collect against a real oxenstored, its socket
    // bind-mounted into the chroot (in a private mount namespace).
    let xs = Xenstored::start().unwrap();
    let mut c = xs.client().unwrap();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (id, name) in [(1, "web01"), (2, "db01")] {
        add_domain(&mut c, id, name).unwrap();
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    std::fs::write(
        r.join("collector.toml"),
        "db = \"/history.db\"\ndom0_name = \"xen01\"\nconfig_dirs = []\nxl = \"/nonexistent/xl\"\n",
    )
    .unwrap();
    std::fs::write(r.join("xenstored.sock"), "").unwrap();
    output_ok(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c"]).arg(format!(
        "mount --bind {} {}/xenstored.sock && exec chroot {} /host-collector --config /collector.toml collect --xenstore /xenstored.sock",
        xs.socket().display(),
        r.display(),
        r.display()
    )));
    let db = rusqlite::Connection::open(r.join("history.db")).unwrap();
    let guests: i64 = db
        .query_row(
            "SELECT guests FROM cycle ORDER BY id DESC LIMIT 1",
            [],
            |x| x.get(0),
        )
        .unwrap();
    assert_eq!(guests, 3, "dom0 and two guests");

    // snmp-extend basic-monitoring on that real database.
    let out = output_ok(Command::new("chroot").arg(r).args([
        "/snmp-extend",
        "basic-monitoring",
        "--db",
        "/history.db",
        "--max-age",
        "999999999",
    ]));
    let recs = parse_all(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let hosts: Vec<(String, String)> = recs
        .into_iter()
        .filter_map(|rec| match rec {
            Record::Guest { host, probe, .. } => Some((host, probe)),
            _ => None,
        })
        .collect();
    assert!(
        hosts.contains(&("web01".into(), "fresh".into())),
        "{hosts:?}"
    );
    assert!(
        hosts.contains(&("db01".into(), "fresh".into())),
        "{hosts:?}"
    );
}

#[test]
fn rpms_pass_rpmlint_install_into_an_empty_root_run_and_erase() {
    let out = tempfile::tempdir().unwrap();
    let profile = xsmon_tests::build_profile();
    let built = String::from_utf8(
        output_ok(
            Command::new(repo_root().join("scripts/package"))
                .args(["--profile", profile])
                .arg(out.path()),
        )
        .stdout,
    )
    .unwrap();
    let rpms: Vec<&str> = built.lines().filter(|l| l.ends_with(".rpm")).collect();
    assert_eq!(rpms.len(), 3, "{built}");

    let lint = Command::new("rpmlint")
        .arg("-r")
        .arg(repo_root().join("packaging/xsmon.rpmlintrc"))
        .args(&rpms)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&lint.stdout);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(": E: ")).collect();
    assert!(errors.is_empty(), "rpmlint errors:\n{text}");
    assert!(
        text.contains("0 errors"),
        "{text}{}",
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real install into an empty root: rpm's own database there.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    output_ok(Command::new("rpm").arg("--root").arg(r).arg("--initdb"));
    // --nodeps: the empty root has no glibc for the (dynamic) poller.
    output_ok(
        Command::new("rpm")
            .arg("--root")
            .arg(r)
            .args(["-i", "--nodeps"])
            .args(&rpms),
    );
    let listed = String::from_utf8(
        output_ok(
            Command::new("rpm")
                .arg("--root")
                .arg(r)
                .args(["-ql", "xsmon-dom0"]),
        )
        .stdout,
    )
    .unwrap();
    for f in [
        "/usr/bin/host-collector",
        "/usr/bin/snmp-extend",
        "/etc/xsmon/collector.toml",
        "/usr/lib/systemd/system/xsmon-host-collector.timer",
        "/usr/share/man/man1/host-collector.1.gz",
        "/usr/share/bash-completion/completions/snmp-extend",
        "/var/lib/xsmon",
    ] {
        assert!(
            listed.lines().any(|l| l == f),
            "{f} not in xsmon-dom0:\n{listed}"
        );
    }
    let cfg = String::from_utf8(
        output_ok(
            Command::new("rpm")
                .arg("--root")
                .arg(r)
                .args(["-qc", "xsmon-guest"]),
        )
        .stdout,
    )
    .unwrap();
    assert!(cfg.contains("/etc/xsmon/probe.toml"), "{cfg}");
    // The installed static binaries run in that root, which has no libc.
    for b in STATIC {
        let help = output_ok(
            Command::new("chroot")
                .arg(r)
                .arg(format!("/usr/bin/{b}"))
                .arg("--help"),
        );
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage:"),
            "{b}"
        );
    }
    // A config the admin changed is kept as .rpmsave on erase; the rest goes.
    std::fs::write(r.join("etc/xsmon/probe.toml"), "# changed by the admin\n").unwrap();
    output_ok(Command::new("rpm").arg("--root").arg(r).args([
        "-e",
        "xsmon-guest",
        "xsmon-dom0",
        "xsmon-poller",
    ]));
    assert!(!r.join("usr/bin/guest-probe").exists());
    assert!(!r.join("usr/bin/poller").exists());
    assert!(!r.join("etc/xsmon/collector.toml").exists());
    assert!(r.join("etc/xsmon/probe.toml.rpmsave").exists());
    let left =
        String::from_utf8(output_ok(Command::new("rpm").arg("--root").arg(r).arg("-qa")).stdout)
            .unwrap();
    assert!(!left.contains("xsmon"), "{left}");

    // The tarball for copying by hand: static binaries, man pages, examples.
    let tarball = built
        .lines()
        .find(|l| l.ends_with(".tar.gz"))
        .expect("static tarball");
    let x = tempfile::tempdir().unwrap();
    output_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(x.path()),
    );
    let top = std::fs::read_dir(x.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for b in STATIC {
        assert_static(&top.join("bin").join(b));
        assert!(top.join("man").join(format!("{b}.1")).exists());
    }
    assert!(top.join("README.txt").exists() && top.join("examples/probe.toml").exists());
    // Every role: the poller too (dynamic, as its README says).
    assert!(top.join("bin/poller").exists() && top.join("man/poller.1").exists());
}
