//! Identifiers. Each travels as raw bytes in protobuf fields and as lowercase hex in logs and the CLI.

use std::fmt;

use sha2::{Digest, Sha256};

/// An identifier of the wrong length or with bad hex, naming which kind of ID was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be {expected} bytes, got {got}")]
    Length {
        kind: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{kind} is not valid hex: {text:?}")]
    Hex { kind: &'static str, text: String },
}

macro_rules! fixed_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub const fn new(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Parses raw bytes from the wire. Empty input is "no ID" (`Ok(None)`), as in the original.
            pub fn from_wire(bytes: &[u8]) -> Result<Option<Self>, IdError> {
                if bytes.is_empty() {
                    return Ok(None);
                }
                Self::from_bytes(bytes).map(Some)
            }

            /// Parses exactly `LEN` raw bytes.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::Length {
                    kind: $kind,
                    expected: $len,
                    got: bytes.len(),
                })?;
                Ok(Self(arr))
            }

            /// Parses hex, upper or lower case.
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(text).map_err(|_| IdError::Hex { kind: $kind, text: text.to_owned() })?;
                Self::from_bytes(&bytes)
            }

            pub fn random() -> Self {
                Self(rand::random())
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

fixed_id!(
    /// 8 bytes: the first 8 bytes of SHA-256 over the client's DER SubjectPublicKeyInfo.
    ClientId, 8, "client ID"
);
fixed_id!(
    /// 32 bytes. Derived for client messages, random for server-made ones.
    MessageId, 32, "message ID"
);
fixed_id!(
    /// 8 random bytes.
    BroadcastId, 8, "broadcast ID"
);

impl ClientId {
    /// The ID a key proves: SHA-256 of its SubjectPublicKeyInfo DER, first 8 bytes.
    pub fn from_public_key(spki_der: &[u8]) -> Self {
        let digest = Sha256::digest(spki_der);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }
}

impl MessageId {
    /// The deterministic ID of a message from a client, so that a re-sent message keeps its ID:
    /// SHA-256(client_id ‖ 0 ‖ source service ‖ 0 ‖ source_message_id).
    pub fn for_client_message(
        client: ClientId,
        source_service: &str,
        source_message_id: &[u8],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(client.0);
        h.update([0u8]);
        h.update(source_service.as_bytes());
        h.update([0u8]);
        h.update(source_message_id);
        Self(h.finalize().into())
    }

    /// The ID of fan-out copy `index` (1, 2, ...) of `original` made by the router, so a
    /// re-sent message fans out to the same IDs and its copies merge: SHA-256(original ‖ 0xff ‖
    /// index as 4 big-endian bytes). Copy 0 keeps `original`.
    pub fn for_routed_copy(original: MessageId, index: u32) -> Self {
        let mut h = Sha256::new();
        h.update(original.0);
        h.update([0xffu8]);
        h.update(index.to_be_bytes());
        Self(h.finalize().into())
    }
}

/// Identifies one recorded contact (a poll, or the start of a stream). Shown as lowercase hex of the
/// row number, as the original MySQL store does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ContactId(pub u64);

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

impl ContactId {
    pub fn from_hex(text: &str) -> Result<Self, IdError> {
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| IdError::Hex {
                kind: "contact ID",
                text: text.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_wire_id_is_none_and_wrong_length_is_an_error() {
        assert_eq!(ClientId::from_wire(&[]), Ok(None));
        assert!(matches!(
            ClientId::from_wire(&[1, 2, 3]),
            Err(IdError::Length {
                expected: 8,
                got: 3,
                ..
            })
        ));
        let id = ClientId::from_wire(&[0, 0, 0, 0, 0, 0, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(id.to_string(), "0000000000000001");
        assert_eq!(
            ClientId::from_hex("000000000000000A").unwrap().to_string(),
            "000000000000000a"
        );
    }

    #[test]
    fn client_message_id_is_the_documented_hash() {
        let client = ClientId::new([1; 8]);
        let id = MessageId::for_client_message(client, "svc", b"abc");
        let mut h = Sha256::new();
        h.update([1u8; 8]);
        h.update(b"\0svc\0abc");
        assert_eq!(id.as_bytes().as_slice(), h.finalize().as_slice());
    }

    #[test]
    fn contact_id_is_hex() {
        assert_eq!(ContactId(255).to_string(), "ff");
        assert_eq!(ContactId::from_hex("ff").unwrap(), ContactId(255));
    }
}
