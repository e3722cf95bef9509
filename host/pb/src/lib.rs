//! Protobuf and gRPC code generated from `proto/`.
//!
//! Fleetspeak packages keep their proto package layout
//! (`fleetspeak.server` → [`fleetspeak::server`], …), so `Any` type URLs and
//! gRPC paths are byte-identical to Fleetspeak's. Fleetgate's own extensions
//! live under [`fleetgate`].
#![forbid(unsafe_code)]

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    rustdoc::all
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
}

pub use generated::{fleetgate, fleetspeak};

/// Well-known protobuf types (`Any`, `Timestamp`, `Duration`, …).
pub use prost_types as wkt;

/// Encoded `google.protobuf.FileDescriptorSet` of every file under `proto/`
/// plus its imports (including the well-known types). Suitable for
/// `prost_reflect::DescriptorPool::decode`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Packing and unpacking of `google.protobuf.Any`, Fleetspeak style.
pub mod any {
    use std::fmt;

    /// Why [`unpack`] failed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum UnpackError {
        /// The full message name in the type URL differs from the expected one.
        TypeMismatch {
            /// Expected full message name (e.g. `fleetspeak.MessageAckData`).
            expected: String,
            /// The `type_url` found in the `Any`.
            found: String,
        },
        /// The payload could not be decoded.
        Decode(prost::DecodeError),
    }

    impl fmt::Display for UnpackError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::TypeMismatch { expected, found } => {
                    write!(
                        f,
                        "Any type mismatch: expected {expected}, found type_url {found:?}"
                    )
                }
                Self::Decode(e) => write!(f, "Any payload decode error: {e}"),
            }
        }
    }

    impl std::error::Error for UnpackError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            match self {
                Self::TypeMismatch { .. } => None,
                Self::Decode(e) => Some(e),
            }
        }
    }

    /// Full message name of a type URL: the part after the last `/`.
    pub fn type_name_of(type_url: &str) -> &str {
        type_url.rsplit_once('/').map_or(type_url, |(_, n)| n)
    }

    /// Packs `m` into an `Any` with `type.googleapis.com/<full.name>`.
    pub fn pack<M: prost::Name>(m: &M) -> prost_types::Any {
        prost_types::Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    /// Unpacks an `Any`, checking only the full message name after the last
    /// `/` of `type_url` (like Go's `anypb.UnmarshalTo`).
    pub fn unpack<M: prost::Name + Default>(any: &prost_types::Any) -> Result<M, UnpackError> {
        let expected = M::full_name();
        if type_name_of(&any.type_url) != expected {
            return Err(UnpackError::TypeMismatch {
                expected,
                found: any.type_url.clone(),
            });
        }
        M::decode(any.value.as_slice()).map_err(UnpackError::Decode)
    }

    /// True if `any` holds a message of type `M` (by full name).
    pub fn is<M: prost::Name>(any: &prost_types::Any) -> bool {
        type_name_of(&any.type_url) == M::full_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message as _, Name as _};

    #[test]
    fn type_urls() {
        assert_eq!(
            fleetspeak::MessageAckData::type_url(),
            "type.googleapis.com/fleetspeak.MessageAckData"
        );
        assert_eq!(
            fleetspeak::monitoring::ResourceUsageData::type_url(),
            "type.googleapis.com/fleetspeak.monitoring.ResourceUsageData"
        );
        assert_eq!(
            fleetspeak::grpcservice::Config::type_url(),
            "type.googleapis.com/fleetspeak.grpcservice.Config"
        );
        assert_eq!(
            fleetspeak::client::generic::Config::full_name(),
            "fleetspeak.client.generic.Config"
        );
        assert_eq!(
            fleetspeak::daemonservice::config::StdParams::full_name(),
            "fleetspeak.daemonservice.Config.StdParams"
        );
        assert_eq!(
            fleetgate::admin::v1::PluginStatus::type_url(),
            "type.googleapis.com/fleetgate.admin.v1.PluginStatus"
        );
    }

    #[test]
    fn pack_unpack_roundtrip() {
        let ack = fleetspeak::MessageAckData {
            message_ids: vec![vec![1u8; 32], vec![2u8; 32]],
        };
        let any = any::pack(&ack);
        assert_eq!(
            any.type_url,
            "type.googleapis.com/fleetspeak.MessageAckData"
        );
        let back: fleetspeak::MessageAckData = any::unpack(&any).expect("unpack");
        assert_eq!(back, ack);

        // Only the name after the last '/' matters.
        let other_prefix = prost_types::Any {
            type_url: "example.com/x/fleetspeak.MessageAckData".into(),
            value: any.value.clone(),
        };
        assert!(any::unpack::<fleetspeak::MessageAckData>(&other_prefix).is_ok());

        // Wrong name fails.
        assert!(matches!(
            any::unpack::<fleetspeak::MessageErrorData>(&any),
            Err(any::UnpackError::TypeMismatch { .. })
        ));
    }

    #[test]
    fn allowed_messages_is_map() {
        let mut cd = fleetspeak::ContactData::default();
        let m: &mut std::collections::HashMap<String, u64> = &mut cd.allowed_messages;
        m.insert("GRR".into(), 0);
        let bytes = cd.encode_to_vec();
        let back = fleetspeak::ContactData::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back.allowed_messages.get("GRR"), Some(&0));
    }

    #[test]
    fn descriptor_set_contents() {
        let fds = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("decode descriptor set");
        let mut names = Vec::new();
        for f in &fds.file {
            let pkg = f.package();
            for m in &f.message_type {
                names.push(format!("{pkg}.{}", m.name()));
            }
        }
        for want in [
            "fleetspeak.components.Config",
            "fleetspeak.grpcservice.Config",
            "fleetspeak.Message",
            "google.protobuf.Any",
            "google.protobuf.Duration",
            "google.protobuf.Timestamp",
        ] {
            assert!(names.iter().any(|n| n == want), "missing {want}");
        }
    }

    #[test]
    fn grpc_service_names() {
        use tonic::server::NamedService;
        assert_eq!(
            fleetspeak::server::admin_server::AdminServer::<()>::NAME,
            "fleetspeak.server.Admin"
        );
        assert_eq!(
            fleetspeak::grpcservice::processor_server::ProcessorServer::<()>::NAME,
            "fleetspeak.grpcservice.Processor"
        );
        assert_eq!(
            fleetgate::admin::v1::fleetgate_admin_server::FleetgateAdminServer::<()>::NAME,
            "fleetgate.admin.v1.FleetgateAdmin"
        );
        // Client types exist under the expected paths.
        let _ = std::any::type_name::<
            fleetspeak::server::admin_client::AdminClient<tonic::transport::Channel>,
        >();
        let _ = std::any::type_name::<
            fleetspeak::grpcservice::processor_client::ProcessorClient<tonic::transport::Channel>,
        >();
    }

    #[test]
    fn text_format_with_any_expansion() {
        let pool = prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("pool");
        let desc = pool
            .get_message_by_name("fleetspeak.server.ServerConfig")
            .expect("ServerConfig");
        let text = r#"
            services {
              name: "GRR"
              factory: "GRPC"
              config {
                [type.googleapis.com/fleetspeak.grpcservice.Config] {
                  target: "localhost:11111"
                  insecure: true
                }
              }
            }
            broadcast_poll_time { seconds: 1 }
        "#;
        let dynm = prost_reflect::DynamicMessage::parse_text_format(desc, text).expect("parse");
        let cfg: fleetspeak::server::ServerConfig = dynm.transcode_to().expect("transcode");
        let svc = &cfg.services[0];
        assert_eq!(svc.factory, "GRPC");
        let any = svc.config.as_ref().expect("config");
        let g: fleetspeak::grpcservice::Config = any::unpack(any).expect("unpack");
        assert_eq!(g.target, "localhost:11111");
        assert!(g.insecure);
    }
}
