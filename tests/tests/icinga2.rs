//! The shipped Icinga 2 definitions (poller/icinga2/) validated by Debian's
//! real icinga2 (`icinga2 daemon -C`), and the services its apply rules
//! create read back from icinga2's own object list.

use std::process::Command;

#[test]
fn icinga2_accepts_the_shipped_definitions_and_applies_a_service_per_dom0_and_guest() {
    let repo = xsmon_tests::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("icinga2.conf");
    // What an Icinga 2 node's own icinga2.conf provides, then the shipped
    // files (the example hosts: xen01 with two guests, xen02 without).
    std::fs::write(
        &conf,
        format!(
            "const PluginDir = \"/usr/lib/nagios/plugins\"\ninclude <itl>\ninclude <plugins>\ninclude \"{}\"\ninclude \"{}\"\n",
            repo.join("poller/icinga2/xsmon.conf").display(),
            repo.join("poller/icinga2/xsmon-hosts.conf.example").display()
        ),
    )
    .unwrap();
    let out = Command::new("icinga2")
        .args(["daemon", "-C", "-c"])
        .arg(&conf)
        .output()
        .expect("icinga2 (Debian package icinga2-bin) is installed by scripts/install-deps");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "icinga2 -C failed:\n{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("Instantiated 4 Services."), "{log}");
    assert!(!log.contains("warning/"), "{log}");

    // The services, with the variables the CheckCommand passes on.
    let list = Command::new("icinga2")
        .args(["object", "list", "--type", "Service"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for (service, var) in [
        ("xen01!xsmon'", "xsmon_dom0 = \"xen01\""),
        ("xen02!xsmon'", "xsmon_dom0 = \"xen02\""),
        ("xen01!xsmon web01'", "xsmon_guest = \"web01\""),
        ("xen01!xsmon db01'", "xsmon_guest = \"db01\""),
    ] {
        let at = list
            .find(service)
            .unwrap_or_else(|| panic!("{service} missing:\n{list}"));
        let block = &list[at..];
        let end = block[1..].find("Object '").map_or(block.len(), |e| e + 1);
        assert!(block[..end].contains(var), "{service}: {}", &block[..end]);
    }
}
