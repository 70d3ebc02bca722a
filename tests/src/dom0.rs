//! One simulated dom0 for the collector's tests: Xen's real oxenstored,
//! the real host-collector and snmp-extend binaries, a real SQLite history
//! and a shared config directory with folders for `xen01` (this dom0) and
//! `xen02`.

use std::process::{Command, Output};

use rusqlite::Connection;

use crate::{bin, probe_root, Xenstored};

/// One simulated dom0: its xenstore, database, config and shared config dir.
pub struct Dom0 {
    pub xs: Xenstored,
    pub dir: tempfile::TempDir,
    pub root: tempfile::TempDir,
}

impl Dom0 {
    /// Starts oxenstored and writes the collector's config (`dom0_name =
    /// "xen01"`, no `xl`) with `extra_config` appended.
    pub fn new(extra_config: &str) -> Dom0 {
        let xs = Xenstored::start().expect("test dom0");
        let dir = tempfile::tempdir().expect("test dom0");
        let root = probe_root("linux-host", "a", &[]).expect("test dom0");
        std::fs::create_dir_all(dir.path().join("auto/xen01")).expect("test dom0");
        std::fs::create_dir_all(dir.path().join("auto/xen02")).expect("test dom0");
        std::fs::write(
            dir.path().join("collector.toml"),
            format!(
                "db = \"{}\"\ndom0_name = \"xen01\"\nconfig_dirs = [\"{}\"]\nxl = \"/nonexistent/xl\"\n{extra_config}\n",
                dir.path().join("history.db").display(),
                dir.path().join("auto").display()
            ),
        )
        .expect("test dom0");
        Dom0 { xs, dir, root }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("host-collector"));
        c.arg("--config")
            .arg(self.dir.path().join("collector.toml"))
            .args(args)
            .env_remove("XENSTORED_PATH");
        c
    }

    pub fn collect_at(&self, now: Option<i64>) -> Output {
        let mut c = self.cmd(&[
            "collect",
            "--xenstore",
            self.xs.socket().to_str().expect("test dom0"),
            "--root",
            self.root.path().to_str().expect("test dom0"),
        ]);
        if let Some(t) = now {
            c.args(["--now", &t.to_string()]);
        }
        c.output().expect("test dom0")
    }

    pub fn collect(&self) -> Output {
        let out = self.collect_at(None);
        assert!(
            out.status.success(),
            "collect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn db(&self) -> Connection {
        Connection::open(self.dir.path().join("history.db")).expect("test dom0")
    }

    pub fn cfg_file(&self, dom0: &str, guest: &str) {
        std::fs::write(
            self.dir
                .path()
                .join("auto")
                .join(dom0)
                .join(format!("{guest}.cfg")),
            "name = \"x\"\n",
        )
        .expect("test dom0");
    }

    /// (name, probe, status, message) of the latest cycle.
    pub fn latest(&self) -> Vec<(String, String, String, String)> {
        let db = self.db();
        let mut st = db
            .prepare("SELECT name, probe, status, message FROM latest ORDER BY name")
            .expect("test dom0");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("test dom0")
            .map(|r| r.expect("test dom0"))
            .collect()
    }

    pub fn host(&self, name: &str) -> (String, String, String) {
        let l = self.latest();
        let h = l
            .iter()
            .find(|h| h.0 == name)
            .unwrap_or_else(|| panic!("{name} not in {l:?}"));
        (h.1.clone(), h.2.clone(), h.3.clone())
    }

    /// snmp-extend basic-monitoring's output on this dom0's database, and
    /// whether it exited 0.
    pub fn served(&self) -> (String, bool) {
        let out = Command::new(bin("snmp-extend"))
            .args(["basic-monitoring", "--db"])
            .arg(self.dir.path().join("history.db"))
            .output()
            .expect("running snmp-extend");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.success(),
        )
    }

    /// What snmp-extend basic-monitoring serves, parsed; panics (with the
    /// output) unless it exited 0 with a well-formed output.
    pub fn served_records(&self) -> Vec<xsmon_proto::snmpline::Record> {
        let (text, ok) = self.served();
        assert!(ok, "snmp-extend failed:\n{text}");
        xsmon_proto::snmpline::parse_all(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }
}
