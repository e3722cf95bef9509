//! Writing protobuf text format: one field per line, repeated fields repeated, nested messages
//! indented — the shape Go's `prototext` (multiline) and Python's `text_format` print, which
//! every reader of these files (Go, GRR's Python, our parser, `grep`) accepts.

use anyhow::{Context, Result, anyhow};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, Value};

use crate::clientconf::quote;

/// Prints a prost message of the type named `full_name`.
pub fn print<T: prost::Message>(message: &T, full_name: &str) -> Result<String> {
    let pool = fleetgate_config::textproto::descriptor_pool().map_err(|e| anyhow!("{e}"))?;
    let desc = descriptor(pool, full_name)?;
    let mut dynamic = DynamicMessage::new(desc);
    dynamic
        .transcode_from(message)
        .with_context(|| format!("converting {full_name} for printing"))?;
    let mut out = String::new();
    write_message(&mut out, &dynamic, 0);
    Ok(out)
}

fn descriptor(pool: &DescriptorPool, name: &str) -> Result<prost_reflect::MessageDescriptor> {
    pool.get_message_by_name(name)
        .ok_or_else(|| anyhow!("message {name} is not in the descriptor set"))
}

fn write_message(out: &mut String, message: &DynamicMessage, indent: usize) {
    for (field, value) in message.fields() {
        let values: Vec<&Value> = match value {
            Value::List(items) => items.iter().collect(),
            single => vec![single],
        };
        for v in values {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(field.name());
            match v {
                Value::Message(m) => {
                    out.push_str(" {\n");
                    write_message(out, m, indent + 2);
                    out.extend(std::iter::repeat_n(' ', indent));
                    out.push_str("}\n");
                }
                scalar => {
                    out.push_str(": ");
                    out.push_str(&scalar_text(scalar, &field.kind()));
                    out.push('\n');
                }
            }
        }
    }
}

fn scalar_text(value: &Value, kind: &Kind) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Bytes(b) => quote_bytes(b),
        Value::EnumNumber(n) => kind
            .as_enum()
            .and_then(|e| e.get_value(*n))
            .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
        Value::Bool(b) => b.to_string(),
        Value::I32(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::U32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F32(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        // Messages, lists and maps are handled by the caller.
        other => format!("{other:?}"),
    }
}

/// Bytes as a string literal: printable ASCII as is, everything else octal.
fn quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out += "\\\"",
            b'\\' => out += "\\\\",
            0x20..=0x7e => out.push(char::from(b)),
            _ => out += &format!("\\{b:03o}"),
        }
    }
    out + "\""
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fleetgate_pb::fleetspeak::client::generic;
    use fleetgate_pb::fleetspeak::components;

    use super::*;

    #[test]
    fn components_round_trip_through_our_parser() {
        let config = components::Config {
            mysql_data_source_name: "u:p@tcp(db:3306)/fs".into(),
            https_config: Some(components::HttpsConfig {
                listen_address: "0.0.0.0:4443".into(),
                certificates: "-----BEGIN CERTIFICATE-----\nAB\"C\n-----END CERTIFICATE-----\n"
                    .into(),
                disable_streaming: true,
                ..Default::default()
            }),
            admin_config: Some(components::AdminConfig::default()),
            ..Default::default()
        };
        let text = print(&config, "fleetspeak.components.Config").expect("print");
        assert!(
            text.contains("https_config {\n  listen_address: \"0.0.0.0:4443\"\n"),
            "{text}"
        );
        assert!(text.contains("admin_config {\n}\n"), "{text}");
        let back: components::Config = fleetgate_config::textproto::parse(
            Path::new("t"),
            text.as_bytes(),
            "fleetspeak.components.Config",
        )
        .expect("parse back");
        assert_eq!(back, config);
    }

    #[test]
    fn repeated_fields_are_repeated_lines() {
        let config = generic::Config {
            server: vec!["a:1".into(), "b:2".into()],
            client_label: vec![String::new()],
            ..Default::default()
        };
        let text = print(&config, "fleetspeak.client.generic.Config").expect("print");
        assert_eq!(
            text,
            "server: \"a:1\"\nserver: \"b:2\"\nclient_label: \"\"\n"
        );
    }

    #[test]
    fn bytes_are_escaped() {
        assert_eq!(quote_bytes(b"a\"\x00\xff"), "\"a\\\"\\000\\377\"");
    }
}
