//! A tolerant, descriptor-aware walk over a text-format document that runs
//! before prost-reflect's parser.
//!
//! It exists for three reasons prost-reflect alone cannot serve:
//! * **Positions and field paths.** prost-reflect's `ParseError` does not
//!   expose its span; the walk records where every field starts, so an error
//!   offset can be turned into `https_config.listen_address`.
//! * **Go's strictness.** prost-reflect accepts a proto3 scalar given twice if
//!   the first value is the default (`disable_streaming: false` twice); Go's
//!   prototext rejects every repeated singular field. The walk checks
//!   duplicates, oneof conflicts, unknown fields and `Any` types itself and
//!   reports them with exact positions.
//! * **Go's leniency.** Go accepts a list of messages without a colon
//!   (`services [ {...} ]`); prost-reflect does not. The walk records where a
//!   colon must be inserted.
//!
//! On anything it does not understand (a syntax error) the walk simply stops:
//! prost-reflect then reports the error in its own words.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use crate::error::TextErrorKind;

/// Result of a successful walk.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Offsets (in the original text) where `:` has to be inserted.
    pub colon_insertions: Vec<usize>,
    /// Every field occurrence: dotted path and the byte range it covers.
    pub fields: Vec<(String, Range<usize>)>,
    /// Where the walk gave up, if it did.
    pub stopped_at: Option<usize>,
}

impl Scan {
    /// The innermost field whose name or value covers `offset`.
    pub fn field_at(&self, offset: usize) -> Option<&str> {
        self.fields
            .iter()
            .filter(|(_, r)| r.start <= offset && offset < r.end)
            .max_by_key(|(_, r)| r.start)
            .map(|(p, _)| p.as_str())
    }
}

/// A structural error found by the walk.
#[derive(Debug)]
pub(crate) struct ScanError {
    pub offset: usize,
    pub field: Option<String>,
    pub kind: TextErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Ident(&'a str),
    Scalar,
    Str,
    Punct(u8),
}

/// A token and its byte range, `Ok(None)` at the end, `Err(offset)` where
/// lexing failed.
type Lexed<'a> = Result<Option<(Tok<'a>, Range<usize>)>, usize>;

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_trivia(&mut self) {
        let bytes = self.src.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'#' => {
                    while bytes.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Next token, `Ok(None)` at the end, `Err(offset)` on an unlexable byte.
    fn next(&mut self) -> Lexed<'a> {
        self.skip_trivia();
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let Some(&b) = bytes.get(start) else {
            return Ok(None);
        };
        let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let tok = if b.is_ascii_alphabetic() || b == b'_' {
            while bytes.get(self.pos).is_some_and(|&c| is_word(c)) {
                self.pos += 1;
            }
            Tok::Ident(self.src.get(start..self.pos).unwrap_or_default())
        } else if b.is_ascii_digit()
            || (b == b'.' && bytes.get(start + 1).is_some_and(u8::is_ascii_digit))
        {
            while let Some(&c) = bytes.get(self.pos) {
                let exp_sign = (c == b'+' || c == b'-')
                    && matches!(bytes.get(self.pos - 1), Some(b'e' | b'E'));
                if is_word(c) || c == b'.' || exp_sign {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            Tok::Scalar
        } else if b == b'"' || b == b'\'' {
            self.pos += 1;
            loop {
                match bytes.get(self.pos) {
                    None | Some(b'\n') => return Err(start),
                    Some(b'\\') => self.pos += 2,
                    Some(&c) if c == b => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => self.pos += 1,
                }
            }
            Tok::Str
        } else if b"{}<>[]:,;/.-".contains(&b) {
            self.pos += 1;
            Tok::Punct(b)
        } else {
            return Err(start);
        };
        Ok(Some((tok, start..self.pos)))
    }
}

/// Why the walk ended early.
enum Halt {
    /// Syntax it does not follow; prost-reflect will explain.
    Stop(usize),
    /// A structural error it is sure about.
    Error(ScanError),
}

type Step<T> = Result<T, Halt>;

struct Walker<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Lexed<'a>>,
    last_end: usize,
    out: Scan,
}

/// Per-message bookkeeping for duplicate and oneof checks.
#[derive(Default)]
struct Frame {
    seen: HashSet<u32>,
    oneofs: HashMap<String, String>,
    counts: HashMap<u32, usize>,
    expanded_any: bool,
}

/// Walks `src` as a `desc` message.
pub(crate) fn scan(src: &str, desc: &MessageDescriptor) -> Result<Scan, ScanError> {
    let mut walker = Walker {
        lexer: Lexer { src, pos: 0 },
        peeked: None,
        last_end: 0,
        out: Scan::default(),
    };
    match walker.message(desc, "", None) {
        Ok(()) => Ok(walker.out),
        Err(Halt::Stop(offset)) => {
            walker.out.stopped_at = Some(offset);
            Ok(walker.out)
        }
        Err(Halt::Error(e)) => Err(e),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn closing(open: u8) -> u8 {
    if open == b'<' { b'>' } else { b'}' }
}

impl<'a> Walker<'a> {
    fn peek(&mut self) -> Step<Option<(Tok<'a>, Range<usize>)>> {
        let lexer = &mut self.lexer;
        let peeked = self.peeked.get_or_insert_with(|| lexer.next());
        peeked.clone().map_err(Halt::Stop)
    }

    fn bump(&mut self) {
        if let Some(Ok(Some((_, span)))) = self.peeked.take() {
            self.last_end = span.end;
        }
    }

    fn here(&mut self) -> usize {
        match self.peek() {
            Ok(Some((_, span))) => span.start,
            Ok(None) => self.lexer.src.len(),
            Err(Halt::Stop(o)) => o,
            Err(Halt::Error(e)) => e.offset,
        }
    }

    fn stop<T>(&mut self) -> Step<T> {
        Err(Halt::Stop(self.here()))
    }

    fn error<T>(offset: usize, field: String, kind: TextErrorKind) -> Step<T> {
        Err(Halt::Error(ScanError {
            offset,
            field: Some(field).filter(|f| !f.is_empty()),
            kind,
        }))
    }

    /// Fields of one message up to `close` (or the end of input at top level).
    fn message(&mut self, desc: &MessageDescriptor, prefix: &str, close: Option<u8>) -> Step<()> {
        let mut frame = Frame::default();
        loop {
            match self.peek()? {
                None if close.is_none() => return Ok(()),
                Some((Tok::Punct(c), _)) if Some(c) == close => {
                    self.bump();
                    return Ok(());
                }
                Some((Tok::Ident(name), span)) => {
                    self.bump();
                    self.field(desc, prefix, &mut frame, name, span)?;
                }
                Some((Tok::Punct(b'['), span)) => {
                    self.bump();
                    self.expansion(desc, prefix, &mut frame, span.start)?;
                }
                _ => return self.stop(),
            }
            if let Some((Tok::Punct(b',' | b';'), _)) = self.peek()? {
                self.bump();
            }
        }
    }

    fn field(
        &mut self,
        desc: &MessageDescriptor,
        prefix: &str,
        frame: &mut Frame,
        name: &str,
        span: Range<usize>,
    ) -> Step<()> {
        let path = join(prefix, name);
        let Some(field) = desc.get_field_by_name(name) else {
            let kind = TextErrorKind::UnknownField {
                name: name.to_owned(),
                message: desc.full_name().to_owned(),
            };
            return Self::error(span.start, path, kind);
        };
        let repeated = field.cardinality() == Cardinality::Repeated;
        if !repeated {
            self.check_singular(frame, &field, &path, span.start)?;
        }
        let index = self.out.fields.len();
        self.out.fields.push((path.clone(), span.start..usize::MAX));
        let counter = frame.counts.entry(field.number()).or_default();
        let element_path = |i: usize| {
            if repeated {
                format!("{path}[{i}]")
            } else {
                path.clone()
            }
        };
        match self.peek()? {
            Some((Tok::Punct(b':'), _)) => self.bump(),
            Some((Tok::Punct(b'{' | b'<'), _)) => {}
            Some((Tok::Punct(b'['), span)) if field.is_list() && is_message(&field) => {
                self.out.colon_insertions.push(span.start);
            }
            _ => return self.stop(),
        }
        if repeated && matches!(self.peek()?, Some((Tok::Punct(b'['), _))) {
            self.bump();
            if let Some((Tok::Punct(b']'), _)) = self.peek()? {
                self.bump();
            } else {
                loop {
                    let i = *counter;
                    *counter += 1;
                    self.value(&field, &element_path(i))?;
                    match self.peek()? {
                        Some((Tok::Punct(b','), _)) => self.bump(),
                        Some((Tok::Punct(b']'), _)) => {
                            self.bump();
                            break;
                        }
                        _ => return self.stop(),
                    }
                }
            }
        } else {
            let i = *counter;
            *counter += 1;
            self.value(&field, &element_path(i))?;
        }
        if let Some(entry) = self.out.fields.get_mut(index) {
            entry.1.end = self.last_end;
        }
        Ok(())
    }

    fn check_singular(
        &mut self,
        frame: &mut Frame,
        field: &FieldDescriptor,
        path: &str,
        offset: usize,
    ) -> Step<()> {
        let is_any_payload = field.parent_message().full_name() == "google.protobuf.Any";
        if !frame.seen.insert(field.number()) || (is_any_payload && frame.expanded_any) {
            let kind = TextErrorKind::DuplicateField {
                name: field.name().to_owned(),
            };
            return Self::error(offset, path.to_owned(), kind);
        }
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
            if let Some(first) = frame.oneofs.get(oneof.name()) {
                let kind = TextErrorKind::OneofConflict {
                    oneof: oneof.name().to_owned(),
                    first: first.clone(),
                    second: field.name().to_owned(),
                };
                return Self::error(offset, path.to_owned(), kind);
            }
            frame
                .oneofs
                .insert(oneof.name().to_owned(), field.name().to_owned());
        }
        Ok(())
    }

    /// `[type.googleapis.com/pkg.Type] { ... }` after the opening `[`.
    fn expansion(
        &mut self,
        desc: &MessageDescriptor,
        prefix: &str,
        frame: &mut Frame,
        start: usize,
    ) -> Step<()> {
        let mut name = String::new();
        loop {
            match self.peek()? {
                Some((Tok::Ident(s), _)) => name.push_str(s),
                Some((Tok::Punct(c @ (b'.' | b'/')), _)) => name.push(char::from(c)),
                Some((Tok::Punct(b']'), _)) => {
                    self.bump();
                    break;
                }
                _ => return self.stop(),
            }
            self.bump();
        }
        let path = join(prefix, &format!("[{name}]"));
        let Some((_, type_name)) = name.rsplit_once('/') else {
            let kind = TextErrorKind::BadExpansion {
                name,
                message: desc.full_name().to_owned(),
            };
            return Self::error(start, path, kind);
        };
        if desc.full_name() != "google.protobuf.Any" {
            let kind = TextErrorKind::BadExpansion {
                name: name.clone(),
                message: desc.full_name().to_owned(),
            };
            return Self::error(start, path, kind);
        }
        let Some(inner) = desc.parent_pool().get_message_by_name(type_name) else {
            return Self::error(
                start,
                path,
                TextErrorKind::UnknownAnyType { type_url: name },
            );
        };
        if frame.expanded_any || !frame.seen.is_empty() {
            let kind = TextErrorKind::DuplicateField {
                name: format!("[{name}]"),
            };
            return Self::error(start, path, kind);
        }
        frame.expanded_any = true;
        let index = self.out.fields.len();
        self.out.fields.push((path.clone(), start..usize::MAX));
        if let Some((Tok::Punct(b':'), _)) = self.peek()? {
            self.bump();
        }
        self.message_value(&inner, &path)?;
        if let Some(entry) = self.out.fields.get_mut(index) {
            entry.1.end = self.last_end;
        }
        Ok(())
    }

    fn message_value(&mut self, desc: &MessageDescriptor, path: &str) -> Step<()> {
        match self.peek()? {
            Some((Tok::Punct(open @ (b'{' | b'<')), _)) => {
                self.bump();
                self.message(desc, path, Some(closing(open)))
            }
            _ => self.stop(),
        }
    }

    /// One value of `field` (one element, for repeated fields).
    fn value(&mut self, field: &FieldDescriptor, path: &str) -> Step<()> {
        if let Kind::Message(desc) = field.kind() {
            return self.message_value(&desc, path);
        }
        if let Some((Tok::Punct(b'-'), _)) = self.peek()? {
            self.bump();
        }
        match self.peek()? {
            Some((Tok::Str, _)) => {
                while let Some((Tok::Str, _)) = self.peek()? {
                    self.bump();
                }
                Ok(())
            }
            Some((Tok::Ident(_) | Tok::Scalar, _)) => {
                self.bump();
                Ok(())
            }
            _ => self.stop(),
        }
    }
}

fn is_message(field: &FieldDescriptor) -> bool {
    matches!(field.kind(), Kind::Message(_))
}
