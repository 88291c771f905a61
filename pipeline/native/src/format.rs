//! Text exactly as the Python reference writes it: `orjson.dumps` of a value, `repr` of a
//! float, and the `:g` format.

use crate::json::Value;
use std::fmt::Write;

/// Longest detail excerpt of a value, in characters (`_SHOW_CHARS` in events.py).
const SHOW_CHARS: usize = 100;

/// Shortest round-trip digits and decimal exponent of a finite, non-zero `|v|`: 1.5e-7 -> ("15", -7).
///
/// Of the shortest strings that read back as `v`, Python (and orjson) take the closest, ties to
/// even. That is the correctly rounded one of that length (Rust's exact formatting) when it reads
/// back as `v`; Rust's shortest mode breaks such ties differently. When it does not (a tie next
/// to a power of two, whose lower neighbour is closer), the one that does is Rust's shortest.
fn digits_exponent(v: f64) -> (String, i32) {
    let shortest = format!("{:e}", v.abs());
    let length = shortest
        .split_once('e')
        .map_or(1, |(mantissa, _)| mantissa.replace('.', "").len());
    let rounded = format!("{:.*e}", length - 1, v.abs());
    let text = if rounded.parse::<f64>() == Ok(v.abs()) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exponent) = text.split_once('e').expect("{:e} has an exponent");
    (
        mantissa.replace('.', ""),
        exponent.parse().expect("{:e} exponent is an integer"),
    )
}

/// Positional or scientific notation of a finite float, the two ways Python and orjson both use.
fn float_text(v: f64, fixed_from: i32, exponent_width: usize) -> String {
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if v == 0.0 {
        return format!("{sign}0.0");
    }
    let (digits, exp) = digits_exponent(v);
    if (fixed_from..16).contains(&exp) {
        if exp < 0 {
            return format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize));
        }
        let point = exp as usize + 1;
        if digits.len() <= point {
            return format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()));
        }
        return format!("{sign}{}.{}", &digits[..point], &digits[point..]);
    }
    let mantissa = if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits
    };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exp_sign}{:0exponent_width$}", exp.abs())
}

/// Python's `repr(float)` (`str` too): `1e-05`, `1700000000.25`, `1e+16`.
pub fn py_float(v: f64) -> String {
    float_text(v, -4, 2)
}

/// `orjson.dumps(float)`: `1e-6` but `0.00001`, `1e+16`.
fn json_float(v: f64) -> String {
    float_text(v, -5, 1)
}

/// Python's `format(v, "g")`: six significant digits, trailing zeros dropped.
pub fn py_g(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let scientific = format!("{v:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exponent.parse().expect("{:e} exponent is an integer");
    let trim = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    if (-4..6).contains(&exp) {
        return trim(&format!("{v:.*}", (5 - exp) as usize));
    }
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{}e{exp_sign}{:02}", trim(mantissa), exp.abs())
}

/// Python's `str` of an accepted `ts` value (an int or a float).
pub fn py_number(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py_float(*f),
        _ => String::new(),
    }
}

fn json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("write to String"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `orjson.dumps(value)`, as text.
pub fn dumps(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => write!(out, "{i}").expect("write to String"),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Str(s) => json_string(s, out),
        Value::Arr(items) => {
            out.push('[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                dumps(item, out);
            }
            out.push(']');
        }
        Value::Obj(fields) => {
            out.push('{');
            for (k, (key, item)) in fields.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                json_string(key, out);
                out.push(':');
                dumps(item, out);
            }
            out.push('}');
        }
    }
}

/// `_show` of events.py: the value in JSON syntax, cut to 100 characters.
pub fn show(value: &Value) -> String {
    let mut text = String::new();
    dumps(value, &mut text);
    if text.chars().count() <= SHOW_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(SHOW_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

/// `_json_type` of events.py.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) | Value::Float(_) => "number",
        Value::Str(_) => "string",
        Value::Arr(_) => "array",
        Value::Obj(_) => "object",
    }
}
