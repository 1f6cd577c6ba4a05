pub mod check;
pub mod client;
pub mod logs;
pub mod replay;
pub mod serve;
