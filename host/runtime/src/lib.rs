#![deny(unsafe_code)]
mod bindings;
