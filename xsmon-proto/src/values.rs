//! The figures' codec, shared by the key layout (`layout`) and the SNMP
//! lines (`snmpline`): a check's values (`name=value` pairs) and limits
//! (`name:warning:error`), printed and parsed side by side; and a check's
//! figures as one line ([`CheckFigures`]: the SNMP `M` record's fields and
//! the history store's latest figures).

use serde::{Deserialize, Serialize};

use crate::check::{CheckResult, Limit, Status, Value};
use crate::text;

/// The longest values field (`name=value,...`), in bytes.
pub const MAX_VALUES: usize = 1024;
/// The longest limits field, in bytes.
pub const MAX_LIMITS: usize = 512;
/// The longest number, in characters.
pub const MAX_NUMBER: usize = 20;

pub(crate) fn valid_word(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(ok)
}

/// A figure's name: `[a-z0-9_]`, 1 to 32 characters.
pub fn valid_value_name(s: &str) -> bool {
    valid_word(s, 32, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
    })
}

pub(crate) fn encode_values(values: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for v in values {
        if !valid_value_name(&v.name) {
            return Err(format!(
                "value name {:?} must be [a-z0-9_], 1 to 32 characters",
                v.name
            ));
        }
        if !v.value.is_finite() {
            return Err(format!("value {} is not a finite number", v.name));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        push_value(&mut out, v);
    }
    if out.len() > MAX_VALUES {
        return Err(format!("{} bytes, at most {MAX_VALUES}", out.len()));
    }
    Ok(out)
}

/// A figure rounded to what a human or a graph needs (three decimals),
/// which keeps the lines short.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Appends `name=number`, rounded; the name and the number are the
/// caller's to have checked.
pub(crate) fn push_value(out: &mut String, v: &Value) {
    out.push_str(&v.name);
    out.push('=');
    push_number(out, v.value);
}

/// Appends `name=warning,error`, rounded; a threshold that is unset (or
/// not a finite number) is left empty.
pub(crate) fn push_limit(out: &mut String, l: &Limit) {
    out.push_str(&l.name);
    out.push('=');
    if let Some(w) = l.warning.filter(|x| x.is_finite()) {
        push_number(out, w);
    }
    out.push(',');
    if let Some(e) = l.error.filter(|x| x.is_finite()) {
        push_number(out, e);
    }
}

/// Appends [`round3`] of `x` exactly as `Display` prints it (the lines'
/// contract), by integer arithmetic where that is exact: a dom0 prints
/// tens of thousands of figures a cycle, and float formatting was a good
/// part of its time. Below 1e12 the thousandths are exact and no shorter
/// decimal reads back as the same double, so the digits are the same;
/// anything else (huge, or a negative zero, which prints `-0`) goes
/// through `Display`.
pub(crate) fn push_number(out: &mut String, x: f64) {
    use std::fmt::Write;
    let milli = (x * 1000.0).round();
    let exact = milli.abs() < 1e15 && !(milli == 0.0 && milli.is_sign_negative());
    if !exact {
        let _ = write!(out, "{}", round3(x));
        return;
    }
    let milli = milli as i64;
    if milli < 0 {
        out.push('-');
    }
    let m = milli.unsigned_abs();
    let _ = write!(out, "{}", m / 1000);
    let frac = m % 1000;
    if frac != 0 {
        let digits = [
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        let len = if !frac.is_multiple_of(10) {
            3
        } else if !frac.is_multiple_of(100) {
            2
        } else {
            1
        };
        out.push('.');
        out.extend(digits[..len].iter().map(|&b| b as char));
    }
}

pub(crate) fn encode_limits(limits: &[Limit]) -> Result<String, String> {
    let mut out = String::new();
    for l in limits {
        if !valid_value_name(&l.name) {
            return Err(format!("limit name {:?} must be [a-z0-9_]", l.name));
        }
        if [l.warning, l.error]
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(format!("limit of {} is not a finite number", l.name));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        push_limit(&mut out, l);
    }
    if out.len() > MAX_LIMITS {
        return Err(format!("{} bytes, at most {MAX_LIMITS}", out.len()));
    }
    Ok(out)
}

/// Parses a `limits` string: `name=warning,error` pairs, either number
/// possibly empty.
pub fn parse_limits(s: &str) -> Result<Vec<Limit>, String> {
    let mut out: Vec<Limit> = Vec::new();
    for pair in s.split(' ').filter(|p| !p.is_empty()) {
        let bad = || format!("{:?} is not name=warning,error", text::clean(pair, 40));
        let (name, nums) = pair.split_once('=').ok_or_else(bad)?;
        let (w, e) = nums.split_once(',').ok_or_else(bad)?;
        if !valid_value_name(name) {
            return Err(format!(
                "limit name {:?} is not [a-z0-9_]",
                text::clean(name, 40)
            ));
        }
        let num = |s: &str| -> Result<Option<f64>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_number(s).map(Some).ok_or_else(|| {
                    format!("{name}: {:?} is not a finite number", text::clean(s, 40))
                })
            }
        };
        if out.iter().any(|l| l.name == name) {
            return Err(format!("limit {name} appears twice"));
        }
        out.push(Limit {
            name: name.to_string(),
            warning: num(w)?,
            error: num(e)?,
        });
    }
    Ok(out)
}

/// Parses a `values` string, rejecting anything but `name=number` pairs.
pub fn parse_values(s: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for pair in s.split(' ').filter(|p| !p.is_empty()) {
        let (name, num) = pair
            .split_once('=')
            .ok_or_else(|| format!("{:?} is not name=number", text::clean(pair, 40)))?;
        if !valid_value_name(name) {
            return Err(format!(
                "value name {:?} is not [a-z0-9_]",
                text::clean(name, 40)
            ));
        }
        let value = parse_number(num)
            .ok_or_else(|| format!("{name}: {:?} is not a finite number", text::clean(num, 40)))?;
        if out.iter().any(|v: &Value| v.name == name) {
            return Err(format!("value {name} appears twice"));
        }
        out.push(Value {
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// A plain decimal number: digits, one optional sign, dot and exponent.
/// (f64's own parser also takes `inf` and `NaN`, which are not figures.)
fn parse_number(s: &str) -> Option<f64> {
    if s.is_empty()
        || s.len() > MAX_NUMBER * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One check's latest figures: what an `M` record carries after its host
/// (and what the history store keeps as a host's latest figures, one
/// [`CheckFigures::print`] per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckFigures {
    pub check_id: String,
    pub kind: String,
    pub status: Status,
    pub target: String,
    pub values: Vec<Value>,
    pub limits: Vec<Limit>,
}

impl CheckFigures {
    pub fn of(c: &CheckResult) -> CheckFigures {
        CheckFigures {
            check_id: c.id.clone(),
            kind: c.kind.clone(),
            status: c.status,
            target: c.target.clone(),
            values: c.values.clone(),
            limits: c.limits.clone(),
        }
    }

    /// The fields after the host: `<check_id> <kind> <status> <target>
    /// <values> <limits>`. A figure that is not a finite number or has an
    /// unusable name is left out rather than printed unreadable.
    pub fn print(&self) -> String {
        let mut values = String::new();
        for v in self
            .values
            .iter()
            .filter(|v| v.value.is_finite() && valid_value_name(&v.name))
        {
            if !values.is_empty() {
                values.push(' ');
            }
            push_value(&mut values, v);
        }
        let mut limits = String::new();
        for l in self.limits.iter().filter(|l| valid_value_name(&l.name)) {
            if !limits.is_empty() {
                limits.push(' ');
            }
            push_limit(&mut limits, l);
        }
        format!(
            "{} {} {} {} {} {}",
            text::escape(&self.check_id),
            text::escape(&self.kind),
            self.status,
            text::escape(&self.target),
            text::escape(&values),
            text::escape(&limits)
        )
    }

    /// Reads what [`CheckFigures::print`] wrote, by the key layout's rules.
    pub fn parse(line: &str) -> Result<CheckFigures, String> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 6 {
            return Err(format!("figures with {} fields, expected 6", f.len()));
        }
        Ok(CheckFigures {
            check_id: text::unescape(f[0])?,
            kind: text::unescape(f[1])?,
            status: f[2].parse::<Status>()?,
            target: text::unescape(f[3])?,
            values: parse_values(&text::unescape(f[4])?)?,
            limits: parse_limits(&text::unescape(f[5])?)?,
        })
    }

    /// The thresholds of figure `name`, if the guest graded it.
    pub fn limit_of(&self, name: &str) -> Option<&Limit> {
        self.limits.iter().find(|l| l.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fast(x: f64) -> String {
        let mut s = String::new();
        push_number(&mut s, x);
        s
    }

    #[test]
    fn numbers_print_as_display_prints_them_at_the_edges() {
        for x in [
            0.0,
            -0.0,
            -0.0004,
            0.0004,
            0.0005,
            -0.0005,
            0.1,
            0.125,
            1.5,
            100.0,
            -3.25,
            999_999_999_999.999,
            1e12,
            -1e12,
            1e15,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(fast(x), round3(x).to_string(), "{x:?}");
        }
    }

    proptest! {
        #[test]
        fn numbers_print_as_display_prints_them(x in proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL) {
            prop_assert_eq!(fast(x), round3(x).to_string());
        }

        #[test]
        fn figures_in_thousandths_print_as_display_prints_them(m in -2_000_000_000_000_000i64..2_000_000_000_000_000i64) {
            let x = m as f64 / 1000.0;
            prop_assert_eq!(fast(x), round3(x).to_string());
        }
    }
}
