//! Protobuf text format, as Go's `prototext` (protobuf-go 1.36) accepts it.
//!
//! Parsing goes: UTF-8 check → `scan` (positions, Go's strictness on
//! duplicates/oneofs/unknown fields/`Any` types, colon insertion for
//! `services [ ... ]`) → prost-reflect's parser into a `DynamicMessage` of the
//! descriptor compiled from `proto/` → transcoding to the prost type.
//!
//! Accepted, as in Go: `name: value`; optional colon before messages; `{}`
//! and `<>`; `#` comments; `"..."`/`'...'` strings with C escapes, octal,
//! `\x`, `\u`, `\U`, adjacent-literal concatenation; `,`/`;` separators; list
//! syntax (the colon is optional for message lists, required for scalars); booleans
//! `true`/`false`/`True`/`False`/`t`/`f` and 0/1 in any integer notation;
//! decimal, octal and hex integers; `[type.googleapis.com/pkg.Type] { ... }`
//! `Any` expansion and the raw `type_url`/`value` form; an empty file.
//!
//! Known differences from Go (none occurs in files Fleetspeak, GRR or a
//! person writes; each is pinned by a test):
//! * The type-URL prefix of an `Any` expansion must be dot-separated
//!   identifiers followed by exactly one `/` (`type.googleapis.com/…`); Go
//!   also accepts other URL characters (`-`, `~`, `%`, more `/`).
//! * A value that is neither valid in Go nor here can fail at a different
//!   first position (Go and prost-reflect check in a different order).
//! * Error texts for syntax errors are prost-reflect's, not Go's; positions
//!   and field paths are ours.

mod scan;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::error::{ConfigError, TextErrorKind, TextFormatError};
use fleetgate_pb::fleetspeak::components;
use fleetgate_pb::fleetspeak::server::ServerConfig;

/// The descriptor pool of every message under `proto/`, decoded once.
pub fn descriptor_pool() -> Result<&'static DescriptorPool, ConfigError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(fleetgate_pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ConfigError::Internal(format!("descriptor set: {e}")))
}

/// Parses a `server.components.config` (`fleetspeak.components.Config`).
/// `file` only names the source in errors.
pub fn parse_components(file: &Path, text: &[u8]) -> Result<components::Config, ConfigError> {
    parse(file, text, "fleetspeak.components.Config")
}

/// Parses a `server.services.config` (`fleetspeak.server.ServerConfig`).
/// `file` only names the source in errors.
pub fn parse_services(file: &Path, text: &[u8]) -> Result<ServerConfig, ConfigError> {
    parse(file, text, "fleetspeak.server.ServerConfig")
}

/// Parses `text` as the message `full_name` of [`descriptor_pool`] and
/// transcodes it to `T`, which must be the prost type of that message.
pub fn parse<T: prost::Message + Default>(
    file: &Path,
    text: &[u8],
    full_name: &str,
) -> Result<T, ConfigError> {
    let desc = descriptor_pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| ConfigError::Internal(format!("message {full_name} not in descriptor")))?;
    let dynamic = parse_dynamic(file, text, &desc)?;
    dynamic
        .transcode_to::<T>()
        .map_err(|e| ConfigError::Internal(format!("transcoding {full_name}: {e}")))
}

/// Parses `text` into a [`DynamicMessage`] of `desc`.
pub fn parse_dynamic(
    file: &Path,
    text: &[u8],
    desc: &MessageDescriptor,
) -> Result<DynamicMessage, ConfigError> {
    let src = std::str::from_utf8(text).map_err(|e| {
        let valid = text.get(..e.valid_up_to()).unwrap_or_default();
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        located(file, valid, valid.len(), None, TextErrorKind::InvalidUtf8)
    })?;
    let scan = scan::scan(src, desc).map_err(|e| located(file, src, e.offset, e.field, e.kind))?;
    let patched = insert_colons(src, &scan.colon_insertions);
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        DynamicMessage::parse_text_format(desc.clone(), &patched)
    }));
    match parsed {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(e)) => {
            let (variant, span) = describe(&e);
            let offset = span
                .map(|o| original_offset(o, &scan.colon_insertions))
                .or(scan.stopped_at)
                .unwrap_or(src.len());
            let field = scan.field_at(offset).map(str::to_owned);
            let kind = match variant.as_str() {
                "IntegerValueOutOfRange"
                | "InvalidUtf8String"
                | "InvalidStringEscape"
                | "InvalidStringCharacters"
                | "EnumValueNotFound" => TextErrorKind::InvalidValue(e.to_string()),
                _ => TextErrorKind::Syntax(e.to_string()),
            };
            Err(located(file, src, offset, field, kind).into())
        }
        Err(_) => {
            let offset = scan.stopped_at.unwrap_or(src.len());
            let kind = TextErrorKind::Syntax("parser failure".to_owned());
            Err(located(file, src, offset, None, kind).into())
        }
    }
}

/// Variant name and start offset of a prost-reflect parse error.
///
/// `ParseError` keeps its kind and span private unless prost-reflect's
/// `miette` feature is on; its derived `Debug` output
/// (`ParseError { kind: Variant { …, span: 12..25 } }`) carries both. The
/// span is the last `span: ` in that text because it is the last field of
/// every variant and string contents are escaped. If the format ever
/// changes, positions fall back to where `scan` stopped (tested in
/// `tests::describe_reads_prost_reflect_errors`).
fn describe(e: &prost_reflect::text_format::ParseError) -> (String, Option<usize>) {
    let debug = format!("{e:?}");
    let variant = debug
        .split_once("kind: ")
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .unwrap_or_default();
    let span = debug.rfind("span: ").and_then(|i| {
        let rest = debug.get(i + "span: ".len()..)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    (variant, span)
}

fn insert_colons(src: &str, at: &[usize]) -> String {
    let mut out = String::with_capacity(src.len() + at.len());
    let mut last = 0;
    for &offset in at {
        out.push_str(src.get(last..offset).unwrap_or_default());
        out.push(':');
        last = offset;
    }
    out.push_str(src.get(last..).unwrap_or_default());
    out
}

/// Maps an offset in the colon-patched text back to the original.
fn original_offset(patched: usize, insertions: &[usize]) -> usize {
    let mut offset = patched;
    for (i, &at) in insertions.iter().enumerate() {
        // The i-th inserted colon sits at `at + i` in the patched text.
        if at + i < patched {
            offset -= 1;
        } else {
            break;
        }
    }
    offset
}

/// Builds an error at byte `offset` of `src` (1-based line and column).
fn located(
    file: &Path,
    src: &str,
    offset: usize,
    field: Option<String>,
    kind: TextErrorKind,
) -> TextFormatError {
    let (line, column) = line_column(src, offset);
    TextFormatError {
        file: file.to_path_buf(),
        line,
        column,
        field,
        kind,
    }
}

/// 1-based line and column (in characters) of byte `offset`.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let before = src.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
