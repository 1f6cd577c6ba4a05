//! The control path: autoscaling pools, and starting, supervising and stopping sandboxes in
//! their cgroups. (Vertical resizing lands here too.)

pub mod autoscale;
pub mod process;
pub mod supervisor;
