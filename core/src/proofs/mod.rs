//! Proofs over the whole crate: the table and the journal against plain
//! models, and every parser of untrusted bytes fuzzed.

mod fuzz;
mod journal_model;
mod table_model;
