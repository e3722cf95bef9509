//! The components that ship inside the server binary, built from `plugins/` by `build.rs`.

/// `grpc-forwarder`: Fleetspeak's `GRPC` service (config: upstream name, default `default`).
pub const GRPC_FORWARDER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plugins/grpc_forwarder.wasm"));
/// `message-saver`: one file per message in a granted directory (config: its guest path).
pub const MESSAGE_SAVER: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plugins/message_saver.wasm"));
/// `echo`: replies to the sending client service with the same payload.
pub const ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/echo.wasm"));

/// A bundled component by name (`grpc-forwarder`, `message-saver`, `echo`).
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    match name {
        "grpc-forwarder" => Some(GRPC_FORWARDER),
        "message-saver" => Some(MESSAGE_SAVER),
        "echo" => Some(ECHO),
        _ => None,
    }
}

/// Directory holding every component `plugins/` built (test plugins included), for tests.
pub const PLUGINS_DIR: &str = env!("FLEETGATE_PLUGINS_WASM_DIR");
