//! snmp-extend: what dom0's snmpd runs for its `extend` lines. It prints
//! the collector's latest state (or the cluster's dom0s) in xsmon's SNMP
//! line format (`xsmon_proto::snmpline`), and never touches xenstore:
//! snmpd waits for it, so it answers from SQLite in milliseconds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xsmon_proto::snmpline::{print_all, Kind, Record, VERSION};
use xsmon_store as db;

/// Serve xsmon's state to net-snmp's snmpd through `extend`.
///
/// In /etc/snmp/snmpd.conf:
///
///   extend basicXenstoreMonitoring /usr/local/bin/snmp-extend basic-monitoring
///   extend listXenCluster /usr/local/bin/snmp-extend list-cluster
///   extend xsmonFigures /usr/local/bin/snmp-extend figures
///
/// The output is versioned, one escaped record per line, and ends with an
/// END line (the SNMP line format, documented in xsmon-proto/src/snmpline.rs). Exit
/// status (snmpd's nsExtendResult): 0 when the state was served, 1 when it
/// could not be (the output then says why in an E line).
#[derive(Parser, Debug)]
#[command(version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the collector's database is, and how far to trust it.
#[derive(clap::Args, Debug)]
struct Database {
    /// The collector's history database.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/xsmon/history.db")]
    db: PathBuf,
    /// The collector is failing when its last cycle is older than this
    /// (an E line; figures are then withheld, not served as current).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    max_age: i64,
    /// How long to wait for a busy database (keep well under snmpd's
    /// extend timeout).
    #[arg(long, value_name = "MS", default_value_t = 200)]
    busy_ms: u64,
}

impl Database {
    fn busy(&self) -> Duration {
        Duration::from_millis(self.busy_ms)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The latest state of every guest and of dom0 (extend basicXenstoreMonitoring).
    BasicMonitoring {
        #[command(flatten)]
        db: Database,
    },
    /// Every host's latest figures with their thresholds (extend
    /// xsmonFigures): what the poller turns into performance data and
    /// metrics. Only hosts whose probe run is current have figures.
    Figures {
        #[command(flatten)]
        db: Database,
    },
    /// The dom0s of the shared config directory with their guest counts
    /// (extend listXenCluster).
    ListCluster {
        /// Config directory, one folder per dom0 (may be repeated).
        #[arg(long = "dir", value_name = "DIR", default_value = "/data/config/auto")]
        dirs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    xsmon_cli::maybe_generate(<Cli as clap::CommandFactory>::command);
    let cli = Cli::parse();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (records, ok) = match cli.command {
        Command::BasicMonitoring { db } => basic_monitoring(&db.db, db.max_age, db.busy(), now),
        Command::Figures { db } => figures(&db.db, db.max_age, db.busy(), now),
        Command::ListCluster { dirs } => list_cluster(&dirs, now),
    };
    print!("{}", print_all(&records));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn basic_monitoring(
    path: &std::path::Path,
    max_age: i64,
    busy: Duration,
    now: i64,
) -> (Vec<Record>, bool) {
    let latest = match db::open_ro(path, busy).and_then(|conn| db::latest(&conn)) {
        Ok(Some(l)) => l,
        Ok(None) => return no_cycle(Kind::State, path, now),
        Err(e) => return failure(Kind::State, now, "database", format!("{e:#}")),
    };
    let mut out = vec![header(Kind::State, &latest.dom0, Some(latest.time), now)];
    if now - latest.time > max_age {
        out.push(Record::Error {
            scope: "collector".into(),
            message: format!("last collection cycle is {} s old (more than {max_age} s): is host-collector running from cron?", now - latest.time),
        });
    }
    if let Some(e) = &latest.error {
        out.push(Record::Error {
            scope: "collector".into(),
            message: e.clone(),
        });
    }
    for p in &latest.problems {
        out.push(Record::Error {
            scope: "store".into(),
            message: p.clone(),
        });
    }
    for h in &latest.hosts {
        out.push(Record::Guest {
            host: h.name.clone(),
            domid: h.domid,
            uuid: h.uuid.clone(),
            probe: h.probe.clone(),
            status: h.status,
            probe_time: h.probe_time,
            seen_time: h.seen_time,
            domain: h.domain_state.clone(),
            message: h.message.clone(),
        });
        for f in &h.findings {
            out.push(Record::Finding {
                host: h.name.clone(),
                check_id: f.check_id.clone(),
                kind: f.kind.clone(),
                status: f.status,
                target: f.target.clone(),
                message: f.message.clone(),
            });
        }
    }
    (out, true)
}

fn figures(path: &std::path::Path, max_age: i64, busy: Duration, now: i64) -> (Vec<Record>, bool) {
    let latest = match db::open_ro(path, busy).and_then(|conn| db::latest_figures(&conn)) {
        Ok(Some(l)) => l,
        Ok(None) => return no_cycle(Kind::Figures, path, now),
        Err(e) => return failure(Kind::Figures, now, "database", format!("{e:#}")),
    };
    let mut out = vec![header(Kind::Figures, &latest.dom0, Some(latest.time), now)];
    // Old figures drawn as current would hide a stopped collector.
    if now - latest.time > max_age {
        out.push(Record::Error {
            scope: "collector".into(),
            message: format!(
                "last collection cycle is {} s old (more than {max_age} s): figures withheld",
                now - latest.time
            ),
        });
        return (out, false);
    }
    for (host, checks) in latest.hosts {
        match checks {
            Ok(checks) => out.extend(checks.into_iter().map(|figures| Record::Figures {
                host: host.clone(),
                figures,
            })),
            Err(e) => out.push(Record::Error {
                scope: "store".into(),
                message: format!("{host}: {e}"),
            }),
        }
    }
    (out, true)
}

fn header(kind: Kind, dom0: &str, cycle_time: Option<i64>, now: i64) -> Record {
    Record::Header {
        version: VERSION,
        kind,
        dom0: dom0.to_string(),
        cycle_time,
        served_time: now,
    }
}

/// An output that says only why it could not be served.
fn failure(kind: Kind, now: i64, scope: &str, message: String) -> (Vec<Record>, bool) {
    let error = Record::Error {
        scope: scope.into(),
        message,
    };
    (vec![header(kind, "", None, now), error], false)
}

fn no_cycle(kind: Kind, path: &std::path::Path, now: i64) -> (Vec<Record>, bool) {
    let why = format!("no collection cycle recorded yet in {}", path.display());
    failure(kind, now, "collector", why)
}

fn list_cluster(dirs: &[PathBuf], now: i64) -> (Vec<Record>, bool) {
    let cluster = xsmon_proto::cluster::scan(dirs);
    let mut out = vec![header(Kind::Cluster, "", None, now)];
    for (dom0, guests) in &cluster.dom0s {
        out.push(Record::Dom0 {
            name: dom0.clone(),
            guests: guests.len() as u32,
        });
    }
    let ok = cluster.problems.is_empty();
    for p in cluster.problems {
        out.push(Record::Error {
            scope: "config".into(),
            message: p,
        });
    }
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_missing_database_is_an_error_record() {
        let (recs, ok) = basic_monitoring(
            std::path::Path::new("/nonexistent/x.db"),
            900,
            Duration::from_millis(10),
            100,
        );
        assert!(!ok);
        assert!(
            matches!(&recs[1], Record::Error { scope, message } if scope == "database" && message.contains("/nonexistent/x.db"))
        );
    }
}
