pub mod check;
pub mod client;
pub mod replay;
pub mod serve;
