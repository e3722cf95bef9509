//! What `tests/daemon/echo.py` recorded: one flat JSON object per line.

use std::collections::HashMap;
use std::path::Path;

/// One line of the daemon's record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The daemon process started (after its handshake with the client).
    Start { pid: u64 },
    /// The daemon received a message.
    Message {
        id: Vec<u8>,
        message_type: String,
        payload: Vec<u8>,
        pid: u64,
    },
}

impl Received {
    /// The message id, for [`Received::Message`].
    pub fn id(&self) -> Option<&[u8]> {
        match self {
            Received::Message { id, .. } => Some(id),
            Received::Start { .. } => None,
        }
    }
}

/// Reads a record file; a missing file is empty, a torn last line is skipped.
pub fn read(path: &Path) -> Vec<Received> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return vec![];
    };
    text.lines()
        .filter_map(|l| parse_line(l).and_then(|m| to_received(&m)))
        .collect()
}

/// All message ids received, in order (duplicates kept).
pub fn message_ids(records: &[Received]) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter_map(|r| r.id().map(<[u8]>::to_vec))
        .collect()
}

fn to_received(m: &HashMap<String, String>) -> Option<Received> {
    let pid = m.get("pid")?.parse().ok()?;
    match m.get("event")?.as_str() {
        "start" => Some(Received::Start { pid }),
        "msg" => Some(Received::Message {
            id: hex::decode(m.get("id")?).ok()?,
            message_type: m.get("type")?.clone(),
            payload: hex::decode(m.get("payload")?).ok()?,
            pid,
        }),
        _ => None,
    }
}

/// Parses a flat JSON object whose values are strings or integers (what `echo.py` writes).
/// Returns `None` for anything else, e.g. a half-written line.
pub fn parse_line(line: &str) -> Option<HashMap<String, String>> {
    let mut p = Parser {
        s: line.trim().as_bytes(),
        i: 0,
    };
    p.eat(b'{')?;
    let mut out = HashMap::new();
    p.ws();
    if p.peek()? == b'}' {
        return Some(out);
    }
    loop {
        p.ws();
        let k = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        let v = if p.peek()? == b'"' {
            p.string()?
        } else {
            p.number()?
        };
        out.insert(k, v);
        p.ws();
        match p.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    p.ws();
    (p.i == p.s.len()).then_some(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn number(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'-') {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            match self.next()? {
                b'"' => return Some(out),
                b'\\' => match self.next()? {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'u' => {
                        let hex = std::str::from_utf8(self.s.get(self.i..self.i + 4)?).ok()?;
                        self.i += 4;
                        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                    }
                    _ => return None,
                },
                c if c < 0x80 => out.push(c as char),
                _ => return None, // echo.py writes ASCII only (json.dumps default)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_echo_py_lines() {
        let m = parse_line(
            r#"{"event": "msg", "id": "0aff", "payload": "", "pid": 12, "type": "ec\"ho"}"#,
        )
        .expect("parse");
        assert_eq!(
            to_received(&m),
            Some(Received::Message {
                id: vec![0x0a, 0xff],
                message_type: "ec\"ho".into(),
                payload: vec![],
                pid: 12
            })
        );
        let m = parse_line(r#"{"event": "start", "pid": 7}"#).expect("parse");
        assert_eq!(to_received(&m), Some(Received::Start { pid: 7 }));
        assert!(parse_line(r#"{"event": "msg", "id": "0a"#).is_none());
    }
}
