//! Framing (RFC 6455 §5): opcodes, headers, masking.

mod header;
mod mask;
mod opcode;

pub use header::{FrameHeader, MAX_HEADER_LEN};
pub use mask::apply_mask;
pub use opcode::OpCode;
