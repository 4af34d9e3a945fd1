//! The resumable RESP2 reply parser: keeps its state between calls, so a reply can
//! arrive in arbitrary pieces, and lets the I/O layer read a large bulk string straight
//! into its own exactly-grown allocation.

use redis::{RedisResult, Value};

use super::{ReadBuffer, protocol_error, server_error_value};

/// Bulk strings larger than this that are not already fully buffered get their
/// own allocation, filled directly from the socket.
pub(crate) const LARGE_BULK: usize = 64 * 1024;

/// A large bulk string starts with an allocation of at most this many bytes (unless
/// an idle pooled buffer of the declared length is at hand) and grows as its bytes
/// actually arrive, doubling up to exactly the declared length: a server that
/// declares 512 MiB and sends a few bytes costs this much, not 512 MiB.
pub(crate) const BULK_INITIAL: usize = 1 << 20;

/// Longest accepted header / simple line (type byte to CRLF, exclusive).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Largest accepted bulk string: Redis's default `proto-max-bulk-len` (512 MiB)
/// plus some slack.
pub(crate) const MAX_BULK: usize = 512 * 1024 * 1024 + 64 * 1024;

/// Largest accepted array element count.
pub(crate) const MAX_ARRAY: usize = i32::MAX as usize;

/// At most this many elements are preallocated from array headers, counted over all
/// the arrays under construction (nested headers share it); larger arrays grow as
/// elements actually arrive.
pub(crate) const MAX_ARRAY_PREALLOC: usize = 1 << 16;

/// Maximum nesting depth of arrays (same limit as redis-rs).
pub(crate) const MAX_DEPTH: usize = 100;

/// What the I/O layer must do next.
#[derive(Debug)]
pub(crate) enum Progress {
    /// One complete top-level reply.
    Done(Value),
    /// Read more bytes into the [`ReadBuffer`] and call `advance` again.
    NeedMore,
    /// Read the bytes of a large bulk string directly into
    /// [`Parser::direct_target`], then call `advance` again.
    NeedDirect,
}

#[derive(Debug)]
enum State {
    /// Expecting a type byte and header line.
    Header,
    /// A bulk string of `len` bytes that will be copied out of the read buffer
    /// once `len + 2` bytes are buffered.
    SmallBulk { len: usize },
    /// A large bulk string being filled in its own allocation; complete when
    /// `data.len() == len`.
    LargeBulk { data: Vec<u8>, len: usize },
    /// A large bulk string complete except for its trailing CRLF.
    BulkTrailer { data: Vec<u8> },
}

/// Resumable RESP2 reply parser. Keeps its state between calls, so a reply can
/// arrive in arbitrary pieces.
#[derive(Debug)]
pub(crate) struct Parser {
    state: State,
    /// Arrays under construction: (elements so far, expected count).
    stack: Vec<(Vec<Value>, usize)>,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    // Look for '\r' followed by '\n'.
    let mut from = 0;
    while let Some(i) = data[from..].iter().position(|&b| b == b'\r') {
        let i = from + i;
        if i + 1 >= data.len() {
            return None;
        }
        if data[i + 1] == b'\n' {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Makes room in a large bulk string's buffer that is full but has fewer than `len`
/// bytes: doubles it, or takes it to exactly `len` when doubling would reach that (then
/// an idle pooled buffer of `len` bytes is used if there is one). The capacity of a
/// new allocation thus never exceeds `len` nor twice the bytes received (or
/// [`BULK_INITIAL`]); pooled buffers are memory the process already holds.
fn grow_bulk(data: &mut Vec<u8>, len: usize) {
    let cap = data.capacity().max(1);
    let target = if len - cap <= cap { len } else { cap * 2 };
    if target == len
        && let Some(mut pooled) = crate::buffers::take_idle(len)
    {
        pooled.extend_from_slice(data);
        crate::buffers::give(std::mem::replace(data, pooled));
        return;
    }
    data.reserve_exact(target - data.len());
}

fn parse_int(line: &[u8]) -> Option<i64> {
    let (neg, digits) = match line.first() {
        Some(b'-') => (true, &line[1..]),
        Some(b'+') => (false, &line[1..]),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub((d - b'0') as i64)?
        } else {
            v.checked_add((d - b'0') as i64)?
        };
    }
    Some(v)
}

impl Parser {
    /// A parser waiting for the start of a reply.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Header,
            stack: Vec::new(),
        }
    }

    /// When [`advance`](Self::advance) returned [`Progress::NeedDirect`]: the
    /// vector to append to and how many bytes to read into it now (at least 1).
    /// Its spare capacity is at least `remaining`. The I/O layer must append at
    /// most `remaining` bytes, then call `advance` again (which grows the vector
    /// when the bulk string needs more, so `remaining` may be less than what the
    /// bulk string still lacks).
    pub(crate) fn direct_target(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        match &mut self.state {
            State::LargeBulk { data, len } => {
                let remaining = (*len - data.len()).min(data.capacity() - data.len());
                Some((data, remaining))
            }
            _ => None,
        }
    }

    /// Consumes as much of `rb` as possible. Errors are protocol violations;
    /// after one the stream is unusable.
    pub(crate) fn advance(&mut self, rb: &mut ReadBuffer) -> RedisResult<Progress> {
        loop {
            let value = match self.state {
                State::Header => match self.parse_header(rb)? {
                    Some(Some(v)) => v,
                    Some(None) => continue, // entered a nested / bulk state
                    None => return Ok(Progress::NeedMore),
                },
                State::SmallBulk { len } => {
                    let data = rb.data();
                    if data.len() < len + 2 {
                        return Ok(Progress::NeedMore);
                    }
                    if &data[len..len + 2] != b"\r\n" {
                        return Err(protocol_error("bulk string not terminated by CRLF"));
                    }
                    let v = Value::BulkString(data[..len].to_vec());
                    rb.consume(len + 2);
                    self.state = State::Header;
                    v
                }
                State::LargeBulk { ref mut data, len } => {
                    if data.len() < len && data.len() == data.capacity() {
                        grow_bulk(data, len);
                    }
                    let need = len - data.len();
                    let spare = data.capacity() - data.len();
                    let avail = rb.data();
                    let take = need.min(avail.len()).min(spare);
                    data.extend_from_slice(&avail[..take]);
                    rb.consume(take);
                    if data.len() < len {
                        if !rb.data().is_empty() {
                            continue; // full: grow, then copy the rest of the buffer
                        }
                        if data.len() == data.capacity() {
                            grow_bulk(data, len);
                        }
                        return Ok(Progress::NeedDirect);
                    }
                    let data = std::mem::take(data);
                    self.state = State::BulkTrailer { data };
                    continue;
                }
                State::BulkTrailer { ref mut data } => {
                    let avail = rb.data();
                    if avail.len() < 2 {
                        return Ok(Progress::NeedMore);
                    }
                    if &avail[..2] != b"\r\n" {
                        return Err(protocol_error("bulk string not terminated by CRLF"));
                    }
                    rb.consume(2);
                    let v = Value::BulkString(std::mem::take(data));
                    self.state = State::Header;
                    v
                }
            };
            if let Some(done) = self.complete(value) {
                return Ok(Progress::Done(done));
            }
        }
    }

    /// Feeds a finished value into the enclosing arrays; returns the top-level
    /// value when the reply is complete.
    fn complete(&mut self, mut value: Value) -> Option<Value> {
        loop {
            match self.stack.last_mut() {
                None => return Some(value),
                Some((items, expected)) => {
                    items.push(value);
                    if items.len() < *expected {
                        return None;
                    }
                    // The top of the stack is complete: pop it (it is there, we just
                    // pushed into it) and hand it to the level below.
                    let (items, _) = self.stack.pop()?;
                    value = Value::Array(items);
                }
            }
        }
    }

    /// Parses one header line. `Ok(None)`: need more data. `Ok(Some(None))`:
    /// the parser changed state (array opened or bulk started), keep going.
    /// `Ok(Some(Some(v)))`: a complete scalar value.
    fn parse_header(&mut self, rb: &mut ReadBuffer) -> RedisResult<Option<Option<Value>>> {
        let data = rb.data();
        let Some(&ty) = data.first() else {
            return Ok(None);
        };
        if !matches!(ty, b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(protocol_error(format!(
                "unexpected reply type byte 0x{ty:02x}"
            )));
        }
        let Some(eol) = find_crlf(data) else {
            if data.len() > MAX_LINE {
                return Err(protocol_error("reply line too long"));
            }
            return Ok(None);
        };
        let line = &data[1..eol];
        let consumed = eol + 2;
        let out = match ty {
            b'+' => {
                let v = if line == b"OK" {
                    Value::Okay
                } else {
                    Value::SimpleString(String::from_utf8_lossy(line).into_owned())
                };
                Some(v)
            }
            b'-' => Some(server_error_value(line)),
            b':' => {
                let n = parse_int(line).ok_or_else(|| protocol_error("invalid integer reply"))?;
                Some(Value::Int(n))
            }
            b'$' => {
                let n =
                    parse_int(line).ok_or_else(|| protocol_error("invalid bulk string length"))?;
                if n == -1 {
                    Some(Value::Nil)
                } else if n < 0 {
                    return Err(protocol_error(format!("negative bulk string length {n}")));
                } else if n as u64 > MAX_BULK as u64 {
                    return Err(protocol_error(format!(
                        "bulk string length {n} exceeds the {MAX_BULK} byte limit"
                    )));
                } else {
                    let len = n as usize;
                    let avail = data.len() - consumed;
                    if avail >= len + 2 {
                        let body = &data[consumed..consumed + len];
                        if &data[consumed + len..consumed + len + 2] != b"\r\n" {
                            return Err(protocol_error("bulk string not terminated by CRLF"));
                        }
                        let v = Value::BulkString(body.to_vec());
                        rb.consume(consumed + len + 2);
                        return Ok(Some(Some(v)));
                    }
                    if len > LARGE_BULK {
                        let mut vec = crate::buffers::take_idle(len)
                            .unwrap_or_else(|| Vec::with_capacity(len.min(BULK_INITIAL)));
                        let take = avail.min(len).min(vec.capacity());
                        vec.extend_from_slice(&data[consumed..consumed + take]);
                        rb.consume(consumed + take);
                        self.state = State::LargeBulk { data: vec, len };
                    } else {
                        rb.consume(consumed);
                        self.state = State::SmallBulk { len };
                    }
                    return Ok(Some(None));
                }
            }
            b'*' => {
                let n = parse_int(line).ok_or_else(|| protocol_error("invalid array length"))?;
                if n == -1 {
                    Some(Value::Nil)
                } else if n < 0 {
                    return Err(protocol_error(format!("negative array length {n}")));
                } else if n as u64 > MAX_ARRAY as u64 {
                    return Err(protocol_error(format!(
                        "array length {n} exceeds the {MAX_ARRAY} element limit"
                    )));
                } else if n == 0 {
                    Some(Value::Array(Vec::new()))
                } else {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(protocol_error("arrays nested too deeply"));
                    }
                    let n = n as usize;
                    let preallocated: usize = self.stack.iter().map(|(v, _)| v.capacity()).sum();
                    let prealloc = n.min(MAX_ARRAY_PREALLOC.saturating_sub(preallocated));
                    self.stack.push((Vec::with_capacity(prealloc), n));
                    rb.consume(consumed);
                    return Ok(Some(None));
                }
            }
            _ => unreachable!("type byte checked above"),
        };
        rb.consume(consumed);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;

    use crate::resp::read_buffer::READ_BUF_SIZE;

    /// Found by the `resp` fuzz target (out of memory under `-malloc_limit_mb=512`): the
    /// 13-byte header of a bulk string that a hostile server declares as 512 MiB made
    /// the parser allocate all of it before a single body byte had arrived; now it
    /// allocates at most `BULK_INITIAL` until bytes arrive.
    #[test]
    fn declared_bulk_length_is_not_preallocated() {
        let mut rb = ReadBuffer::with_capacity(READ_BUF_SIZE);
        let head = b"$536870912\r\nabc";
        rb.spare_mut().unwrap()[..head.len()].copy_from_slice(head);
        rb.commit(head.len());
        let mut p = Parser::new();
        assert!(matches!(p.advance(&mut rb).unwrap(), Progress::NeedDirect));
        let (vec, _) = p.direct_target().unwrap();
        assert!(
            vec.capacity() <= 16 << 20,
            "{} bytes allocated for 3 received",
            vec.capacity()
        );
    }

    /// Pushes `bytes` into the read buffer and advances until the parser wants more.
    fn feed(p: &mut Parser, rb: &mut ReadBuffer, mut bytes: &[u8]) -> Progress {
        loop {
            let spare = rb.spare_mut().unwrap();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            rb.commit(n);
            bytes = &bytes[n..];
            let progress = p.advance(rb).unwrap();
            if bytes.is_empty() {
                return progress;
            }
            if let Progress::NeedDirect = progress {
                let (vec, remaining) = p.direct_target().unwrap();
                let n = remaining.min(bytes.len());
                vec.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
            }
        }
    }

    /// Bytes held by the parser: arrays under construction, their elements' bulk
    /// strings, and the bulk string being filled.
    fn held(p: &Parser) -> usize {
        fn value(v: &Value) -> usize {
            std::mem::size_of::<Value>()
                + match v {
                    Value::BulkString(b) => b.capacity(),
                    Value::Array(items) => items.iter().map(value).sum(),
                    _ => 0,
                }
        }
        let stack: usize = p
            .stack
            .iter()
            .map(|(items, _)| {
                items.iter().map(value).sum::<usize>()
                    + (items.capacity() - items.len()) * std::mem::size_of::<Value>()
            })
            .sum();
        let bulk = match &p.state {
            State::LargeBulk { data, .. } | State::BulkTrailer { data } => data.capacity(),
            _ => 0,
        };
        stack + bulk
    }

    /// An array of bulk strings each declared at the bulk limit holds memory in
    /// proportion to the bytes that arrived, however many elements it declares and
    /// however far the server gets: complete elements hold their own bytes, the one
    /// being received at most twice what arrived of it (or the initial allocation).
    #[test]
    fn nested_big_declared_bulks_are_bounded_by_arrivals() {
        let mut rb = ReadBuffer::with_capacity(READ_BUF_SIZE);
        let mut p = Parser::new();
        let mut sent = 0usize;
        let mut input = b"*1000\r\n*1000\r\n".to_vec();
        // Three complete 3 MiB elements, then one declared at the limit, 5 MiB sent.
        let body = vec![b'x'; 3 << 20];
        for _ in 0..3 {
            input.extend_from_slice(format!("${}\r\n", body.len()).as_bytes());
            input.extend_from_slice(&body);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(format!("${MAX_BULK}\r\n").as_bytes());
        input.extend_from_slice(&vec![b'y'; 5 << 20]);
        sent += input.len();
        assert!(matches!(
            feed(&mut p, &mut rb, &input),
            Progress::NeedDirect
        ));
        let held = held(&p);
        assert!(
            held <= 2 * sent + (4 << 20),
            "{held} bytes held for {sent} received"
        );
        let (vec, _) = p.direct_target().unwrap();
        assert_eq!(vec.len(), 5 << 20);
        assert!(vec.capacity() <= 10 << 20, "{}", vec.capacity());

        // Many nested array headers each declaring the most elements preallocate
        // MAX_ARRAY_PREALLOC elements in all, not per level.
        let mut p = Parser::new();
        let mut rb = ReadBuffer::with_capacity(READ_BUF_SIZE);
        let headers = format!("*{MAX_ARRAY}\r\n").repeat(MAX_DEPTH);
        assert!(matches!(
            feed(&mut p, &mut rb, headers.as_bytes()),
            Progress::NeedMore
        ));
        let preallocated: usize = p.stack.iter().map(|(v, _)| v.capacity()).sum();
        assert!(preallocated <= MAX_ARRAY_PREALLOC, "{preallocated}");
    }

    /// A large bulk string beyond the initial allocation grows as it arrives, in any
    /// split, and comes out whole with no more capacity than its length.
    #[test]
    fn large_bulk_grows_to_exact_length() {
        let big: Vec<u8> = (0..(5 * BULK_INITIAL + 12_345) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut input = format!("*2\r\n${}\r\n", big.len()).into_bytes();
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\r\n:5\r\n");
        let expected = vec![Value::Array(vec![
            Value::BulkString(big.clone()),
            Value::Int(5),
        ])];
        for (seed, max) in [(1u64, 1usize << 30), (2, 70_000), (3, 1000), (4, 3 << 20)] {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let got = drive(&input, READ_BUF_SIZE, || {
                (rng.next() % max as u64) as usize + 1
            })
            .unwrap();
            assert_eq!(got, expected, "seed {seed}");
            let Value::Array(items) = &got[0] else {
                unreachable!()
            };
            let Value::BulkString(b) = &items[0] else {
                unreachable!()
            };
            assert!(b.capacity() <= 2 * big.len(), "{}", b.capacity());
        }
    }

    /// Drives the parser over `input`, delivering it in chunks of the sizes
    /// produced by `next_chunk`, filling large bulks directly. Returns all
    /// complete top-level replies.
    fn drive(
        input: &[u8],
        rb_cap: usize,
        mut next_chunk: impl FnMut() -> usize,
    ) -> RedisResult<Vec<Value>> {
        let mut rb = ReadBuffer::with_capacity(rb_cap);
        let mut p = Parser::new();
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            match p.advance(&mut rb)? {
                Progress::Done(v) => out.push(v),
                Progress::NeedMore => {
                    if pos == input.len() {
                        return Ok(out);
                    }
                    let spare = rb.spare_mut()?;
                    let n = next_chunk().max(1).min(spare.len()).min(input.len() - pos);
                    spare[..n].copy_from_slice(&input[pos..pos + n]);
                    rb.commit(n);
                    pos += n;
                }
                Progress::NeedDirect => {
                    let (vec, remaining) = p.direct_target().expect("direct target");
                    assert!(vec.capacity() - vec.len() >= remaining);
                    if pos == input.len() {
                        return Ok(out);
                    }
                    let n = next_chunk().max(1).min(remaining).min(input.len() - pos);
                    let cap_before = vec.capacity();
                    vec.extend_from_slice(&input[pos..pos + n]);
                    assert_eq!(vec.capacity(), cap_before, "no reallocation");
                    pos += n;
                }
            }
        }
    }

    /// Tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn sample() -> (Vec<u8>, Vec<Value>) {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mid: Vec<u8> = (0..40_000u32).map(|i| (i % 13) as u8).collect();
        let mut input = Vec::new();
        input.extend_from_slice(b"+OK\r\n+PONG\r\n-ERR boom\r\n:42\r\n:-7\r\n$-1\r\n$0\r\n\r\n");
        input.extend_from_slice(b"$5\r\nhe\r\nl\r\n*-1\r\n*0\r\n");
        input.extend_from_slice(b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n+x\r\n");
        input.extend_from_slice(format!("${}\r\n", big.len()).as_bytes());
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(format!("*4\r\n${}\r\n", big.len()).as_bytes());
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\r\n$-1\r\n");
        input.extend_from_slice(format!("${}\r\n", mid.len()).as_bytes());
        input.extend_from_slice(&mid);
        input.extend_from_slice(format!("\r\n${}\r\n", big.len()).as_bytes());
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\r\n");
        let expected = vec![
            Value::Okay,
            Value::SimpleString("PONG".into()),
            server_error_value(b"ERR boom"),
            Value::Int(42),
            Value::Int(-7),
            Value::Nil,
            Value::BulkString(vec![]),
            Value::BulkString(b"he\r\nl".to_vec()),
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Array(vec![Value::Int(1), Value::Nil]),
                Value::SimpleString("x".into()),
            ]),
            Value::BulkString(big.clone()),
            Value::Array(vec![
                Value::BulkString(big.clone()),
                Value::Nil,
                Value::BulkString(mid),
                Value::BulkString(big),
            ]),
        ];
        (input, expected)
    }

    #[test]
    fn whole_input() {
        let (input, expected) = sample();
        let got = drive(&input, READ_BUF_SIZE, || usize::MAX).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn byte_by_byte() {
        let (input, expected) = sample();
        let got = drive(&input, READ_BUF_SIZE, || 1).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn random_splits() {
        let (input, expected) = sample();
        for seed in 1..40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let max = [3u64, 17, 1000, 70_000, 300_000][(seed % 5) as usize];
            let got = drive(&input, READ_BUF_SIZE, || (rng.next() % max) as usize + 1).unwrap();
            assert_eq!(got, expected, "seed {seed}");
        }
    }

    fn parse_one(input: &[u8]) -> RedisResult<Progress> {
        let mut rb = ReadBuffer::with_capacity(READ_BUF_SIZE);
        let spare = rb.spare_mut().unwrap();
        spare[..input.len()].copy_from_slice(input);
        rb.commit(input.len());
        Parser::new().advance(&mut rb)
    }

    #[test]
    fn hostile_headers() {
        for bad in [
            &b"$-5\r\n"[..],
            b"$99999999999999\r\n",
            b"$99999999999999999999999\r\n",
            b"$-9223372036854775808\r\n",
            b"$abc\r\n",
            b"$\r\n",
            b"*-2\r\n",
            b"*99999999999999\r\n",
            b"*x\r\n",
            b":12a\r\n",
            b"?garbage\r\n",
            b"\x00\r\n",
            b"%2\r\n", // RESP3 map: not spoken here
            b"$3\r\nabcXY",
        ] {
            let r = parse_one(bad);
            assert!(r.is_err(), "{:?} -> {r:?}", String::from_utf8_lossy(bad));
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Parse);
        }
        // Over the bulk limit by one byte.
        let r = parse_one(format!("${}\r\n", MAX_BULK + 1).as_bytes());
        assert!(r.is_err());
        // Exactly at the limit is accepted (and waits for data, preallocating
        // lazily only via the LargeBulk path).
        assert!(matches!(
            parse_one(b"$1000000\r\n").unwrap(),
            Progress::NeedDirect
        ));
    }

    #[test]
    fn huge_array_header_does_not_preallocate() {
        let mut rb = ReadBuffer::with_capacity(1024);
        let input = b"*2000000000\r\n:1\r\n";
        rb.spare_mut().unwrap()[..input.len()].copy_from_slice(input);
        rb.commit(input.len());
        let mut p = Parser::new();
        assert!(matches!(p.advance(&mut rb).unwrap(), Progress::NeedMore));
        assert!(p.stack[0].0.capacity() <= MAX_ARRAY_PREALLOC);
    }

    #[test]
    fn deep_nesting_rejected() {
        let input = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(parse_one(&input).is_err());
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert!(matches!(parse_one(&ok).unwrap(), Progress::Done(_)));
    }

    #[test]
    fn line_too_long() {
        let mut input = vec![b'+'];
        input.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        assert!(parse_one(&input).is_err());
    }

    #[test]
    fn large_bulk_gets_exact_allocation() {
        let len = 300_000usize;
        let mut rb = ReadBuffer::with_capacity(READ_BUF_SIZE);
        let hdr = format!("${len}\r\n");
        let spare = rb.spare_mut().unwrap();
        spare[..hdr.len()].copy_from_slice(hdr.as_bytes());
        spare[hdr.len()..hdr.len() + 1000].fill(7);
        rb.commit(hdr.len() + 1000);
        let mut p = Parser::new();
        assert!(matches!(p.advance(&mut rb).unwrap(), Progress::NeedDirect));
        let (vec, remaining) = p.direct_target().unwrap();
        assert_eq!(vec.len(), 1000);
        assert_eq!(remaining, len - 1000);
        assert!(vec.capacity() >= len);
        vec.resize(len, 7);
        assert!(matches!(p.advance(&mut rb).unwrap(), Progress::NeedMore));
        rb.spare_mut().unwrap()[..2].copy_from_slice(b"\r\n");
        rb.commit(2);
        match p.advance(&mut rb).unwrap() {
            Progress::Done(Value::BulkString(b)) => {
                assert_eq!(b.len(), len);
                assert!(b.iter().all(|&x| x == 7));
            }
            other => panic!("{other:?}"),
        }
    }
}
