//! The two hot-reload test plugins, `tag-a` and `tag-b`, are this service with a different tag.
//!
//! Each processed message is recorded in a granted directory as one file named by the message
//! ID (hex) holding the tag of the build that processed it, created exclusively: a second
//! processing of the same message (by either build) appends its tag to `<id>.dup` instead, so a
//! test can check "exactly once, by exactly one build" from the files alone.
//!
//! Config (UTF-8): the directory's guest path (empty means `/tags`), optionally followed by a
//! newline and a mode that makes `init` misbehave, for the broken-reload tests: `fail-init`
//! (returns an error) or `trap-init` (panics, a trap since plugins abort on panic).
//!
//! Both builds carry [`PAD_BYTES`] of non-zero data, so they are realistic 2 MiB components
//! for measuring reload time.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::marker::PhantomData;

use fleetgate_sdk::{Message, ProcessError, Service};

/// Size of the data section that pads each build.
pub const PAD_BYTES: usize = 2 << 20;
const PAD_BYTE: u8 = 0xA5;
static PAD: [u8; PAD_BYTES] = [PAD_BYTE; PAD_BYTES];

/// What distinguishes one build from the other.
pub trait Tag: 'static {
    const TAG: &'static str;
}

pub struct Tagger<T: Tag> {
    dir: String,
    _tag: PhantomData<T>,
}

impl<T: Tag> Service for Tagger<T> {
    fn init(config: &[u8]) -> Result<Self, String> {
        let config = std::str::from_utf8(config).map_err(|e| format!("config: {e}"))?;
        let (dir, mode) = config.split_once('\n').unwrap_or((config, ""));
        match mode.trim() {
            "" => {}
            "fail-init" => return Err(format!("tag-{}: init asked to fail", T::TAG)),
            "trap-init" => panic!("tag-{}: init asked to trap", T::TAG),
            other => return Err(format!("unknown mode {other:?}")),
        }
        let dir = dir.trim().trim_end_matches('/');
        Ok(Tagger {
            dir: if dir.is_empty() { "/tags" } else { dir }.to_owned(),
            _tag: PhantomData,
        })
    }

    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        // Read the padding so the data section cannot be optimised away.
        let i = usize::from(msg.id.first().copied().unwrap_or(0));
        if std::hint::black_box(&PAD)[i] != PAD_BYTE {
            return Err(ProcessError::permanent("data section corrupted"));
        }
        if msg.id.is_empty() {
            return Err(ProcessError::permanent("message has no ID"));
        }
        let path = format!("{}/{}", self.dir, msg.id_hex());
        let write = |path: &str, create_new: bool| {
            let mut o = OpenOptions::new();
            if create_new {
                o.write(true).create_new(true);
            } else {
                o.append(true).create(true);
            }
            o.open(path)
                .and_then(|mut f| f.write_all(T::TAG.as_bytes()))
        };
        match write(&path, true) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => write(&format!("{path}.dup"), false)
                .map_err(|e| ProcessError::temporary(format!("{path}.dup: {e}"))),
            Err(e) => Err(ProcessError::temporary(format!("{path}: {e}"))),
        }
    }
}
