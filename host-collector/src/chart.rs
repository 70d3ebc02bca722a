//! `history --plot`: a host's figures over a span, drawn as SVG or PNG.
//!
//! One panel per figure of each check (`disk /var: used_pct`), in the
//! order the probe reports checks. Each panel shows the figure as a line;
//! where history was rolled up (hourly, daily), the line is the average and
//! a shaded band spans the rollup's min and max; the guest's own warning
//! and error thresholds (its latest run's) are horizontal lines; a stretch
//! where no figure was stored (the probe silent, the guest down) is a grey
//! gap, never a line drawn across it. dom0's counters (`xen`) are drawn as
//! rates per second.
//!
//! The span starts where the host's history starts when that is later
//! than asked (the time before a VM existed is not a silence), figures
//! that are 0 throughout are named in one line of the header instead of
//! taking a panel each, and the time axis has 4 to 12 labels whatever
//! the span, to the second when it is minutes long.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use thiserror::Error;
use xsmon_proto::snmpline::CheckFigures;
use xsmon_store::HistoryRow;

/// DejaVu Sans, embedded: a static binary on a dom0 has no fonts to find.
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 190;
const HEADER_HEIGHT: u32 = 56;
/// Height of each line of the header naming the figures at 0 throughout.
const FLAT_LINE_HEIGHT: u32 = 18;
/// Characters in one such line.
const FLAT_LINE_CHARS: usize = 150;
/// Lines of them at most (the rest are counted).
const FLAT_LINES: usize = 3;
const LINE: RGBColor = RGBColor(31, 94, 168);
const WARNING: RGBColor = RGBColor(230, 140, 0);
const ERROR: RGBColor = RGBColor(200, 30, 30);
const GAP: RGBColor = RGBColor(228, 228, 228);

#[derive(Debug, Error)]
pub enum ChartError {
    #[error("{0}: the chart file must end in .svg or .png")]
    Format(String),
    #[error("no figures to draw for {0} in that span")]
    Empty(String),
    #[error("drawing {path}: {why}")]
    Draw { path: String, why: String },
}

/// What to draw.
#[derive(Clone, Copy)]
pub struct Chart<'a> {
    /// Who, as the reader knows it (`web01`, `Domain-0`).
    pub host: &'a str,
    /// The span, Unix seconds.
    pub from: i64,
    pub to: i64,
    /// The history rows (raw, hourly, daily), any order.
    pub rows: &'a [HistoryRow],
    /// The host's latest figures, for their thresholds.
    pub latest: &'a [CheckFigures],
}

/// One figure's points, oldest first.
struct Series {
    kind: String,
    target: String,
    metric: String,
    points: Vec<Point>,
    /// Seconds between two raw points (for finding gaps).
    raw_step: i64,
    warning: Option<f64>,
    error: Option<f64>,
}

#[derive(Clone, Copy)]
struct Point {
    t: i64,
    v: f64,
    min: f64,
    max: f64,
    /// Seconds this point stands for: the probe's interval, 3600, 86400.
    span: i64,
}

/// Draws `chart` into `path` (`.svg` or `.png`); returns the number of
/// panels drawn.
pub fn draw(chart: &Chart<'_>, path: &Path) -> Result<usize, ChartError> {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let asked_from = chart.from;
    let chart = &Chart {
        from: history_start(chart),
        ..*chart
    };
    let (series, flat) = fold_flat(series_of(chart));
    if series.is_empty() {
        return Err(ChartError::Empty(chart.host.to_string()));
    }
    register_font();
    let header = Header {
        asked_from,
        flat: flat_lines(&flat),
    };
    let height = header.height() + PANEL_HEIGHT * series.len() as u32;
    let fail = |why: String| ChartError::Draw {
        path: name.clone(),
        why,
    };
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
            paint(&root, chart, &header, &series).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        Some("png") => {
            let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
            paint(&root, chart, &header, &series).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        _ => return Err(ChartError::Format(name)),
    }
    Ok(series.len())
}

/// Where the chart starts: where asked, or where the host's history
/// starts when that is later.
fn history_start(chart: &Chart<'_>) -> i64 {
    match chart.rows.iter().map(|r| r.time).min() {
        Some(first) if first > chart.from && first < chart.to => first,
        _ => chart.from,
    }
}

/// Separates the series whose every figure is 0 (nothing to see in a
/// panel) from the others, unless all are.
fn fold_flat(series: Vec<Series>) -> (Vec<Series>, Vec<Series>) {
    let (flat, moving): (Vec<Series>, Vec<Series>) = series.into_iter().partition(|s| {
        s.points
            .iter()
            .all(|p| p.v == 0.0 && p.min == 0.0 && p.max == 0.0)
    });
    if moving.is_empty() {
        (flat, Vec::new())
    } else {
        (moving, flat)
    }
}

/// The header's lines naming the figures at 0 throughout.
fn flat_lines(flat: &[Series]) -> Vec<String> {
    if flat.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = flat.iter().map(Series::name).collect();
    let mut lines = vec![String::from("0 throughout: ")];
    for (i, name) in names.iter().enumerate() {
        let last = lines.last_mut().expect("one line at least");
        let sep = if last.ends_with(": ") { "" } else { ", " };
        if last.len() + sep.len() + name.len() <= FLAT_LINE_CHARS {
            last.push_str(sep);
            last.push_str(name);
        } else if lines.len() < FLAT_LINES {
            lines.last_mut().expect("one line").push(',');
            lines.push(name.clone());
        } else {
            lines
                .last_mut()
                .expect("one line")
                .push_str(&format!(" and {} more", names.len() - i));
            break;
        }
    }
    lines
}

/// What the header says beyond the host and the span.
struct Header {
    asked_from: i64,
    flat: Vec<String>,
}

impl Header {
    fn height(&self) -> u32 {
        HEADER_HEIGHT + FLAT_LINE_HEIGHT * self.flat.len() as u32
    }
}

impl Series {
    /// `swap: pages_per_s`, `disk /var: used_pct`.
    fn name(&self) -> String {
        if self.target.is_empty() {
            format!("{}: {}", self.kind, self.metric)
        } else {
            format!("{} {}: {}", self.kind, self.target, self.metric)
        }
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is part of the binary; it cannot fail to parse.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Groups the rows into one series per figure, in check order, with the
/// thresholds of the host's latest run.
fn series_of(chart: &Chart<'_>) -> Vec<Series> {
    let mut by_figure: BTreeMap<(u8, String, String, String), Vec<&HistoryRow>> = BTreeMap::new();
    for r in chart.rows {
        by_figure
            .entry((
                kind_rank(&r.kind),
                r.kind.clone(),
                r.target.clone(),
                r.metric.clone(),
            ))
            .or_default()
            .push(r);
    }
    by_figure
        .into_iter()
        .filter_map(|((_, kind, target, metric), mut rows)| {
            rows.sort_by_key(|r| r.time);
            let raw_step = typical_raw_step(&rows);
            let mut points: Vec<Point> = rows
                .iter()
                .map(|r| Point {
                    t: r.time,
                    v: r.value,
                    min: r.min,
                    max: r.max,
                    span: match r.resolution {
                        "hourly" => 3600,
                        "daily" => 86400,
                        _ => raw_step,
                    },
                })
                .collect();
            if xsmon_proto::check::is_counter(&kind, &metric) {
                points = rates(&points);
            }
            if points.is_empty() {
                return None;
            }
            let limit = chart
                .latest
                .iter()
                .filter(|c| c.kind == kind && c.target == target)
                .find_map(|c| c.limit_of(&metric));
            Some(Series {
                warning: limit.and_then(|l| l.warning),
                error: limit.and_then(|l| l.error),
                kind,
                target,
                metric,
                points,
                raw_step,
            })
        })
        .collect()
}

fn kind_rank(kind: &str) -> u8 {
    match kind {
        "cpu" => 0,
        "swap" => 1,
        "mem" => 2,
        "disk" => 3,
        "net" => 4,
        "xen" => 6,
        _ => 5,
    }
}

/// The usual distance between two raw rows (the collector's interval),
/// 300 s when there are too few to tell.
fn typical_raw_step(rows: &[&HistoryRow]) -> i64 {
    let mut steps: Vec<i64> = rows
        .windows(2)
        .filter(|w| w[0].resolution == "raw" && w[1].resolution == "raw")
        .map(|w| w[1].time - w[0].time)
        .filter(|s| *s > 0)
        .collect();
    steps.sort_unstable();
    steps.get(steps.len() / 2).copied().unwrap_or(300)
}

/// A counter's points as rates per second (a reset or wrap gives no rate).
fn rates(points: &[Point]) -> Vec<Point> {
    points
        .windows(2)
        .filter_map(|w| {
            let dt = (w[1].t - w[0].t) as f64;
            let dv = w[1].v - w[0].v;
            (dt > 0.0 && dv >= 0.0).then(|| {
                let r = dv / dt;
                Point {
                    t: w[1].t,
                    v: r,
                    min: r,
                    max: r,
                    span: w[1].span,
                }
            })
        })
        .collect()
}

/// Splits points into runs without a silence: two neighbours further apart
/// than twice the longer of their spans (plus a minute of jitter) have a
/// gap between them.
fn segments(points: &[Point]) -> Vec<&[Point]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        let (a, b) = (points[i - 1], points[i]);
        if b.t - a.t > 2 * a.span.max(b.span) + 60 {
            out.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        out.push(&points[start..]);
    }
    out
}

fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'_>,
    head: &Header,
    series: &[Series],
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (header, body) = root.split_vertically(head.height());
    let starts = if chart.from > head.asked_from {
        " (its history starts there)"
    } else {
        ""
    };
    header
        .draw_text(
            &format!(
                "{}: {} to {}{starts}",
                chart.host,
                clock(chart.from, "%Y-%m-%d %H:%M:%S"),
                clock(chart.to, "%Y-%m-%d %H:%M:%S %Z")
            ),
            &("sans-serif", 22).into_font().color(&BLACK),
            (14, 8),
        )
        .map_err(e)?;
    for (i, line) in head.flat.iter().enumerate() {
        header
            .draw_text(
                line,
                &("sans-serif", 14).into_font().color(&BLACK),
                (
                    14,
                    HEADER_HEIGHT as i32 + (i as u32 * FLAT_LINE_HEIGHT) as i32 - 4,
                ),
            )
            .map_err(e)?;
    }
    header
        .draw_text(
            "line: value (average where rolled up)   band: rollup min-max   grey: no figures (probe silent)   orange/red: warning/error thresholds",
            &("sans-serif", 13).into_font().color(&RGBColor(90, 90, 90)),
            (14, 34),
        )
        .map_err(e)?;
    for (area, s) in body.split_evenly((series.len(), 1)).iter().zip(series) {
        panel(area, chart, s)?;
    }
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart<'_>,
    s: &Series,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let percent = s.metric.ends_with("_pct");
    let data_max = s
        .points
        .iter()
        .map(|p| p.max.max(p.v))
        .fold(0.0f64, f64::max);
    // A threshold far above the figures would flatten them: it is named in
    // the caption instead of drawn. A percentage's thresholds are always
    // drawn (they are at most 100).
    let on_scale = |t: Option<f64>| t.filter(|t| percent || *t <= 3.0 * data_max.max(1e-9));
    let (warning, error) = (on_scale(s.warning), on_scale(s.error));
    let top = [Some(data_max), warning, error]
        .into_iter()
        .flatten()
        .fold(0.0f64, f64::max);
    let y_max = match (percent, top > 0.0) {
        (true, true) => (top * 1.15).min(100.0).max(data_max),
        (true, false) => 100.0,
        (false, true) => top * 1.15,
        (false, false) => 1.0,
    };
    let mut caption = s.name();
    if xsmon_proto::check::is_counter(&s.kind, &s.metric) {
        caption.push_str(" per s");
    }
    for (word, all, drawn) in [("warning", s.warning, warning), ("error", s.error, error)] {
        match (all, drawn) {
            (Some(t), Some(_)) => caption.push_str(&format!("   {word} {}", number(t))),
            (Some(t), None) => caption.push_str(&format!("   {word} {} (off scale)", number(t))),
            _ => {}
        }
    }
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin_left(10)
        .margin_right(24)
        .margin_bottom(4)
        .x_label_area_size(24)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (chart.from..chart.to).with_key_points(time_ticks(chart.from, chart.to)),
            0.0..y_max,
        )
        .map_err(e)?;
    let span = chart.to - chart.from;
    let x_format = if span > 3 * 86400 {
        "%d %b"
    } else if span > 86400 {
        "%d %b %H:%M"
    } else if span > 1800 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    c.configure_mesh()
        .y_labels(5)
        .x_label_formatter(&|t| clock(*t, x_format))
        .y_label_formatter(&|v| {
            if percent {
                format!("{v:.0}%")
            } else {
                number(*v)
            }
        })
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(e)?;
    // Silences: before the first figure (when the span starts earlier),
    // between runs, and after the last one.
    let segs = segments(&s.points);
    let mut silences = Vec::new();
    let first = s.points[0];
    let last = s.points[s.points.len() - 1];
    if first.t - chart.from > 2 * first.span + 60 {
        silences.push((chart.from, first.t));
    }
    for w in segs.windows(2) {
        silences.push((w[0][w[0].len() - 1].t, w[1][0].t));
    }
    if chart.to - last.t > 2 * s.raw_step.max(last.span) + 60 {
        silences.push((last.t, chart.to));
    }
    c.draw_series(
        silences
            .iter()
            .map(|&(a, b)| Rectangle::new([(a, 0.0), (b, y_max)], GAP.filled())),
    )
    .map_err(e)?;
    for seg in &segs {
        let rolled: Vec<&Point> = seg.iter().filter(|p| p.max > p.min).collect();
        if rolled.len() > 1 {
            let band: Vec<(i64, f64)> = rolled
                .iter()
                .map(|p| (p.t, p.max))
                .chain(rolled.iter().rev().map(|p| (p.t, p.min)))
                .collect();
            c.draw_series(std::iter::once(Polygon::new(band, LINE.mix(0.18).filled())))
                .map_err(e)?;
        }
        if seg.len() == 1 {
            c.draw_series(std::iter::once(Circle::new(
                (seg[0].t, seg[0].v),
                3,
                LINE.filled(),
            )))
            .map_err(e)?;
        } else {
            c.draw_series(LineSeries::new(
                seg.iter().map(|p| (p.t, p.v)),
                LINE.stroke_width(2),
            ))
            .map_err(e)?;
        }
    }
    for (t, colour) in [(warning, WARNING), (error, ERROR)] {
        if let Some(t) = t {
            c.draw_series(DashedLineSeries::new(
                [(chart.from, t), (chart.to, t)],
                8,
                5,
                colour.stroke_width(2),
            ))
            .map_err(e)?;
        }
    }
    Ok(())
}

/// Time axis labels on round local times (midnights, whole hours, whole
/// minutes), at most a dozen of them and, for any span of a minute or
/// more, at least four.
fn time_ticks(from: i64, to: i64) -> Vec<i64> {
    const STEPS: [i64; 20] = [
        5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
        172_800, 604_800, 1_209_600, 2_592_000,
    ];
    let span = (to - from).max(1);
    let step = STEPS
        .into_iter()
        .find(|s| (span + s - 1) / s <= 12)
        .unwrap_or(span / 12 + 1);
    let offset = chrono::DateTime::from_timestamp(from, 0)
        .map(|d| {
            i64::from(
                chrono::Offset::fix(d.with_timezone(&chrono::Local).offset()).local_minus_utc(),
            )
        })
        .unwrap_or(0);
    let first = (from + offset).div_euclid(step) * step + step - offset;
    (0..)
        .map(|i| first + i * step)
        .take_while(|t| *t <= to)
        .collect()
}

/// A Unix time in the local time zone, for a label.
fn clock(t: i64, format: &str) -> String {
    crate::words::local_time(t, format).unwrap_or_default()
}

/// A figure for a label: few digits, no float noise.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, span: i64) -> Point {
        Point {
            t,
            v: 1.0,
            min: 1.0,
            max: 1.0,
            span,
        }
    }

    #[test]
    fn a_silence_splits_the_line() {
        let pts = [
            p(0, 300),
            p(300, 300),
            p(600, 300),
            p(4200, 300),
            p(4500, 300),
        ];
        let segs = segments(&pts);
        assert_eq!(segs.iter().map(|s| s.len()).collect::<Vec<_>>(), [3, 2]);
        // Hourly rollups an hour apart are not a silence.
        let pts = [p(0, 3600), p(3600, 3600), p(7200, 300)];
        assert_eq!(segments(&pts).len(), 1);
    }

    #[test]
    fn counters_become_rates_and_resets_are_dropped() {
        let mut a = p(0, 300);
        a.v = 100.0;
        let mut b = p(100, 300);
        b.v = 300.0;
        let mut c = p(200, 300);
        c.v = 5.0;
        let r = rates(&[a, b, c]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].v, 2.0);
    }

    #[test]
    fn time_ticks_fall_on_round_times() {
        let day = 86400;
        let ticks = time_ticks(10 * day + 500, 19 * day + 500);
        assert!(ticks.len() <= 12 && ticks.len() >= 4, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == day));
        let ticks = time_ticks(3600 + 7, 3 * 3600 + 7);
        assert_eq!(ticks.len(), 12, "every 10 minutes: {ticks:?}");
        // Five minutes (the demo's chart of a new guest): every 30 s.
        let ticks = time_ticks(1_000_000, 1_000_300);
        assert_eq!(ticks.len(), 10, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] - w[0] == 30));
        for span in [60, 300, 3600, 6 * 3600, 86400, 9 * 86400, 90 * 86400] {
            let n = time_ticks(1_000_003, 1_000_003 + span).len();
            assert!((4..=12).contains(&n), "{span} s: {n} labels");
        }
    }

    fn series(kind: &str, values: &[f64]) -> Series {
        Series {
            kind: kind.into(),
            target: String::new(),
            metric: "m".into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| Point {
                    t: i as i64 * 60,
                    v: *v,
                    min: *v,
                    max: *v,
                    span: 60,
                })
                .collect(),
            raw_step: 60,
            warning: None,
            error: None,
        }
    }

    #[test]
    fn figures_at_zero_throughout_are_named_not_drawn() {
        let (drawn, flat) = fold_flat(vec![
            series("cpu", &[0.0, 1.5]),
            series("swap", &[0.0, 0.0]),
            series("disk", &[0.0]),
        ]);
        assert_eq!(drawn.len(), 1);
        assert_eq!(flat_lines(&flat), ["0 throughout: swap: m, disk: m"]);
        // Nothing moves: all are drawn, none folded.
        let (drawn, flat) = fold_flat(vec![series("swap", &[0.0])]);
        assert_eq!((drawn.len(), flat.len()), (1, 0));
        // Many: three lines at most, the rest counted.
        let many: Vec<Series> = (0..100)
            .map(|i| series(&format!("vif{i}"), &[0.0]))
            .collect();
        let lines = flat_lines(&many);
        assert_eq!(lines.len(), FLAT_LINES);
        assert!(
            lines.iter().all(|l| l.len() <= FLAT_LINE_CHARS + 20),
            "{lines:?}"
        );
        assert!(lines[2].ends_with(" more"), "{lines:?}");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(95.0), "95");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(1.5e9), "1.5G");
    }
}
