//! The control path: autoscaling pools horizontally, resizing quotas vertically, fitting
//! them into the node, and starting, supervising and stopping sandboxes in their cgroups.
//! It sits above the data path ([`crate::dispatch`]): it reads the deployments' load and
//! writes back their sandbox endpoint and warm capacity, never the other way round.

pub mod autoscale;
pub mod forecast;
pub mod keepalive;
pub mod node;
pub mod supervisor;
pub mod version;
pub mod vertical;
