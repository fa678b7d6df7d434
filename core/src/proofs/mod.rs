//! Proofs over the whole crate: the table and the journal against plain
//! models, every parser of untrusted bytes fuzzed, and the same request
//! sequences decided alike over every store.

mod fuzz;
mod journal_model;
mod store_conformance;
mod table_model;
