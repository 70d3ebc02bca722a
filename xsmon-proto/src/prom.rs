//! Prometheus text exposition (version 0.0.4), for `poller prometheus` and
//! host-collector's textfile: metric families with HELP and TYPE, label
//! values escaped (`\\`, `\"`, `\n`) so guest text cannot break a line.

use std::fmt::Write as _;

/// One metric family: all its samples are written together.
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    pub fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
}

/// A status as a number, as Nagios counts: 0 ok, 1 warning, 2 error, 3 unknown.
pub fn status_code(s: crate::Status) -> f64 {
    match s {
        crate::Status::Ok => 0.0,
        crate::Status::Warning => 1.0,
        crate::Status::Error => 2.0,
        crate::Status::Unknown => 3.0,
    }
}

pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Renders families (empty ones are left out).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} gauge", f.name);
        for (labels, v) in &f.samples {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            if l.is_empty() {
                let _ = writeln!(out, "{} {}", f.name, number(*v));
            } else {
                let _ = writeln!(out, "{}{{{}}} {}", f.name, l.join(","), number(*v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_and_escaping() {
        let mut f = Family::gauge("xsmon_up", "Whether it answered.");
        f.add(vec![("dom0", "xen\"01\n".into())], 1.0);
        let text = render(&[f, Family::gauge("xsmon_empty", "Nothing.")]);
        assert_eq!(text, "# HELP xsmon_up Whether it answered.\n# TYPE xsmon_up gauge\nxsmon_up{dom0=\"xen\\\"01\\n\"} 1\n");
    }
}
