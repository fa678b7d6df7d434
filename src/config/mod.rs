//! The module's configuration: what the directives set (`conf`) and how
//! every file reaches it (`module`). The directives themselves are in
//! `lifecycle::directives`.

pub mod conf;
pub mod module;
