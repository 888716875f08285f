//! Integration tests of the data contract: one binary, one module per concern.

mod bos;
mod chat;
mod crash;
mod errors;
mod helpers;
mod interop;
mod parts;
mod roundtrip;
