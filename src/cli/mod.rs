pub mod check;
pub mod client;
pub mod serve;
