//! Write a Fleetgate server service as a WebAssembly component.
//!
//! Implement [`Service`] for a plain Rust type and export it with one macro:
//!
//! ```ignore
//! use fleetgate_sdk::{Message, ProcessError, Service};
//!
//! struct Hello;
//!
//! impl Service for Hello {
//!     fn init(_config: &[u8]) -> Result<Self, String> {
//!         Ok(Hello)
//!     }
//!     fn process(&self, msg: Message) -> Result<(), ProcessError> {
//!         fleetgate_sdk::log::info(&format!("got {}", msg.message_type));
//!         Ok(())
//!     }
//! }
//!
//! fleetgate_sdk::export_service!(Hello);
//! ```
//!
//! * [`bindings`]: the code `wit-bindgen` generates from `wit/plugin.wit` (fenced here; use the
//!   re-exports).
//! * [`messaging`], [`grpc`], [`log`], [`metrics`], [`clock`], [`clients`]: one module per host
//!   capability. Calling one the service's configuration did not grant is impossible: the host
//!   refuses to instantiate a component that imports it.
//! * [`proto`]: `Message` as protobuf bytes (`fleetspeak.Message`), for plugins that store it.
//!
//! The host instantiates a fresh component for every message and calls `init` before
//! `process`, so state does not survive between messages; keep it in a granted directory.

mod proto;

/// Generated bindings for the `fleetgate:plugin/service` world.
#[doc(hidden)]
#[allow(unsafe_code)] // generated FFI shims
pub mod bindings {
    wit_bindgen::generate!({
        world: "service",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_service_world",
        default_bindings_module: "::fleetgate_sdk::bindings",
    });
}

pub use bindings::fleetgate::plugin::types::{
    Address, ClientInfo, Entry, Label, Message, Payload, ProcessError, Timestamp,
};
pub use proto::encode_message;

/// A server-side service. The host calls [`Service::init`] with the plugin config from the
/// server's services configuration, then [`Service::process`] with one message.
pub trait Service: Sized + 'static {
    fn init(config: &[u8]) -> Result<Self, String>;
    fn process(&self, msg: Message) -> Result<(), ProcessError>;
}

/// Capability `messaging`: send messages to clients.
pub mod messaging {
    use super::bindings::fleetgate::plugin::messaging;

    /// Queues `msg` for `msg.destination.client_id`. The host sets the source.
    pub fn send_to_client(msg: &super::Message) -> Result<(), String> {
        messaging::send_to_client(msg)
    }
}

/// Capability `grpc`: forward to a gRPC `Processor` the host is connected to.
pub mod grpc {
    use super::bindings::fleetgate::plugin::grpc;

    pub fn forward(upstream: &str, msg: &super::Message) -> Result<(), super::ProcessError> {
        grpc::forward(upstream, msg)
    }
}

/// Capability `log`: lines in the server's log, tagged with the service name.
pub mod log {
    use super::bindings::fleetgate::plugin::log::{Level, log};

    pub fn debug(msg: &str) {
        log(Level::Debug, msg);
    }
    pub fn info(msg: &str) {
        log(Level::Info, msg);
    }
    pub fn warn(msg: &str) {
        log(Level::Warn, msg);
    }
    pub fn error(msg: &str) {
        log(Level::Error, msg);
    }
}

/// Capability `metrics`: counters and histograms kept per service by the host.
pub mod metrics {
    pub use super::bindings::fleetgate::plugin::metrics::{counter_add, histogram_observe};
}

/// Capability `clock`: the server's clock.
pub mod clock {
    pub use super::bindings::fleetgate::plugin::clock::now;
}

/// Capability `clients`: what the server knows about a client.
pub mod clients {
    pub use super::bindings::fleetgate::plugin::clients::info;
}

impl Message {
    /// A message for the client that sent `self`, addressed to the same client service, with
    /// the given payload. The host fills in the source and a fresh ID.
    pub fn reply(&self, message_type: &str, data: Option<Payload>) -> Message {
        Message {
            id: Vec::new(),
            source: Address {
                client_id: None,
                service_name: String::new(),
            },
            source_message_id: Vec::new(),
            destination: self.source.clone(),
            message_type: message_type.to_owned(),
            creation_time: None,
            data,
            validation_tags: Vec::new(),
            annotations: Vec::new(),
            is_blocklisted_source: false,
        }
    }

    /// The message ID as lowercase hex (empty for a message not yet stored).
    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl ProcessError {
    pub fn temporary(reason: impl Into<String>) -> Self {
        ProcessError::Temporary(reason.into())
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        ProcessError::Permanent(reason.into())
    }
}

#[doc(hidden)]
pub mod __private {
    use std::any::Any;
    use std::cell::RefCell;

    use super::{Message, ProcessError, Service};

    // A component instance is single-threaded; the state lives as long as the instance.
    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn init<T: Service>(config: &[u8]) -> Result<(), String> {
        let service = T::init(config)?;
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(service)));
        Ok(())
    }

    pub fn process<T: Service>(msg: Message) -> Result<(), ProcessError> {
        STATE.with(
            |s| match s.borrow().as_ref().and_then(|b| b.downcast_ref::<T>()) {
                Some(service) => service.process(msg),
                None => Err(ProcessError::Permanent("process called before init".into())),
            },
        )
    }
}

/// Exports a [`Service`] implementation as the component's `init` and `process`.
#[macro_export]
macro_rules! export_service {
    ($ty:ty) => {
        // The export shims are `unsafe` FFI glue generated by wit-bindgen.
        #[allow(unsafe_code)]
        mod __fleetgate_export {
            #[allow(unused_imports)]
            use super::*;

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn init(config: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$ty>(&config)
                }
                fn process(message: $crate::Message) -> ::std::result::Result<(), $crate::ProcessError> {
                    $crate::__private::process::<$ty>(message)
                }
            }

            $crate::bindings::__export_service_world!(Export with_types_in $crate::bindings);
        }
    };
}
