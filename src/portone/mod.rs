//! PortOne: one resilient HTTP layer ([`http`]) shared by every API, and each API's protocol on
//! top of it (V1 today: `v1`). The service sees only [`crate::service::IdentityProvider`].

mod circuit;
pub mod http;
pub mod v1;

pub use circuit::CircuitSettings;
pub use http::HttpSettings;
