//! Client configuration files the Go `fleetspeak-client` reads: `fleetspeak.client.generic.Config`
//! in protobuf text format, plus the configuration directory beside it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where a generated client configuration lives.
#[derive(Debug, Clone)]
pub struct ClientLayout {
    /// The file to pass as `fleetspeak-client -config`.
    pub config_file: PathBuf,
    pub configuration_directory: PathBuf,
    pub state_file: PathBuf,
}

impl ClientLayout {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            config_file: dir.join("client.config"),
            configuration_directory: dir.join("config"),
            state_file: dir.join("client.state"),
        }
    }
}

/// What goes into the client config.
#[derive(Debug, Clone)]
pub struct ClientSettings<'a> {
    pub ca_pem: &'a str,
    pub servers: &'a [String],
    pub labels: &'a [String],
    pub streaming: bool,
}

/// Writes the config file and creates the directories the client needs (`textservices/` for
/// unsigned service configs, the state file's parent).
pub fn write(layout: &ClientLayout, s: &ClientSettings<'_>) -> Result<()> {
    fs::create_dir_all(layout.configuration_directory.join("textservices"))
        .with_context(|| format!("creating {}", layout.configuration_directory.display()))?;
    fs::create_dir_all(layout.configuration_directory.join("services"))?;
    if let Some(parent) = layout.state_file.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&layout.config_file, render(layout, s))
        .with_context(|| format!("writing {}", layout.config_file.display()))
}

pub fn render(layout: &ClientLayout, s: &ClientSettings<'_>) -> String {
    let mut out = format!("trusted_certs: {}\n", quote(s.ca_pem));
    for server in s.servers {
        out += &format!("server: {}\n", quote(server));
    }
    for label in s.labels.iter().filter(|l| !l.is_empty()) {
        out += &format!("client_label: {}\n", quote(label));
    }
    out += &format!(
        "filesystem_handler {{\n  configuration_directory: {}\n  state_file: {}\n}}\nstreaming: {}\n",
        quote(&layout.configuration_directory.to_string_lossy()),
        quote(&layout.state_file.to_string_lossy()),
        s.streaming
    );
    out
}

/// A protobuf text-format string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c if (c as u32) < 0x20 => out += &format!("\\{:03o}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_text_format_needs() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn rendered_config_has_every_field() {
        let layout = ClientLayout::in_dir(Path::new("/tmp/x"));
        let text = render(
            &layout,
            &ClientSettings {
                ca_pem: "PEM\n",
                servers: &["localhost:1".into()],
                labels: &["l1".into()],
                streaming: true,
            },
        );
        assert!(text.contains("trusted_certs: \"PEM\\n\""));
        assert!(text.contains("server: \"localhost:1\""));
        assert!(text.contains("client_label: \"l1\""));
        assert!(text.contains("configuration_directory: \"/tmp/x/config\""));
        assert!(text.contains("streaming: true"));
    }
}
