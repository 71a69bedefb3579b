//! Mock servers for local runs and tests, speaking the real services' HTTP
//! contracts over real sockets.

pub mod faults;
pub mod llamaparse;
pub mod openai;
