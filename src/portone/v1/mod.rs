//! PortOne V1 (`api.iamport.kr`): getToken, certification lookups and deletions, its token cache
//! and the shape of its answers.

mod client;
mod erase;
#[cfg(test)]
mod erase_tests;
mod model;
#[cfg(test)]
mod proptests;
mod token;

pub use client::{PortoneClient, PortoneSettings};
pub use token::{AccessToken, TokenCache, TokenCacheStats};
