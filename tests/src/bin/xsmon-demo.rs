//! The main job on one machine: real daemons, the pipeline, the report.
//! Run it through `scripts/demo`, which installs and builds first.

use anyhow::{Context, Result};
use xsmon_tests::{Snmpd, Xenstored};
use xsmon_xenstore::Store;

fn main() -> Result<()> {
    println!("== starting a real oxenstored (Xen 4.17) without a hypervisor");
    let xs = Xenstored::start().context("starting oxenstored")?;
    println!("   socket {}", xs.socket().display());
    let mut c = xs.client()?;
    for (k, v) in [("name", "guest-a"), ("data/hello", "world")] {
        let path = format!("/local/domain/7/{k}");
        c.write(&path, v.as_bytes())?;
        println!("   wrote {path} = {v}");
    }
    let v = c.read("/local/domain/7/data/hello")?;
    println!(
        "   read back /local/domain/7/data/hello = {}",
        String::from_utf8_lossy(&v)
    );

    println!("== starting a real snmpd on loopback");
    let snmpd = Snmpd::start("extend hello /bin/echo xsmon")?;
    println!("   listening on {}", snmpd.target());
    let out = snmpd.walk(".1.3.6.1.4.1.8072.1.3.2.3.1.2")?;
    print!("   nsExtendOutputFull: {out}");
    println!("== stopping the daemons");
    Ok(())
}
