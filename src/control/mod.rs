//! The control path: autoscaling pools horizontally, resizing quotas vertically, fitting
//! them into the node, and starting, supervising and stopping sandboxes in their cgroups.

pub mod autoscale;
pub mod node;
pub mod process;
pub mod supervisor;
pub mod vertical;
