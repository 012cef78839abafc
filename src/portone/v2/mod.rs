//! PortOne V2 identity verifications (`GET /identity-verifications/{id}`), on the shared HTTP
//! layer. No token exchange: every call carries `Authorization: PortOne <API_SECRET>`, so there
//! is no token cache to share between replicas.

mod client;
mod model;

pub(crate) use client::{PortoneV2Client, PortoneV2Settings};
