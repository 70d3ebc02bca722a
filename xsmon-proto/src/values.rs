//! The figures' codec, shared by the key layout (`layout`) and the SNMP
//! lines (`snmpline`): a check's values (`name=value` pairs) and limits
//! (`name:warning:error`), printed and parsed side by side.

use crate::check::{Limit, Value};
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
        out.push_str(&value_text(v));
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

/// `name=number`, rounded; the name and the number are the caller's to
/// have checked.
pub(crate) fn value_text(v: &Value) -> String {
    format!("{}={}", v.name, round3(v.value))
}

/// `name=warning,error`, rounded; a threshold that is unset (or not a
/// finite number) is left empty.
pub(crate) fn limit_text(l: &Limit) -> String {
    let num = |x: Option<f64>| {
        x.filter(|x| x.is_finite())
            .map(|x| round3(x).to_string())
            .unwrap_or_default()
    };
    format!("{}={},{}", l.name, num(l.warning), num(l.error))
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
        out.push_str(&limit_text(l));
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
