//! The sans-IO protocol core: GSSENCRequest negotiation and the packet layer
//! of PostgreSQL's GSSAPI session encryption, over byte buffers only.

pub mod accept;
pub mod context;
pub mod frame;
pub mod handshake;
pub mod negotiate;
pub mod session;
pub mod startup;

pub use accept::Acceptance;
pub use context::{Granted, SecurityContext, Step};
pub use frame::{FrameDecoder, GSSENC_REQUEST, LENGTH_WORD_SIZE, MAX_HANDSHAKE_PACKET_SIZE, MAX_PACKET_SIZE};
pub use negotiate::{Negotiation, NegotiationStatus};
pub use session::Session;
pub use startup::{parse_startup, StartupKind};

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
