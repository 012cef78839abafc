//! PortOne: one resilient HTTP layer ([`http`]) shared by every API, and each API's protocol on
//! top of it (`v1`: tokens and certifications; `v2`: identity verifications). The service sees only [`crate::service::IdentityProvider`].

mod answer;
mod circuit;
pub(crate) mod http;
pub mod v1;
pub(crate) mod v2;

pub use circuit::CircuitSettings;
pub(crate) use http::HttpSettings;
