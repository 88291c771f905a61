//! SPEC section 3 validation of a partition's batch of records into columns: the same checks,
//! order, reasons and detail text as `EventDecoder` in pipeline/core/events.py.

use crate::format::{dumps, json_type, py_float, py_number, show};
use crate::ip::parse_ip;
use crate::json::{Parsed, Parser, Syntax, Value};
use crate::series::{judge_series, Definitions, SeriesEvent, SeriesFields, SeriesMark, SeriesRows, SERIES_EVENTS};
use std::collections::HashMap;

pub const MAX_BATCH_EVENTS: usize = 10_000;
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
pub const MAX_EVENT_N: i128 = (1 << 31) - 1;
const MAX_NODE_CHARS: usize = 255;
const EVENT_NAMES: [&str; 6] = [
    "connection",
    "reception",
    "rejection",
    "session_open",
    "session_close",
    "node_reset",
];
const FIRST_SESSION_CODE: usize = 3;
pub const SESSION_KINDS: [&str; 3] = ["open", "close", "reset"];
const DEFAULT_SERVICE: &str = "SMTP";

/// The clock references of one record: its own timestamp and the oldest kept window start.
pub struct Clock {
    pub now: f64,
    oldest: i64,
    latest: f64,
}

impl Clock {
    /// `now_s = timestamp_ms / 1000`, `oldest_kept_s = min(Monitor.oldest_kept_start(now_s))`.
    pub fn new(timestamp_ms: i64, monitors: &[(i64, i64)], max_future_s: f64) -> Clock {
        let now = timestamp_ms as f64 / 1000.0;
        let oldest = monitors
            .iter()
            .map(|&(size, count)| Clock::oldest_start(now, size, count))
            .min()
            .unwrap_or(i64::MIN);
        Clock {
            now,
            oldest,
            latest: now + max_future_s,
        }
    }

    /// `Monitor.oldest_kept_start(now)` of windows of `size` seconds, `count` kept.
    pub fn oldest_start(now: f64, size: i64, count: i64) -> i64 {
        (now / size as f64).floor() as i64 * size - (count - 1) * size
    }

    /// Python's `ts < oldest`.
    pub fn before(ts: &Value, oldest: i64) -> bool {
        match ts {
            Value::Int(i) => *i < oldest as i128,
            Value::Float(f) => *f < oldest as f64,
            _ => false,
        }
    }

    /// Python's exact int/float comparison `ts > latest`.
    pub fn in_future(&self, ts: &Value) -> bool {
        match ts {
            Value::Int(i) => {
                let rounded = *i as f64;
                if rounded != self.latest {
                    rounded > self.latest
                } else {
                    *i > self.latest as i128
                }
            }
            Value::Float(f) => *f > self.latest,
            _ => false,
        }
    }
}

/// Windowed events of one address family, in columns.
#[derive(Default)]
pub struct Family<K> {
    pub sec: Vec<i64>,
    pub metric: Vec<u8>,
    pub node: Vec<u32>,
    pub key: Vec<K>,
    pub n: Vec<i64>,
}

impl<K> Family<K> {
    fn push(&mut self, sec: i64, metric: u8, node: u32, key: K, n: i64) {
        self.sec.push(sec);
        self.metric.push(metric);
        self.node.push(node);
        self.key.push(key);
        self.n.push(n);
    }

    fn truncate(&mut self, len: usize) {
        self.sec.truncate(len);
        self.metric.truncate(len);
        self.node.truncate(len);
        self.key.truncate(len);
        self.n.truncate(len);
    }
}

/// `(kind index into SESSION_KINDS, node, family, address, service)`.
pub type Session = (usize, String, u8, u128, String);

/// `(record index, reason, detail, value)`; a `None` detail is `invalid_json`, worded by orjson.
pub type Rejection = (usize, &'static str, Option<String>, Vec<u8>);

/// Everything a batch of records decodes to.
#[derive(Default)]
pub struct Batch {
    pub nodes: Vec<String>,
    node_ids: HashMap<String, u32>,
    pub v4: Family<u32>,
    pub v6: Family<[u8; 16]>,
    pub sessions: Vec<Session>,
    pub series: SeriesRows,
    /// Per record: (v4 end, v6 end, sessions end, series end).
    pub ends: Vec<(usize, usize, usize, usize)>,
    pub rejections: Vec<Rejection>,
}

/// What `Batch` held before a record, to undo the record when its message turns out invalid.
struct Mark {
    nodes: usize,
    v4: usize,
    v6: usize,
    sessions: usize,
    series: SeriesMark,
    rejections: usize,
}

/// Why a whole message is refused once its syntax is known.
enum Refusal {
    Syntax,
    TooManyEvents(usize),
}

impl From<Syntax> for Refusal {
    fn from(_: Syntax) -> Self {
        Refusal::Syntax
    }
}

/// The SPEC fields of one event object, as present (`None`: absent).
#[derive(Default)]
struct Fields<'a> {
    node: Option<Value<'a>>,
    ts: Option<Value<'a>>,
    ip: Option<Value<'a>>,
    event: Option<Value<'a>>,
    n: Option<Value<'a>>,
    service: Option<Value<'a>>,
    series: Option<Value<'a>>,
    key: Option<Value<'a>>,
    count: Option<Value<'a>>,
}

/// An accepted event.
enum Accepted<'v> {
    Windowed {
        node: &'v str,
        sec: i64,
        metric: u8,
        family: u8,
        addr: u128,
        n: i64,
    },
    Session {
        kind: usize,
        node: &'v str,
        family: u8,
        addr: u128,
        service: &'v str,
    },
    Series(SeriesEvent<'v>),
}

pub type Problem = (&'static str, String);

impl Batch {
    /// Decodes one record's value (None: a tombstone) into the batch.
    pub fn record(
        &mut self,
        index: usize,
        raw: Option<&[u8]>,
        clock: &Clock,
        max_future_text: &str,
        series: &mut Definitions,
    ) {
        let Some(raw) = raw else {
            let detail = "empty message value (a tombstone), expected JSON".to_string();
            self.rejections.push((index, "invalid_json", Some(detail), Vec::new()));
            return self.end_record();
        };
        if raw.len() > MAX_MESSAGE_BYTES {
            let detail = format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                raw.len()
            );
            self.rejections
                .push((index, "batch_too_large", Some(detail), raw.to_vec()));
            return self.end_record();
        }
        let mark = self.mark();
        let mut context = Context {
            index,
            clock,
            max_future_text,
            raw,
            series,
        };
        match self.message(&mut context) {
            Ok(()) => {}
            Err(Refusal::Syntax) => {
                self.undo(mark);
                self.rejections.push((index, "invalid_json", None, raw.to_vec()));
            }
            Err(Refusal::TooManyEvents(count)) => {
                self.undo(mark);
                let detail = format!("batch of {count} events exceeds the limit of {MAX_BATCH_EVENTS}");
                self.rejections
                    .push((index, "batch_too_large", Some(detail), raw.to_vec()));
            }
        }
        self.end_record();
    }

    fn end_record(&mut self) {
        self.ends.push((
            self.v4.key.len(),
            self.v6.key.len(),
            self.sessions.len(),
            self.series.len(),
        ));
    }

    fn mark(&self) -> Mark {
        Mark {
            nodes: self.nodes.len(),
            v4: self.v4.key.len(),
            v6: self.v6.key.len(),
            sessions: self.sessions.len(),
            series: self.series.mark(),
            rejections: self.rejections.len(),
        }
    }

    fn undo(&mut self, mark: Mark) {
        for name in self.nodes.drain(mark.nodes..) {
            self.node_ids.remove(&name);
        }
        self.v4.truncate(mark.v4);
        self.v6.truncate(mark.v6);
        self.sessions.truncate(mark.sessions);
        self.series.undo(&mark.series);
        self.rejections.truncate(mark.rejections);
    }

    fn message(&mut self, cx: &mut Context) -> Result<(), Refusal> {
        let mut p = Parser::new(cx.raw, 0);
        p.ws();
        match p.peek() {
            Some(b'[') => {
                p.pos += 1;
                let mut count = 0;
                if !p.empty(b']') {
                    loop {
                        count += 1;
                        if count <= MAX_BATCH_EVENTS {
                            self.item(&mut p, cx)?;
                        } else {
                            p.skip()?;
                        }
                        if p.comma_or(b']')? {
                            break;
                        }
                    }
                }
                finish(&mut p)?;
                if count > MAX_BATCH_EVENTS {
                    return Err(Refusal::TooManyEvents(count));
                }
            }
            Some(b'{') => {
                self.event(&mut p, cx, true)?;
                finish(&mut p)?;
            }
            _ => {
                let doc = p.value(1)?;
                finish(&mut p)?;
                let detail = format!(
                    "value must be a JSON object or an array of objects, got {} {}",
                    json_type(&doc),
                    show(&doc)
                );
                self.rejections
                    .push((cx.index, "not_an_object", Some(detail), cx.raw.to_vec()));
            }
        }
        Ok(())
    }

    fn item(&mut self, p: &mut Parser, cx: &mut Context) -> Parsed<()> {
        p.ws();
        if p.peek() == Some(b'{') {
            return self.event(p, cx, false);
        }
        let item = p.value(1)?;
        let detail = format!("event must be a JSON object, got {} {}", json_type(&item), show(&item));
        let mut value = String::new();
        dumps(&item, &mut value);
        self.rejections
            .push((cx.index, "not_an_object", Some(detail), value.into_bytes()));
        Ok(())
    }

    fn event(&mut self, p: &mut Parser, cx: &mut Context, single: bool) -> Parsed<()> {
        let start = p.pos;
        let fields = event_fields(p)?;
        match judge(&fields, cx) {
            Ok(Accepted::Windowed {
                node,
                sec,
                metric,
                family,
                addr,
                n,
            }) => {
                let node = self.node_id(node);
                if family == 4 {
                    self.v4.push(sec, metric, node, addr as u32, n);
                } else {
                    self.v6.push(sec, metric, node, addr.to_be_bytes(), n);
                }
            }
            Ok(Accepted::Session {
                kind,
                node,
                family,
                addr,
                service,
            }) => {
                self.sessions
                    .push((kind, node.to_string(), family, addr, service.to_string()));
            }
            Ok(Accepted::Series(event)) => self.series.push(event),
            Err((reason, detail)) => {
                let value = if single {
                    cx.raw.to_vec()
                } else {
                    let mut text = String::new();
                    dumps(&Parser::new(cx.raw, start).value(1)?, &mut text);
                    text.into_bytes()
                };
                self.rejections.push((cx.index, reason, Some(detail), value));
            }
        }
        Ok(())
    }

    fn node_id(&mut self, node: &str) -> u32 {
        // Batches come from few nodes, mostly in runs: try the previous event's node first.
        if let Some(&id) = self.v4.node.last().or(self.v6.node.last()) {
            if self.nodes.get(id as usize).is_some_and(|name| name == node) {
                return id;
            }
        }
        if let Some(&id) = self.node_ids.get(node) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(node.to_string());
        self.node_ids.insert(node.to_string(), id);
        id
    }
}

struct Context<'r, 'f> {
    index: usize,
    clock: &'r Clock,
    max_future_text: &'r str,
    raw: &'r [u8],
    series: &'r mut Definitions<'f>,
}

fn finish(p: &mut Parser) -> Parsed<()> {
    p.ws();
    if p.at_end() {
        Ok(())
    } else {
        Err(Syntax)
    }
}

/// The SPEC fields of the object at the cursor; other fields are syntax-checked and skipped.
fn event_fields<'a>(p: &mut Parser<'a>) -> Parsed<Fields<'a>> {
    p.pos += 1;
    let mut fields = Fields::default();
    if p.empty(b'}') {
        return Ok(fields);
    }
    loop {
        let key = p.key()?;
        let slot = match &*key {
            "node" => Some(&mut fields.node),
            "ts" => Some(&mut fields.ts),
            "ip" => Some(&mut fields.ip),
            "event" => Some(&mut fields.event),
            "n" => Some(&mut fields.n),
            "service" => Some(&mut fields.service),
            "series" => Some(&mut fields.series),
            "key" => Some(&mut fields.key),
            "count" => Some(&mut fields.count),
            _ => None,
        };
        match slot {
            Some(slot) => *slot = Some(p.value(2)?),
            None => p.skip()?,
        }
        if p.comma_or(b'}')? {
            return Ok(fields);
        }
    }
}

fn as_str<'v>(value: &'v Value) -> Option<&'v str> {
    match value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// `missing_field` naming every absent one of `required`, in order.
pub fn missing(required: &[(&str, &Option<Value>)]) -> Result<(), Problem> {
    let missing: Vec<String> = required
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| format!("'{k}'"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let plural = if missing.len() > 1 { "s" } else { "" };
    Err((
        "missing_field",
        format!("missing required field{plural} {}", missing.join(", ")),
    ))
}

/// The `node` field as accepted: a string of 1-255 characters.
pub fn check_node<'v>(node: &'v Value) -> Result<&'v str, Problem> {
    as_str(node)
        .filter(|s| !s.is_empty() && (s.len() <= MAX_NODE_CHARS || s.chars().count() <= MAX_NODE_CHARS))
        .ok_or_else(|| {
            let detail = format!(
                "field 'node' must be a string of 1-{MAX_NODE_CHARS} characters, got {}",
                show(node)
            );
            ("invalid_field", detail)
        })
}

/// The `ts` field as accepted: a number (JSON numbers are always finite here).
pub fn check_ts(ts: &Value) -> Result<(), Problem> {
    if matches!(ts, Value::Int(_) | Value::Float(_)) {
        return Ok(());
    }
    Err((
        "invalid_field",
        format!("field 'ts' must be a finite number of Unix seconds, got {}", show(ts)),
    ))
}

/// A field that must be a JSON string, or `invalid_field` naming it.
pub fn check_string<'v>(name: &str, value: &'v Value) -> Result<&'v str, Problem> {
    as_str(value).ok_or_else(|| {
        (
            "invalid_field",
            format!("field '{name}' must be a string, got {}", show(value)),
        )
    })
}

/// `future_timestamp` when `ts` is past the clock's latest accepted time.
pub fn check_future(ts: &Value, clock: &Clock, max_future_text: &str) -> Result<(), Problem> {
    if !clock.in_future(ts) {
        return Ok(());
    }
    let detail = format!(
        "ts {} is more than {max_future_text} s ahead of the reference time {}",
        py_number(ts),
        py_float(clock.now)
    );
    Err(("future_timestamp", detail))
}

/// `EventDecoder._problem` and the accepting half of `_decode_slow`, in the same order; series
/// events go to `judge_series`.
fn judge<'v>(f: &'v Fields, cx: &mut Context) -> Result<Accepted<'v>, Problem> {
    if f.event
        .as_ref()
        .and_then(as_str)
        .is_some_and(|name| SERIES_EVENTS.contains(&name))
    {
        let fields = SeriesFields {
            node: &f.node,
            ts: &f.ts,
            event: &f.event,
            series: &f.series,
            key: &f.key,
            count: &f.count,
        };
        return judge_series(&fields, cx.series, cx.clock, cx.max_future_text).map(Accepted::Series);
    }
    missing(&[("node", &f.node), ("ts", &f.ts), ("ip", &f.ip), ("event", &f.event)])?;
    let (node, ts, ip, name) = (
        f.node.as_ref().unwrap(),
        f.ts.as_ref().unwrap(),
        f.ip.as_ref().unwrap(),
        f.event.as_ref().unwrap(),
    );
    let node_text = check_node(node)?;
    check_ts(ts)?;
    let ip_text = check_string("ip", ip)?;
    let name_text = check_string("event", name)?;
    let code = EVENT_NAMES.iter().position(|&known| known == name_text);
    let windowed = matches!(code, Some(c) if c < FIRST_SESSION_CODE);
    let n = match (&f.n, windowed) {
        (Some(Value::Int(n)), true) if (1..=MAX_EVENT_N).contains(n) => *n as i64,
        (Some(bad), true) => {
            let detail = format!(
                "field 'n' must be an integer from 1 to {MAX_EVENT_N}, got {}",
                show(bad)
            );
            return Err(("invalid_field", detail));
        }
        _ => 1,
    };
    let service = match (&f.service, code) {
        (None, _) => DEFAULT_SERVICE,
        (Some(service), Some(c)) if c >= FIRST_SESSION_CODE => check_string("service", service)?,
        (Some(service), _) => as_str(service).unwrap_or(DEFAULT_SERVICE),
    };
    let Some((family, addr)) = parse_ip(ip_text) else {
        return Err((
            "invalid_ip",
            format!("field 'ip' is not a valid IPv4 or IPv6 address: {}", show(ip)),
        ));
    };
    let Some(code) = code else {
        let detail = format!(
            "unknown event {}; expected one of {}",
            show(name),
            EVENT_NAMES.join(", ")
        );
        return Err(("unknown_event", detail));
    };
    if !windowed {
        let kind = code - FIRST_SESSION_CODE;
        return Ok(Accepted::Session {
            kind,
            node: node_text,
            family,
            addr,
            service,
        });
    }
    let clock = cx.clock;
    if Clock::before(ts, clock.oldest) {
        let detail = format!(
            "ts {} is older than every kept window (the oldest starts at {})",
            py_number(ts),
            clock.oldest
        );
        return Err(("too_late", detail));
    }
    check_future(ts, clock, cx.max_future_text)?;
    let sec = match ts {
        Value::Int(i) => *i as f64 as i64, // numpy floors a float64 copy of the column
        Value::Float(x) => x.floor() as i64,
        _ => unreachable!("ts was checked to be a number"),
    };
    Ok(Accepted::Windowed {
        node: node_text,
        sec,
        metric: code as u8,
        family,
        addr,
        n,
    })
}
