//! `fleetgate.plugin.v1.WasmConfig`, the `Any` a `WASM` service's `config` holds; generated from
//! `proto/fleetgate/plugin/v1/wasm.proto` so text-format services configs can name it.

pub use fleetgate_pb::fleetgate::plugin::v1::{WasmConfig, WasmPreopen, WasmUpstream};
