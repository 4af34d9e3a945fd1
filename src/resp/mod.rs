//! The RESP wire format (sans-IO): the bottom layer under [`exec`](crate::exec),
//! [`direct`](crate::direct) and `cluster`.
//!
//! Nothing here performs I/O or knows about plans or connections; it uses only
//! [`error`](crate::error), [`buffers`](crate::buffers) and redis-rs's `Value` /
//! `RedisError` types.
//!
//! * [`encode`]: RESP headers and arguments, commands already encoded as RESP
//!   ([`Packed`]) and the walk over them.
//! * [`frame`]: the framing of a batch of commands for a vectored write ([`Frame`],
//!   [`Framer`], [`Encoder`]): small pieces are copied into one reused scratch buffer,
//!   large arguments are referenced in place, so a 64 MiB value is never copied on the
//!   way out.
//! * [`read_buffer`] and [`parse`]: the resumable reply parser. [`Parser::advance`]
//!   consumes bytes from a [`ReadBuffer`] and returns [`Progress::Done`] with a complete
//!   reply, [`Progress::NeedMore`] when the I/O layer must read more bytes into the
//!   buffer, or [`Progress::NeedDirect`] when the parser is inside a large bulk string:
//!   the I/O layer must then read exactly [`Parser::direct_target`]'s `remaining` bytes
//!   straight from the socket into the spare capacity of the target `Vec<u8>` (no
//!   intermediate buffer, no second copy, no zero-filling), then call `advance` again.
//! * [`transaction`]: the one check of a `MULTI`/`EXEC` transaction's replies.
//! * [`slot`]: the hash tag of a key and its Redis Cluster hash slot.

pub(crate) mod encode;
pub(crate) mod errors;
pub(crate) mod frame;
pub(crate) mod parse;
pub(crate) mod read_buffer;
pub(crate) mod slot;
pub(crate) mod transaction;

pub use self::encode::Packed;
pub(crate) use self::encode::push_header;
#[cfg(any(feature = "cluster", feature = "load"))]
pub(crate) use self::encode::walk_packed;
pub(crate) use self::errors::{eof_error, protocol_error, server_error_value};
pub(crate) use self::frame::{Encoded, Encoder};
pub use self::frame::{Frame, Framer};
pub(crate) use self::parse::{Parser, Progress};
pub(crate) use self::read_buffer::ReadBuffer;
pub(crate) use self::transaction::transaction_replies;
