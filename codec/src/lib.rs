//! suyuan-codec: everything that turns Handle bytes and JSON into typed values and back.
//!
//! Sans-IO, like quinn-proto and hickory-proto: no sockets, no tokio, no clock and no
//! randomness of its own (time and an RNG are passed in). The server (`suyuan-resolver`), the
//! Handle client (`suyuan-federation`) and the CLI all build on it, so the bytes they exchange,
//! and the bytes they sign, come from one place.
//!
//! - [`handle`]: identifiers (`prefix/suffix`, `0.NA/` prefix handles, case folding).
//! - [`value`], [`site`]: handle values and the typed views of the standard types.
//! - [`message`]: the RFC 3652 envelope, header, bodies, request digests and credentials.
//! - [`framing`]: TCP framing and UDP fragmentation.
//! - [`auth`]: challenge answers, HS_SIGNED and HS_MAC credentials, key conversions.
//! - [`fedframe`]: the frames nodes exchange on QUIC streams besides Handle messages.
//! - [`scheme`]: identifier schemes besides handles (OID, GS1 keys), normalised for the alias index.
//! - [`json`], [`time`]: the Handle.Net REST API's JSON forms and its timestamps.
//!
//! Every decoder distrusts its input: lengths and counts are checked against what is left
//! before anything is allocated, and failures are a [`DecodeError`], never a panic.

pub mod auth;
pub mod error;
pub mod fedframe;
pub mod formula;
pub mod framing;
pub mod fuzzing;
pub mod handle;
pub mod json;
pub mod message;
pub mod note;
pub mod scheme;
pub mod session;
pub mod site;
pub mod time;
pub mod tlog;
pub mod trust;
pub mod value;
pub mod wire;

pub use error::{DecodeError, HandleError};
pub use handle::Handle;
pub use message::{Body, Envelope, Header, Message};
pub use value::HandleValue;
