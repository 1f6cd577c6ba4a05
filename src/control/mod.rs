//! The control path: starting, supervising and stopping sandboxes, and placing them in
//! cgroups. (Autoscaling and vertical resizing land here too.)

pub mod process;
pub mod supervisor;
