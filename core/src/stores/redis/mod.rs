//! Redis as a worker sees it: sealed values, the view of one request, the
//! journal of writes not yet acknowledged, and the near cache.

pub mod journal;
pub mod near_cache;
pub mod sealed;
pub mod view;
