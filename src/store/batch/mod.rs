//! The fast paths: calls answered together and connections kept between statements, behind the
//! plain `Store` methods. The [`gate`] is the only way to a connection, for every statement of
//! the store; the [`lane`]s hold one (through the gate) and answer every call waiting with one
//! statement: [`records`], [`binds`] and the [`lookups`].

pub(crate) mod access;
pub(crate) mod binds;
pub(crate) mod gate;
pub(crate) mod lane;
pub(crate) mod lookups;
pub(crate) mod records;
pub(crate) mod statement;

use std::sync::Arc;

use access::Chains;
use binds::FreshBind;
use gate::Gate;
use lane::Lane;
use lookups::{ByCi, BySession};
use records::Record;
use sea_orm::DbBackend;

/// The lanes that run on the gate's backend, started with the store.
#[derive(Clone)]
pub(crate) struct Lanes {
    /// Lookups by CI, on either backend.
    pub(crate) lookups: Lane<ByCi>,
    /// The lanes whose statements only PostgreSQL runs; none on SQLite.
    pub(crate) postgres: Option<PostgresLanes>,
}

#[derive(Clone)]
pub(crate) struct PostgresLanes {
    /// Verify's records.
    pub(crate) records: Lane<Record>,
    /// Reads of sessions, which every Verify under a session makes first.
    pub(crate) sessions: Lane<BySession>,
    /// Signups' binds of a fresh person.
    pub(crate) binds: Lane<FreshBind>,
}

impl Lanes {
    /// Starts them on the current runtime, writing the access records of their calls on
    /// `chains` (none: their calls carry none).
    pub(crate) fn start(gate: &Gate, chains: Option<&Arc<Chains>>) -> Self {
        let postgres = (gate.backend() == DbBackend::Postgres).then(|| PostgresLanes {
            records: Lane::start(gate, chains),
            sessions: Lane::start(gate, chains),
            binds: Lane::start(gate, chains),
        });
        Self {
            lookups: Lane::start(gate, chains),
            postgres,
        }
    }
}
