//! What the host keeps so that people can see what their functions did and how the host
//! scaled them: per-invocation records ([`records`], fed off the data path through a
//! channel and stored by their own thread) and the dashboard's series and events
//! ([`timeline`], sampled once a second from the status the control path already keeps).
//! Neither adds a lock or a disk write to a request.

pub mod records;
pub mod timeline;
