//! The architecture boundary. Only x86_64 exists today.

pub mod x86_64;
pub use self::x86_64::*;
