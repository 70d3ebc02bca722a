//! The collector on both toolstacks' xenstore layouts, built on the real
//! oxenstored: xl's (libxl: `name`, `vm` -> `/vm/<uuid>`, a guest-writable
//! `data`) and XAPI's as xenopsd writes it on XCP-ng and XenServer (the
//! same `name` and `vm` keys, but the name is the VM's free-text
//! name-label; `data`, `attr`, `vm-data`, `control`, `feature`... created
//! guest-writable; the guest utilities already publishing under `data/`
//! and `attr/`; `/vm/<uuid>/domains/<domid>`).

use xsmon_proto::snmpline::Record;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{sample_run, write_run};
use xsmon_xenstore::{Access, Client, Perm, Store};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A running domain as xenopsd creates it (ocaml/xenopsd/xc/domain.ml).
fn xapi_domain(xs: &mut Client, domid: u32, uuid: &str, name_label: &str) {
    let home = format!("/local/domain/{domid}");
    let vm = format!("/vm/{uuid}");
    xs.mkdir(&home).unwrap();
    xs.set_perms(
        &home,
        &[Perm::new(0, Access::None), Perm::new(domid, Access::Read)],
    )
    .unwrap();
    xs.write(&format!("{vm}/uuid"), uuid.as_bytes()).unwrap();
    xs.write(&format!("{vm}/name"), name_label.as_bytes())
        .unwrap();
    xs.write(&format!("{vm}/domains/{domid}"), home.as_bytes())
        .unwrap();
    xs.write(&format!("{home}/vm"), vm.as_bytes()).unwrap();
    xs.write(&format!("{home}/name"), name_label.as_bytes())
        .unwrap();
    xs.write(&format!("{home}/domid"), domid.to_string().as_bytes())
        .unwrap();
    xs.write(
        &format!("{home}/unique-domain-id"),
        b"5e0b6f1c-0000-4000-8000-000000000001",
    )
    .unwrap();
    for dir in [
        "feature",
        "error",
        "drivers",
        "control",
        "attr",
        "xenserver/attr",
        "data",
        "messages",
        "vm-data",
        "hvmloader",
        "rrd",
    ] {
        let p = format!("{home}/{dir}");
        xs.mkdir(&p).unwrap();
        // rwperm: the domain owns it (may write), dom0 keeps access.
        xs.set_perms(&p, &[Perm::new(domid, Access::None)]).unwrap();
    }
    // What the XAPI guest utilities publish (xe-guest-utilities).
    xs.write(&format!("{home}/data/updated"), b"1").unwrap();
    xs.write(
        &format!("{home}/data/os_name"),
        b"Debian GNU/Linux 12 (bookworm)",
    )
    .unwrap();
    xs.write(&format!("{home}/attr/PVAddons/MajorVersion"), b"7")
        .unwrap();
    xs.write(&format!("{home}/attr/vif/0/ipv4/0"), b"10.0.0.12")
        .unwrap();
}

fn guests(d: &Dom0) -> Vec<(String, Option<String>, String, Status)> {
    d.served_records()
        .into_iter()
        .filter_map(|r| match r {
            Record::Guest {
                host,
                uuid,
                probe,
                status,
                ..
            } => Some((host, uuid, probe, status)),
            _ => None,
        })
        .collect()
}

#[test]
fn xapi_layout_with_free_text_names_and_guest_utilities() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    xapi_domain(
        &mut c,
        3,
        "7f3c2a10-8d4e-4b6a-9c1d-2e5f60718293",
        "Web server (prod) #1",
    );
    xapi_domain(
        &mut c,
        4,
        "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9",
        "DB | primary",
    );
    xapi_domain(
        &mut c,
        5,
        "11111111-2222-4333-8444-555555555555",
        "DB | primary",
    );
    // Guest 3's name has a '#': it is shown by its domid, and said so.
    for id in [3, 4, 5] {
        write_run(&mut c, id, &sample_run(t, 1, Status::Ok)).unwrap();
    }
    assert!(d.collect_at(Some(t + 60)).status.success());
    let gs = guests(&d);
    let find = |h: &str| {
        gs.iter()
            .find(|g| g.0 == h)
            .unwrap_or_else(|| panic!("{h} not in {gs:?}"))
    };
    // Duplicate free-text names are normal on XAPI: two hosts, no error.
    assert_eq!(find("DB | primary#4").2, "fresh");
    assert_eq!(find("DB | primary#4").3, Status::Ok);
    assert_eq!(
        find("DB | primary#5").1.as_deref(),
        Some("11111111-2222-4333-8444-555555555555")
    );
    let three = find("domid-3");
    assert_eq!(three.2, "invalid");
    // The guest utilities' own keys under data/ are left alone and do not
    // disturb the probe's results next to them.
    assert_eq!(
        c.read("/local/domain/4/data/os_name").unwrap(),
        b"Debian GNU/Linux 12 (bookworm)"
    );
    // A free-text name cannot break an SNMP or raw line: it is escaped.
    let (text, _) = d.served();
    assert!(
        text.lines()
            .any(|l| l.starts_with("G DB\\s|\\sprimary#4 4 ")),
        "{text}"
    );
}

#[test]
fn the_probe_may_write_data_xsmon_on_both_layouts() {
    // xl makes data/ guest-writable (libxl), XAPI too (xenopsd's rwperm);
    // the home with name and vm stays dom0's, so the guest can neither
    // rename itself nor point its vm link at another VM.
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    xapi_domain(&mut c, 7, "22222222-3333-4444-8555-666666666666", "app-7");
    let perms = c.get_perms("/local/domain/7/data").unwrap();
    assert_eq!(perms[0].domid, 7, "data is owned by the guest: {perms:?}");
    let home = c.get_perms("/local/domain/7").unwrap();
    assert_eq!(home[0].domid, 0, "the home (name, vm) is dom0's: {home:?}");
}
