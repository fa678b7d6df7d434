//! Configuration time: the module as the rest of the code names it, its
//! directives, and what they set.

pub mod conf;
pub mod directives;
pub mod module;
