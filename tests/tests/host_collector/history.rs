//! The history: roll-ups, the `status` and `history` tables, and charts.

use crate::now;
use std::path::Path;
use xsmon_proto::Status;
use xsmon_tests::dom0::Dom0;
use xsmon_tests::{add_domain, sample_run, write_run};

#[test]
fn old_figures_roll_up_and_history_shows_them() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    // Ten days of cycles, one every hour (enough to cross the 7-day raw
    // retention), each with a fresh run.
    let start = (now() / 3600) * 3600 - 10 * 86400;
    for h in 0..240 {
        let t = start + h * 3600;
        write_run(&mut c, 1, &sample_run(t, 1, Status::Ok)).unwrap();
        let out = d.collect_at(Some(t + 60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = d.db();
    let last = start + 239 * 3600 + 60;
    let oldest_cycle: i64 = db
        .query_row("SELECT min(time) FROM cycle", [], |r| r.get(0))
        .unwrap();
    assert!(
        last - oldest_cycle <= 7 * 86400 + 3600,
        "raw rows older than 7 days remain"
    );
    let hourly: i64 = db
        .query_row(
            "SELECT count(DISTINCT start) FROM rollup WHERE period = 3600",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((60..=80).contains(&hourly), "{hourly} hourly rollups");
    let (n, vavg): (i64, i64) = db
        .query_row(
            "SELECT r.n, r.vavg FROM rollup r JOIN metric m ON m.id = r.metric_id JOIN host h ON h.id = r.host_id
              WHERE h.name = 'web01' AND m.kind = 'disk' AND m.name = 'used_pct' LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((n, vavg), (1, 40_000));

    let out = d
        .cmd(&[
            "history", "web01", "--since", "12d", "--check", "disk", "--format", "csv",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with("time,resolution,check,target,metric,value,min,max\n"));
    assert!(csv.contains(",hourly,disk,/,used_pct,40,40,40"), "{csv}");
    assert!(csv.contains(",raw,disk,/,used_pct,40,40,40"), "{csv}");
    assert!(!csv.contains(",cpu,"), "--check disk shows disks only");
    let out = d
        .cmd(&["history", "web01", "--since", "2h", "--format", "json"])
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["metric"] == "steal_pct"));
    let out = d.cmd(&["history", "nobody"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

#[test]
fn status_and_history_columns_line_up_for_long_names() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    let t = now();
    let long = "a-guest-with-a-very-long-name-that-fills-sixty-four-characters-x";
    assert_eq!(long.len(), 64);
    add_domain(&mut c, 1, long).unwrap();
    add_domain(&mut c, 2, "web").unwrap();
    for id in [1, 2] {
        write_run(&mut c, id, &sample_run(t, 2, Status::Error)).unwrap();
    }
    assert!(d.collect_at(Some(t + 60)).status.success());
    let out = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The STATUS column starts at the same place on the header and on every
    // host line.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("HOST")
                || l.starts_with(long)
                || l.starts_with("web ")
                || l.starts_with("Domain-0")
        })
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    let col = |l: &str, word: &str| {
        l.find(word)
            .unwrap_or_else(|| panic!("{word} not in {l:?}"))
    };
    let at = col(lines[0], "STATUS");
    for l in &lines[1..] {
        let probe_end = l
            .find(" fresh ")
            .or_else(|| l.find(" host "))
            .unwrap_or_else(|| panic!("{l:?}"));
        let status_at = l[probe_end + 1..]
            .find(' ')
            .map(|i| probe_end + 1 + i)
            .unwrap();
        let status_start = status_at + l[status_at..].find(|c: char| c != ' ').unwrap();
        assert_eq!(status_start, at, "{text}");
    }
    // history: the header's columns are the rows' columns.
    let out = d
        .cmd(&["history", long, "--check", "disk"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.lines();
    let head = it.next().unwrap();
    let value_end = head.find("VALUE").unwrap() + "VALUE".len();
    let rows: Vec<&str> = it.collect();
    assert!(rows.len() >= 2, "{text}");
    for row in rows {
        // VALUE, MIN and MAX are right-aligned, 12 wide, last: each row's
        // VALUE ends where the header's does.
        assert_eq!(row.len() - (1 + 12 + 1 + 12), value_end, "{text}");
    }
}

/// A run whose figures move with time `t` (so that a chart has something
/// to show), graded by thresholds the "guest" reports, as guest-probe
/// does: load and memory swing daily, the root filesystem fills up past
/// its warning threshold, the gateway's rtt stays far below its own.
fn varying_run(t: i64, seq: u64, progress: f64) -> xsmon_proto::layout::Run {
    use xsmon_proto::CheckResult;
    let day = (t % 86400) as f64 / 86400.0 * std::f64::consts::TAU;
    let mut checks = Vec::new();
    let graded = |c: &mut CheckResult, name: &str, v: f64, w: f64, e: f64| {
        c.value(name, v).limit(name, Some(w), Some(e));
        let s = if v >= e {
            Status::Error
        } else if v >= w {
            Status::Warning
        } else {
            Status::Ok
        };
        c.status = c.status.worst(s);
    };
    let mut cpu = CheckResult::new("cpu", "cpu", "");
    graded(&mut cpu, "load_per_cpu", 0.6 + 0.5 * day.sin(), 2.0, 4.0);
    // iowait jitters from one run to the next, so that the hourly rollups
    // of the oldest days have a min and a max apart (a visible band).
    let jitter = if (t / 1800) % 2 == 0 { 2.0 } else { -2.0 };
    graded(
        &mut cpu,
        "iowait_pct",
        6.0 + 3.0 * (3.0 * day).sin() + jitter,
        20.0,
        40.0,
    );
    graded(&mut cpu, "steal_pct", 1.0, 10.0, 25.0);
    cpu.message = "cpu".into();
    checks.push(cpu);
    let mut mem = CheckResult::new("mem", "mem", "");
    graded(&mut mem, "used_pct", 55.0 + 20.0 * day.cos(), 90.0, 97.0);
    mem.message = "mem".into();
    checks.push(mem);
    let mut disk = CheckResult::new("disk0", "disk", "/");
    let filled = 60.0 + 30.0 * progress;
    graded(&mut disk, "used_pct", filled, 85.0, 95.0);
    disk.message = "disk".into();
    checks.push(disk);
    let mut net = CheckResult::new("net0", "net", "192.0.2.1");
    graded(&mut net, "rtt_ms", 0.8 + 0.3 * day.sin(), 100.0, 500.0);
    graded(&mut net, "loss_pct", 0.0, 20.0, 60.0);
    net.message = "net".into();
    checks.push(net);
    xsmon_proto::layout::Run {
        probe: "guest-probe 0.3.0".into(),
        time: t,
        seq,
        checks,
        resumed: None,
        boot: None,
    }
}

#[test]
fn history_is_drawn_as_charts_with_thresholds_bands_and_gaps() {
    let d = Dom0::new("");
    let mut c = d.xs.client().unwrap();
    add_domain(&mut c, 1, "web01").unwrap();
    // 8.5 days of cycles every 30 minutes (past the 7-day raw retention,
    // so the oldest days are hourly rollups of two runs each, with a min
    // and a max), with the probe silent for 6 hours twice: once in the
    // rolled-up days, once in the raw ones.
    let cycles = 17 * 24;
    let start = (now() / 1800) * 1800 - cycles * 1800;
    let silent = |t: i64| {
        let h = (t - start) / 3600;
        (24..30).contains(&h) || (180..186).contains(&h)
    };
    let mut seq = 0;
    for i in 0..cycles {
        let t = start + i * 1800;
        if !silent(t) {
            seq += 1;
            let progress = i as f64 / cycles as f64;
            write_run(&mut c, 1, &varying_run(t, seq, progress)).unwrap();
        }
        let out = d.collect_at(Some(t + 60));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let plot = |file: &str| {
        let path = tmp.path().join(file);
        let out = d
            .cmd(&[
                "history",
                "web01",
                "--since",
                "9d",
                "--plot",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (out, path)
    };

    // PNG: the size says the panel count; the pixels say what is drawn.
    let (out, png_path) = plot("web01.png");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Seven figures; loss_pct is 0 throughout: named in the header, not
    // drawn.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("6 panels"), "{said}");
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1100, 56 + 18 + 6 * 190));
    let step = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        buf[..info.buffer_size()]
            .chunks(step)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    assert!(count([31, 94, 168]) > 5000, "figure lines");
    assert!(count([230, 140, 0]) > 1000, "warning thresholds");
    assert!(count([200, 30, 30]) > 1000, "error thresholds");
    assert!(count([228, 228, 228]) > 10000, "grey gaps");
    // The rollup band: the figure's blue, light (18% over white).
    let band = buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| {
            (205..=222).contains(&p[0])
                && (218..=233).contains(&p[1])
                && (232..=245).contains(&p[2])
        })
        .count();
    assert!(band > 300, "rollup band: {band} pixels");
    // Copy it where a person can look at it (the demo draws one too).
    if let Ok(dir) = std::env::var("XSMON_KEEP_CHART") {
        std::fs::copy(&png_path, Path::new(&dir).join("web01.png")).unwrap();
    }

    // SVG: the captions, the thresholds the guest reported, a band for
    // the rollups, and rtt's thresholds named rather than drawn (they would
    // flatten a line near 1 ms).
    let (out, svg_path) = plot("web01.svg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    for text in [
        "web01:",
        "cpu: load_per_cpu",
        "mem: used_pct   warning 90   error 97",
        "disk /: used_pct   warning 85   error 95",
        "net 192.0.2.1: rtt_ms   warning 100 (off scale)   error 500 (off scale)",
        "0 throughout: net 192.0.2.1: loss_pct",
        // Asked for 9 days, it has 8.5: the chart starts with its history.
        "(its history starts there)",
        "<polygon",
    ] {
        assert!(svg.contains(text), "no {text:?} in the SVG");
    }

    // What cannot be drawn says why.
    let (out, _) = plot("web01.gif");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg or .png"));
}
