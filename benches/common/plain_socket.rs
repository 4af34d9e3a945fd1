//! The physical-limit baseline: a minimal RESP2 client over one `TcpStream`.
//!
//! Requests are packed once, outside the timed loop, and sent with one `write_all`.
//! Replies are read into a single reused buffer (grown on first use only) and parsed in
//! place: a bulk string's bytes are never copied after the kernel hands them over.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;

pub struct PlainClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    /// End of the bytes read so far.
    end: usize,
    /// `(offset, len)` in `buf` of the bulk strings of the last reply (`None` = nil).
    items: Vec<Option<(usize, usize)>>,
}

/// Pack a command as a RESP array of bulk strings.
pub fn pack(args: &[&[u8]]) -> Vec<u8> {
    let len: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_int(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad length {:?}", String::from_utf8_lossy(line))))
}

impl PlainClient {
    pub fn connect(port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(PlainClient {
            stream,
            buf: vec![0; 64 << 10],
            pos: 0,
            end: 0,
            items: Vec::new(),
        })
    }

    /// Read more bytes from the socket into `buf[end..]`, growing `buf` if it is full.
    fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Make sure `n` bytes from `pos` are in the buffer.
    fn ensure(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() < self.pos + n {
            self.buf.resize(self.pos + n, 0);
        }
        while self.end - self.pos < n {
            self.fill()?;
        }
        Ok(())
    }

    /// The next line (without CRLF) as a range of `buf`.
    fn line(&mut self) -> io::Result<(usize, usize)> {
        let mut from = self.pos;
        loop {
            if let Some(i) = self.buf[from..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let start = self.pos;
                self.pos = from + i + 2;
                return Ok((start, from + i));
            }
            from = self.end.saturating_sub(1).max(self.pos);
            self.fill()?;
        }
    }

    /// A bulk string (`$N\r\n...\r\n`), left in place in `buf`.
    fn bulk(&mut self) -> io::Result<Option<(usize, usize)>> {
        let (s, e) = self.line()?;
        match self.buf[s] {
            b'$' => {}
            b'-' => return Err(bad(String::from_utf8_lossy(&self.buf[s..e]).into_owned())),
            _ => return Err(bad("expected a bulk string")),
        }
        let n = parse_int(&self.buf[s + 1..e])?;
        if n < 0 {
            return Ok(None);
        }
        let n = n as usize;
        self.ensure(n + 2)?;
        let at = self.pos;
        self.pos += n + 2;
        Ok(Some((at, n)))
    }

    fn send(&mut self, packed: &[u8]) -> io::Result<()> {
        debug_assert_eq!(self.pos, self.end, "unread reply bytes");
        self.pos = 0;
        self.end = 0;
        self.stream.write_all(packed)
    }

    /// Send a packed `SET` and expect `+OK`.
    pub fn set(&mut self, packed: &[u8]) -> io::Result<()> {
        self.send(packed)?;
        let (s, e) = self.line()?;
        if &self.buf[s..e] != b"+OK" {
            return Err(bad(String::from_utf8_lossy(&self.buf[s..e]).into_owned()));
        }
        Ok(())
    }

    /// Send `count` packed `SET`s at once (a pipeline) and expect `count` `+OK`s.
    pub fn set_many(&mut self, packed: &[u8], count: usize) -> io::Result<()> {
        self.send(packed)?;
        for _ in 0..count {
            let (s, e) = self.line()?;
            if &self.buf[s..e] != b"+OK" {
                return Err(bad(String::from_utf8_lossy(&self.buf[s..e]).into_owned()));
            }
        }
        self.pos = self.end;
        Ok(())
    }

    /// Send a packed `GET`; the value stays in the client's buffer.
    pub fn get(&mut self, packed: &[u8]) -> io::Result<Option<&[u8]>> {
        self.send(packed)?;
        Ok(self.bulk()?.map(|(at, n)| &self.buf[at..at + n]))
    }

    /// Send a packed `MGET`; returns the number of values (see [`item`](Self::item)).
    pub fn mget(&mut self, packed: &[u8]) -> io::Result<usize> {
        self.send(packed)?;
        let (s, e) = self.line()?;
        if self.buf[s] != b'*' {
            return Err(bad("expected an array"));
        }
        let n = parse_int(&self.buf[s + 1..e])?.max(0) as usize;
        self.items.clear();
        for _ in 0..n {
            let item = self.bulk()?;
            self.items.push(item);
        }
        Ok(n)
    }

    /// Value `i` of the last `MGET` reply.
    pub fn item(&self, i: usize) -> Option<&[u8]> {
        self.items[i].map(|(at, n)| &self.buf[at..at + n])
    }
}
