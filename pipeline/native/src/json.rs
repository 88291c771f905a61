//! A strict JSON scanner with orjson's rules: UTF-8 without surrogates, no lone surrogate
//! escapes, no NaN/Infinity, numbers that fit a double (integers beyond 64 bits become doubles),
//! and any nesting depth (skipping and pruning never recurse past `MAX_KEPT_DEPTH`).

use std::borrow::Cow;

/// Containers at a deeper level of an event (the event itself is level 1) are kept as `Null`.
pub const MAX_KEPT_DEPTH: u32 = 64;

/// The input is not JSON; the caller asks orjson (via Python) for the wording.
#[derive(Debug)]
pub struct Syntax;

pub type Parsed<T> = Result<T, Syntax>;

/// A JSON value as Python sees it after `orjson.loads` (objects keep first-key order, last value).
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Value<'a>>),
    Obj(Vec<(Cow<'a, str>, Value<'a>)>),
}

pub struct Parser<'a> {
    bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(bytes: &'a [u8], pos: usize) -> Self {
        Parser { bytes, pos }
    }

    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` or fails.
    pub fn expect(&mut self, byte: u8) -> Parsed<()> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// After whitespace: `Ok(true)` on `close` (consumed), `Ok(false)` on a consumed comma.
    pub fn comma_or(&mut self, close: u8) -> Parsed<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(Syntax),
        }
    }

    /// After `open` and whitespace: consumes `close` if the container is empty.
    pub fn empty(&mut self, close: u8) -> bool {
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// An object key and its colon.
    pub fn key(&mut self) -> Parsed<Cow<'a, str>> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(Syntax);
        }
        let key = self.string()?;
        self.expect(b':')?;
        self.ws();
        Ok(key)
    }

    pub fn string(&mut self) -> Parsed<Cow<'a, str>> {
        let bytes = self.bytes;
        let start = self.pos + 1;
        let mut high = 0u8;
        for (i, &c) in bytes.iter().enumerate().skip(start) {
            match c {
                b'"' => {
                    let run = &bytes[start..i];
                    let text = if high < 0x80 {
                        // SAFETY: every byte of `run` is ASCII, which is UTF-8.
                        unsafe { std::str::from_utf8_unchecked(run) }
                    } else {
                        std::str::from_utf8(run).map_err(|_| Syntax)?
                    };
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(text));
                }
                b'\\' => {
                    self.pos = i;
                    return self.escaped_string(start).map(Cow::Owned);
                }
                0..=0x1F => return Err(Syntax),
                _ => high |= c,
            }
        }
        Err(Syntax)
    }

    fn escaped_string(&mut self, start: usize) -> Parsed<String> {
        let mut out = String::new();
        let mut run = start;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(std::str::from_utf8(&self.bytes[run..self.pos]).map_err(|_| Syntax)?);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(std::str::from_utf8(&self.bytes[run..self.pos]).map_err(|_| Syntax)?);
                    self.pos += 1;
                    out.push(self.escape()?);
                    run = self.pos;
                }
                Some(c) if c >= 0x20 => self.pos += 1,
                _ => return Err(Syntax),
            }
        }
    }

    fn escape(&mut self) -> Parsed<char> {
        let c = self.peek().ok_or(Syntax)?;
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(Syntax),
        })
    }

    fn unicode_escape(&mut self) -> Parsed<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(Syntax);
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Syntax);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Syntax),
            _ => high,
        };
        char::from_u32(code).ok_or(Syntax)
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Syntax)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + (d as char).to_digit(16).ok_or(Syntax)?;
        }
        self.pos += 4;
        Ok(value)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Parsed<Value<'a>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Syntax),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Syntax);
            }
            integral = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Syntax);
            }
            integral = false;
        }
        // SAFETY: the bytes just scanned are ASCII digits, signs, '.', 'e' and 'E'.
        let text = unsafe { std::str::from_utf8_unchecked(&self.bytes[start..self.pos]) };
        if integral {
            if let Ok(v) = text.parse::<i64>() {
                return Ok(Value::Int(v.into()));
            }
            if let Ok(v) = text.parse::<u64>() {
                return Ok(Value::Int(v.into()));
            }
        }
        let v: f64 = text.parse().map_err(|_| Syntax)?;
        if v.is_infinite() {
            return Err(Syntax);
        }
        Ok(Value::Float(v))
    }

    fn literal(&mut self, word: &[u8], value: Value<'a>) -> Parsed<Value<'a>> {
        if self.bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(Syntax);
        }
        self.pos += word.len();
        Ok(value)
    }

    fn scalar(&mut self) -> Parsed<Value<'a>> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            _ => self.number(),
        }
    }

    /// The value at the cursor (after whitespace), which sits at `level`; deeper containers
    /// than `MAX_KEPT_DEPTH` are syntax-checked and returned as `Null`.
    pub fn value(&mut self, level: u32) -> Parsed<Value<'a>> {
        self.ws();
        match self.peek() {
            Some(b'[' | b'{') if level > MAX_KEPT_DEPTH => {
                self.skip()?;
                Ok(Value::Null)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.empty(b']') {
                    loop {
                        items.push(self.value(level + 1)?);
                        if self.comma_or(b']')? {
                            break;
                        }
                    }
                }
                Ok(Value::Arr(items))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut fields: Vec<(Cow<'a, str>, Value<'a>)> = Vec::new();
                if !self.empty(b'}') {
                    loop {
                        let key = self.key()?;
                        let value = self.value(level + 1)?;
                        match fields.iter_mut().find(|(k, _)| *k == key) {
                            Some(slot) => slot.1 = value,
                            None => fields.push((key, value)),
                        }
                        if self.comma_or(b'}')? {
                            break;
                        }
                    }
                }
                Ok(Value::Obj(fields))
            }
            _ => self.scalar(),
        }
    }

    /// Validates and skips one value of any depth, with an explicit stack instead of recursion.
    pub fn skip(&mut self) -> Parsed<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(b'[') => {
                    self.pos += 1;
                    if !self.empty(b']') {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'{') => {
                    self.pos += 1;
                    if !self.empty(b'}') {
                        open.push(b'}');
                        self.key()?;
                        continue;
                    }
                }
                _ => {
                    self.scalar()?;
                }
            }
            loop {
                let Some(&close) = open.last() else { return Ok(()) };
                if self.comma_or(close)? {
                    open.pop();
                } else {
                    if close == b'}' {
                        self.key()?;
                    }
                    break;
                }
            }
        }
    }
}
