//! The poller's output modes against the site: raw, report, nagios, json;
//! discovery through a principal, and SNMPv3.

use crate::{run, site, stdout};
use std::time::Duration;
use xsmon_proto::rawline;
use xsmon_tests::cluster::DEMO_FINDINGS;

#[test]
fn raw_mode_lists_every_finding_once_in_order() {
    let (out, took) = run(&["raw"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<rawline::RawLine> = text
        .lines()
        .map(|l| rawline::parse(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let keys: Vec<(&str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l.severity.as_str(),
                l.dom0.as_str(),
                l.host.as_str(),
                l.check.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        {
            // The demo's findings, and the garbage dom0 (the slow one is
            // healthy), in raw order: errors by dom0 before notes.
            let mut want = DEMO_FINDINGS.to_vec();
            let notes = want.iter().position(|f| f.0 == "info").unwrap();
            want.insert(notes, ("error", "xen05", "", "snmp"));
            want
        },
        "{text}"
    );
    let msg = |i: usize| lines[i].message.as_str();
    assert!(msg(1).contains("pages/s"), "{}", msg(1));
    assert!(
        msg(2).starts_with("/srv/data (xfs) 100% used"),
        "{}",
        msg(2)
    );
    assert!(msg(3).contains("unreachable"), "{}", msg(3));
    assert!(
        msg(4).starts_with("probe not reporting since") && lines[4].age.unwrap() >= 3600,
        "{:?}",
        lines[4]
    );
    assert!(
        msg(5).starts_with("dom0 unreachable") && msg(5).contains("no answer"),
        "{}",
        msg(5)
    );
    assert!(
        msg(6).contains("cannot read") && msg(6).contains("not xsmon output"),
        "{}",
        msg(6)
    );
    assert!(msg(7).contains("its config is under xen01"), "{}", msg(7));
    // Polled together: the slow dom0 (1.5 s) and the dead one (3 s timeout)
    // overlap instead of adding up.
    assert!(took < Duration::from_millis(4500), "took {took:?}");
}

#[test]
fn report_mode_groups_errors_warnings_and_sums_up() {
    let (out, _) = run(&["report", "--color", "never"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ERRORS (7)");
    assert_eq!(lines[1], "  dom0 xen01");
    assert!(
        lines[2].trim_start().starts_with("app01") && lines[2].contains(" ago]"),
        "{}",
        lines[2]
    );
    let headers: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("  dom0") || !l.starts_with(' '))
        .collect();
    assert_eq!(
        headers,
        vec![
            &"ERRORS (7)",
            &"  dom0 xen01",
            &"  dom0 xen02",
            &"  dom0 xen03",
            &"  dom0 xen05",
            &"",
            &"NOTES (1)",
            &"  dom0 xen02",
            &"",
            &lines[lines.len() - 1]
        ]
    );
    assert_eq!(
        lines[lines.len() - 1],
        "5 dom0s polled, 2 unreachable; 8 guests: 4 ok, 0 warning, 3 error, 1 stale"
    );
    assert!(!text.contains('\x1b'), "no colour when piped");
    let (coloured, _) = run(&["report", "--color", "always"]);
    assert!(stdout(&coloured).contains("\x1b[1;31mERRORS (7)\x1b[0m"));
}

#[test]
fn nagios_mode_exit_codes_and_scopes() {
    let (out, _) = run(&["nagios"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("XSMON CRITICAL - 7 errors, 0 warnings; 8 guests on 5 dom0s (2 unreachable) (1 stale) | "),
        "{first}"
    );
    assert!(
        first.contains("'dom0s_unreachable'=2;;1;0") && first.contains("'guests_stale'=1;;1;0"),
        "{first}"
    );
    assert_eq!(
        text.lines().count(),
        8,
        "status line and 7 long-output lines:\n{text}"
    );
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("ERROR xen01/app01 cpu: "));

    // One dom0, healthy (and slow): OK.
    let (out, _) = run(&["nagios", "--dom0", "xen04"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("XSMON OK - 1 guests ok on 1 dom0s | "));
    // One guest: its own state only, not other dom0s' troubles.
    let (out, _) = run(&["nagios", "--guest", "web01"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (out, _) = run(&["nagios", "--guest", "db01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("ERROR xen01/db01 disk2: /srv/data"));
    // A guest on no dom0 that answered, while some could not be polled:
    // UNKNOWN, not OK.
    let (out, _) = run(&["nagios", "--guest", "nosuch"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("XSMON UNKNOWN - nosuch is not on any dom0 that answered, and xen03, xen05 could not be polled"));
    // The same question in raw: a line of its own, never nothing.
    let (out, _) = run(&["raw", "--guest", "nosuch"]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "unknown \\e nosuch probe - nosuch\\sis\\snot\\son\\sany\\sdom0\\sthat\\sanswered,\\sand\\sxen03,\\sxen05\\scould\\snot\\sbe\\spolled\n"
    );
    // Nothing to poll at all: UNKNOWN with the reason.
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["nagios", "--config", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).starts_with("XSMON UNKNOWN - no dom0 to poll"));
}

#[test]
fn json_mode_has_everything() {
    let (out, _) = run(&["json"]);
    assert_eq!(out.status.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["dom0s"].as_array().unwrap().len(), 5);
    assert_eq!(j["summary"]["guests"], 8);
    let xen02 = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "xen02")
        .unwrap();
    assert_eq!(
        xen02["guests"].as_array().unwrap().len(),
        5,
        "4 guests and Domain-0"
    );
    assert!(xen02["error"].is_null());
    let xen03 = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "xen03")
        .unwrap();
    assert!(xen03["error"].as_str().unwrap().contains("unreachable"));
    // Figures come along in json: every check of a current run, none for
    // a guest whose probe went silent.
    let guest = |d: &serde_json::Value, name: &str| {
        d["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap()
            .clone()
    };
    let mail01 = guest(xen02, "mail01");
    let mem = mail01["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "mem")
        .unwrap_or_else(|| panic!("{mail01}"));
    assert!(mem["values"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "used_pct"));
    assert_eq!(mem["limits"][0]["error"], 97.0);
    assert!(guest(xen02, "old01").get("figures").is_none());
}

#[test]
fn principal_discovery_finds_the_same_dom0s() {
    let s = site();
    let principal = &s.dom0s[0].target;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    // No config directory here: the principal's listXenCluster names the
    // dom0s; addresses come from the site's config.
    let text = std::fs::read_to_string(&s.poller_config).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("config_dirs"))
        .map(|l| format!("{l}\n"))
        .collect();
    xsmon_tests::write_private(&cfg, format!("principals = [\"{principal}\"]\n{text}")).unwrap();
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["json", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<&str> = j["dom0s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["xen01", "xen02", "xen03", "xen04", "xen05"]);
}

/// Every authentication and privacy protocol net-snmp offers (RFC 3414,
/// RFC 7860's SHA-2, RFC 3826's AES-128, Blumenthal's AES-192/256).
const AUTHS: [&str; 5] = ["SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"];
const PRIVS: [&str; 3] = ["AES", "AES-192", "AES-256"];

fn v3_user(auth: &str, privacy: &str) -> String {
    format!("u-{auth}-{privacy}").to_lowercase()
}

#[test]
fn snmpv3_every_auth_and_privacy_pair_against_net_snmp() {
    // One snmpd granting access only to SNMPv3 users, one per pair; the
    // poller asks it as one "dom0" per pair, each with its own
    // [snmp.dom0.NAME] user and protocols, the site's default (SHA-512,
    // AES-256) for the first.
    let s = site();
    let xen01 = s.dom0s.iter().find(|d| d.name == "xen01").unwrap();
    let mut conf = String::new();
    for a in AUTHS {
        for p in PRIVS {
            let u = v3_user(a, p);
            conf.push_str(&format!(
                "createUser {u} {a} \"auth-pass-123\" {p} \"priv-pass-123\"\nrouser {u} priv\n"
            ));
        }
    }
    conf.push_str(&format!(
        "extend basicXenstoreMonitoring {} basic-monitoring --db {}\n",
        xsmon_tests::bin("snmp-extend").display(),
        xen01.db.display()
    ));
    let snmpd = xsmon_tests::Snmpd::start(&conf).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = vec![format!("\"default={}\"", snmpd.target())];
    let mut per_dom0 = String::new();
    let mut names = vec!["default".to_string()];
    for a in AUTHS {
        for p in PRIVS {
            let name = format!("v3-{a}-{p}").to_lowercase();
            hosts.push(format!("\"{name}={}\"", snmpd.target()));
            per_dom0.push_str(&format!(
                "[snmp.dom0.{name}]\nv3_user = \"{}\"\nv3_auth_protocol = \"{a}\"\nv3_priv_protocol = \"{p}\"\n",
                v3_user(a, p)
            ));
            names.push(name);
        }
    }
    let write = |name: &str, auth_pass: &str, extra: &str| {
        let p = dir.path().join(name);
        xsmon_tests::write_private(
            &p,
            format!(
                "hosts = [{}]\n[snmp]\nversion = \"3\"\ntimeout_ms = 2000\nretries = 0\nv3_user = \"u-sha-512-aes-256\"\nv3_auth_password = \"{auth_pass}\"\nv3_priv_password = \"priv-pass-123\"\n{extra}",
                hosts.join(", ")
            ),
        )
        .unwrap();
        p
    };
    let good = write("good.toml", "auth-pass-123", &per_dom0);
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["raw", "-vv", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&out);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}{log}");
    for name in &names {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("error {name} db01 disk2 "))),
            "{name} was not read:\n{text}"
        );
    }
    // Every "dom0" here is xen01's snmpd under another name: the poller
    // warns of that, and of nothing else about SNMP.
    assert!(
        text.lines()
            .filter(|l| l.contains(" \\e snmp - "))
            .all(|l| l.starts_with("warning ")
                && l.contains("but\\sits\\scollector\\scalls\\sitself\\sxen01")),
        "{text}"
    );
    // The passwords are in no output and no log, even at -vv: not in raw,
    // JSON (everything the poller knows) or --help.
    let json = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["json", "-vv", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    let help = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["--help", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(stdout(&json).contains("\"db01\""), "{}", stdout(&json));
    let said = [
        text.clone(),
        log.to_string(),
        stdout(&json),
        String::from_utf8_lossy(&json.stderr).into_owned(),
        stdout(&help),
    ];
    for secret in ["auth-pass-123", "priv-pass-123"] {
        for out in &said {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
    }

    // A wrong password, and a user asked with another protocol than its
    // createUser's: the agent's report, with what we asked, at once; not
    // a timeout, not a silent gap.
    let bad = write(
        "bad.toml",
        "wrong-pass-456",
        "[snmp.dom0.v3-sha-256-aes]\nv3_user = \"u-sha-256-aes\"\nv3_auth_password = \"auth-pass-123\"\nv3_auth_protocol = \"SHA-512\"\nv3_priv_protocol = \"AES\"\n",
    );
    let t = std::time::Instant::now();
    let out = std::process::Command::new(xsmon_tests::bin("poller"))
        .args(["raw", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("error {name} \\e snmp - ")))
            .unwrap_or_else(|| panic!("no snmp error for {name}:\n{text}"))
            .replace("\\s", " ")
    };
    let wrong_pass = line("default");
    assert!(
        wrong_pass.contains("SNMPv3: wrong digest (wrong auth password or protocol?) (asked as user u-sha-512-aes-256 with SHA-512 and AES-256)"),
        "{wrong_pass}"
    );
    let wrong_protocol = line("v3-sha-256-aes");
    assert!(
        wrong_protocol.contains("SNMPv3: wrong digest (wrong auth password or protocol?) (asked as user u-sha-256-aes with SHA-512 and AES)"),
        "{wrong_protocol}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "a refusal is the agent's report, not the 2 s timeout: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_config_with_secrets_that_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let s = site();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("poller.toml");
    let text = std::fs::read_to_string(&s.poller_config).unwrap();
    std::fs::write(&cfg, &text).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = |mode: &str| {
        std::process::Command::new(xsmon_tests::bin("poller"))
            .args([mode, "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run("report");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let p = cfg.display();
    assert!(
        err.contains(&format!(
            "{p} holds secrets (snmp.community) and is mode 0644"
        )),
        "{err}"
    );
    assert!(
        err.contains("anyone on this machine can read them"),
        "{err}"
    );
    assert!(err.contains(&format!("Run `chmod 600 {p}`")), "{err}");
    assert!(
        !err.contains(xsmon_tests::COMMUNITY),
        "the community leaked: {err}"
    );
    // Nagios's mode says it as UNKNOWN, on its one line.
    let out = run("nagios");
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.starts_with("XSMON UNKNOWN - ") && said.contains("chmod 600"),
        "{said}"
    );
    // The explicit override, for those who must.
    std::fs::write(&cfg, format!("secrets_readable_by = \"anyone\"\n{text}")).unwrap();
    let out = run("raw");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Mode 0600 is read as it is.
    std::fs::write(&cfg, &text).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(run("raw").status.code(), Some(2));
}
