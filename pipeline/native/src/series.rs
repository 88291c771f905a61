//! Series events (SPEC section 8) judged natively into columns: the same checks, order, reasons
//! and detail text as `EventDecoder._series_problem` in pipeline/core/events.py.

use crate::decode::{check_future, check_node, check_string, check_ts, missing, Clock, Problem, MAX_EVENT_N};
use crate::format::{py_number, show};
use crate::ip::parse_ip;
use crate::json::Value;
use std::collections::HashMap;

pub const SERIES_EVENTS: [&str; 2] = ["series_add", "series_remove"];
const MAX_SERIES_KEY_CHARS: usize = 255;

/// What the decoder needs of a series definition (`SeriesDef` in pipeline/core/series.py).
pub struct SeriesDef {
    pub type_name: String,
    /// 4 or 6 for address keys, None for string keys.
    pub family: Option<u8>,
    pub interval: i64,
    pub num_windows: i64,
    pub prefix_len: Option<u32>,
}

impl SeriesDef {
    /// A key as it is counted: its first `prefix_len` bits (`SeriesDef.truncate`).
    fn truncate(&self, addr: u128) -> u128 {
        match self.prefix_len {
            None => addr,
            Some(0) => 0,
            Some(bits) => addr & !((1u128 << (128 - bits.min(128))) - 1),
        }
    }
}

/// A series name to its definition (None: not defined).
type Lookup<'f> = Box<dyn FnMut(&str) -> Option<SeriesDef> + 'f>;

/// The definitions a batch names, each name looked up once (through `lookup`, which may call
/// back into Python); `defs[i]` is the definition of series index `i` in the columns.
pub struct Definitions<'f> {
    lookup: Lookup<'f>,
    known: HashMap<String, Option<u32>>,
    pub defs: Vec<SeriesDef>,
}

impl<'f> Definitions<'f> {
    pub fn new(lookup: impl FnMut(&str) -> Option<SeriesDef> + 'f) -> Self {
        Definitions {
            lookup: Box::new(lookup),
            known: HashMap::new(),
            defs: Vec::new(),
        }
    }

    fn find(&mut self, name: &str) -> Option<u32> {
        if let Some(&found) = self.known.get(name) {
            return found;
        }
        let found = (self.lookup)(name).map(|definition| {
            self.defs.push(definition);
            (self.defs.len() - 1) as u32
        });
        self.known.insert(name.to_string(), found);
        found
    }
}

/// A series key as counted.
pub enum Key<'v> {
    Addr(u128),
    Text(&'v str),
}

/// An accepted series event.
pub struct SeriesEvent<'v> {
    pub kind: u8,
    pub series: u32,
    pub node: &'v str,
    pub ts: f64,
    pub count: i64,
    pub key: Key<'v>,
}

/// The SPEC fields of a series event, as present (`None`: absent).
pub struct SeriesFields<'f, 'a> {
    pub node: &'f Option<Value<'a>>,
    pub ts: &'f Option<Value<'a>>,
    pub event: &'f Option<Value<'a>>,
    pub series: &'f Option<Value<'a>>,
    pub key: &'f Option<Value<'a>>,
    pub count: &'f Option<Value<'a>>,
}

/// Series events in columns (see pipeline/core/series_columns.py), with their own node names.
#[derive(Default)]
pub struct SeriesRows {
    pub kind: Vec<u8>,
    pub series: Vec<u32>,
    pub node: Vec<u32>,
    pub ts: Vec<f64>,
    pub count: Vec<i64>,
    pub key: Vec<[u8; 16]>,
    pub text: Vec<String>,
    pub nodes: Vec<String>,
    node_ids: HashMap<String, u32>,
}

/// How long `SeriesRows` was, to undo a record whose message turns out invalid.
pub struct SeriesMark {
    rows: usize,
    text: usize,
    nodes: usize,
}

impl SeriesRows {
    pub fn len(&self) -> usize {
        self.kind.len()
    }

    pub fn push(&mut self, event: SeriesEvent) {
        let node = self.node_id(event.node);
        self.kind.push(event.kind);
        self.series.push(event.series);
        self.node.push(node);
        self.ts.push(event.ts);
        self.count.push(event.count);
        match event.key {
            Key::Addr(addr) => self.key.push(addr.to_be_bytes()),
            Key::Text(text) => {
                self.key.push([0; 16]);
                self.text.push(text.to_string());
            }
        }
    }

    fn node_id(&mut self, node: &str) -> u32 {
        // Batches come from few nodes, mostly in runs: try the previous event's node first.
        if let Some(&id) = self.node.last() {
            if self.nodes[id as usize] == node {
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

    pub fn mark(&self) -> SeriesMark {
        SeriesMark {
            rows: self.len(),
            text: self.text.len(),
            nodes: self.nodes.len(),
        }
    }

    pub fn undo(&mut self, mark: &SeriesMark) {
        for name in self.nodes.drain(mark.nodes..) {
            self.node_ids.remove(&name);
        }
        self.kind.truncate(mark.rows);
        self.series.truncate(mark.rows);
        self.node.truncate(mark.rows);
        self.ts.truncate(mark.rows);
        self.count.truncate(mark.rows);
        self.key.truncate(mark.rows);
        self.text.truncate(mark.text);
    }
}

fn as_str<'v>(value: &'v Value) -> Option<&'v str> {
    match value {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// `_series_problem`: the first failing check of a series event, or the event as counted.
pub fn judge_series<'v>(
    f: &SeriesFields<'v, '_>,
    definitions: &mut Definitions,
    clock: &Clock,
    max_future_text: &str,
) -> Result<SeriesEvent<'v>, Problem> {
    missing(&[
        ("node", f.node),
        ("ts", f.ts),
        ("event", f.event),
        ("series", f.series),
        ("key", f.key),
    ])?;
    let (node, ts, event, series, key) = (
        f.node.as_ref().unwrap(),
        f.ts.as_ref().unwrap(),
        f.event.as_ref().unwrap(),
        f.series.as_ref().unwrap(),
        f.key.as_ref().unwrap(),
    );
    let node = check_node(node)?;
    check_ts(ts)?;
    let name = check_string("series", series)?;
    let key_text = check_string("key", key)?;
    let kind = if as_str(event) == Some(SERIES_EVENTS[0]) { 0 } else { 1 };
    let count = match (kind, f.count) {
        (0, Some(Value::Int(n))) if n.abs() <= MAX_EVENT_N => *n as i64,
        (0, Some(bad)) => {
            let detail = format!(
                "field 'count' must be an integer from -{MAX_EVENT_N} to {MAX_EVENT_N}, got {}",
                show(bad)
            );
            return Err(("invalid_field", detail));
        }
        _ => 1,
    };
    let Some(index) = definitions.find(name) else {
        return Err(("unknown_series", format!("series {} is not defined", show(series))));
    };
    let definition = &definitions.defs[index as usize];
    let key = match definition.family {
        None if !key_text.is_empty() && key_text.chars().count() <= MAX_SERIES_KEY_CHARS => Key::Text(key_text),
        None => {
            let detail = format!(
                "key of string series '{name}' must have 1-{MAX_SERIES_KEY_CHARS} characters, got {}",
                show(key)
            );
            return Err(("invalid_key", detail));
        }
        Some(family) => match parse_ip(key_text) {
            Some((found, addr)) if found == family => Key::Addr(definition.truncate(addr)),
            _ => {
                let detail = format!(
                    "key of {} series '{name}' must be an IPv{family} address, got {}",
                    definition.type_name,
                    show(key)
                );
                return Err(("invalid_key", detail));
            }
        },
    };
    let oldest = Clock::oldest_start(clock.now, definition.interval, definition.num_windows);
    if Clock::before(ts, oldest) {
        let detail = format!(
            "ts {} is older than every window series '{name}' keeps (the oldest starts at {oldest})",
            py_number(ts)
        );
        return Err(("too_late", detail));
    }
    check_future(ts, clock, max_future_text)?;
    let ts = match ts {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => unreachable!("ts was checked to be a number"),
    };
    Ok(SeriesEvent {
        kind,
        series: index,
        node,
        ts,
        count,
        key,
    })
}
