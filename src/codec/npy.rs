//! The NumPy `.npy` format: header writing (v1.0, v2.0 when needed) and strict parsing
//! (v1, v2, v3), with data aligned to 64 bytes as numpy does.

use std::io::Write;

use bytes::Bytes;

use crate::array::{ArrayRef, Order, RawArray, checked_nbytes};
use crate::codec::Limits;
use crate::codec::sniff::NPY_MAGIC;
use crate::dtype::{ByteOrder, DType, swap_bytes_in_place};
use crate::error::{Error, Result};

/// numpy aligns the start of the data to this many bytes.
const ALIGN: usize = 64;
/// numpy's limit on dimensions.
const MAX_NDIM: usize = 64;

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Byte order of the stored data.
    pub byte_order: ByteOrder,
    /// Memory order of the stored data.
    pub order: Order,
    /// Shape.
    pub shape: Vec<usize>,
    /// Format version `(major, minor)`.
    pub version: (u8, u8),
    /// Offset of the first data byte (the header's total length).
    pub data_offset: usize,
}

impl NpyHeader {
    /// Bytes of data the header declares.
    pub fn data_len(&self) -> Result<usize> {
        checked_nbytes(self.dtype, &self.shape)
    }
}

fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_owned(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// Write the `.npy` header for `array` (magic, version, length, dict, padding).
/// The data follows directly; its offset is a multiple of 64.
pub fn write_header(array: &ArrayRef<'_>, out: &mut Vec<u8>) {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
        array.dtype().descr(),
        if array.order() == Order::F && array.shape().len() > 1 {
            "True"
        } else {
            "False"
        },
        shape_repr(array.shape())
    );
    // v1: 6 magic + 2 version + 2 length; v2: 4-byte length.
    let (prefix, version) = if 10 + dict.len() + 1 + ALIGN <= 65535 {
        (10, [1u8, 0])
    } else {
        (12, [2u8, 0])
    };
    let unpadded = prefix + dict.len() + 1;
    let pad = (ALIGN - unpadded % ALIGN) % ALIGN;
    let hlen = dict.len() + pad + 1;
    out.reserve(prefix + hlen);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&version);
    if version[0] == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(out.len() + pad, b' ');
    out.push(b'\n');
}

/// The length of the header [`write_header`] writes for this array.
pub fn header_len(array: &ArrayRef<'_>) -> usize {
    let mut v = Vec::with_capacity(128);
    write_header(array, &mut v);
    v.len()
}

/// Write a whole `.npy` value (header and data) to `w`.
pub fn write_npy<W: Write + ?Sized>(array: &ArrayRef<'_>, w: &mut W) -> std::io::Result<()> {
    let mut header = Vec::with_capacity(128);
    write_header(array, &mut header);
    w.write_all(&header)?;
    w.write_all(array.data())
}

/// Parse the header of a `.npy` value. Checks magic, version, header length (against
/// `limits.max_header_len`), the dict, and that the declared data size does not overflow
/// and stays under `limits.max_value_len`. Does not look at the data.
pub fn parse_header(bytes: &[u8], limits: &Limits) -> Result<NpyHeader> {
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(Error::unknown_format("missing .npy magic"));
    }
    let short = |what: &str| Error::corrupt("npy", format!("value ends inside the {what}"));
    let version = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => return Err(short("version")),
    };
    let (len_size, utf8) = match version.0 {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        v => {
            return Err(Error::corrupt(
                "npy",
                format!("unsupported format version {v}.{}", version.1),
            ));
        }
    };
    let len_bytes = bytes
        .get(8..8 + len_size)
        .ok_or_else(|| short("header length"))?;
    let hlen = if len_size == 2 {
        u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize
    } else {
        u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize
    };
    if hlen > limits.max_header_len {
        return Err(Error::too_large(hlen as u64, limits.max_header_len as u64));
    }
    let start = 8 + len_size;
    let end = start + hlen;
    let raw = bytes.get(start..end).ok_or(Error::truncated(
        "npy",
        hlen as u64,
        (bytes.len() - start.min(bytes.len())) as u64,
    ))?;
    let text = if utf8 {
        std::str::from_utf8(raw).map_err(|_| Error::corrupt("npy", "header is not UTF-8"))?
    } else {
        if !raw.is_ascii() {
            return Err(Error::corrupt("npy", "header is not ASCII"));
        }
        std::str::from_utf8(raw).map_err(|_| Error::corrupt("npy", "header is not ASCII"))?
    };
    let dict = parse_dict(text)?;
    let header = NpyHeader {
        dtype: dict.dtype,
        byte_order: dict.byte_order,
        order: if dict.fortran && dict.shape.len() > 1 {
            Order::F
        } else {
            Order::C
        },
        shape: dict.shape,
        version,
        data_offset: end,
    };
    let n = header.data_len()?;
    if n as u64 > limits.max_value_len {
        return Err(Error::too_large(n as u64, limits.max_value_len));
    }
    Ok(header)
}

/// Decode a whole `.npy` value. The data is a zero-copy slice of `value` unless it must
/// be byte-swapped (big-endian input on a little-endian machine), then it is copied once.
/// Missing or extra data bytes are errors.
pub fn decode(value: Bytes, limits: &Limits) -> Result<RawArray> {
    let h = parse_header(&value, limits)?;
    let n = h.data_len()?;
    let present = value.len() - h.data_offset;
    if present < n {
        return Err(Error::truncated("npy", n as u64, present as u64));
    }
    if present > n {
        return Err(Error::corrupt(
            "npy",
            format!("{} bytes after the declared data", present - n),
        ));
    }
    let data = value.slice(h.data_offset..);
    let data = if h.byte_order != ByteOrder::NotApplicable && h.byte_order != ByteOrder::NATIVE {
        let mut v = data.to_vec();
        swap_bytes_in_place(&mut v, h.dtype.swap_unit());
        Bytes::from(v)
    } else {
        data
    };
    if h.dtype == DType::Bool && data.iter().any(|&b| b > 1) {
        return Err(Error::corrupt(
            "npy",
            "bool array holds bytes other than 0 and 1",
        ));
    }
    RawArray::new(h.dtype, h.shape, h.order, data)
}

struct Dict {
    dtype: DType,
    byte_order: ByteOrder,
    fortran: bool,
    shape: Vec<usize>,
}

/// A tiny parser for the Python dict literal of a `.npy` header.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> Error {
        Error::corrupt("npy", format!("bad header dict at byte {}: {what}", self.i))
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(&format!("expected {:?}", c as char)))
        }
    }
    fn string(&mut self) -> Result<&'a str> {
        let q = self.peek().ok_or_else(|| self.err("expected a string"))?;
        if q != b'\'' && q != b'"' {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            if self.s[self.i] == b'\\' {
                return Err(self.err("escapes are not supported in header strings"));
            }
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err(self.err("unterminated string"));
        }
        let out = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("not UTF-8"))?;
        self.i += 1;
        Ok(out)
    }
    fn ident(&mut self) -> &'a [u8] {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    fn int(&mut self) -> Result<usize> {
        let tok = self.ident();
        // Python 2 era files may carry an `L` suffix.
        let digits = tok.strip_suffix(b"L").unwrap_or(tok);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(self.err("expected a non-negative integer"));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.err("integer too large"))
    }
    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(out);
            }
            if out.len() >= MAX_NDIM {
                return Err(self.err("more than 64 dimensions"));
            }
            out.push(self.int()?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(out);
            }
        }
    }
}

fn parse_dict(text: &str) -> Result<Dict> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    p.expect(b'{')?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err(Error::unsupported_dtype("structured dtype (record array)"));
                }
                let d = p.string()?;
                descr = Some(DType::parse_descr(d)?);
            }
            "fortran_order" => {
                fortran = Some(match p.ident() {
                    b"True" => true,
                    b"False" => false,
                    _ => return Err(p.err("fortran_order must be True or False")),
                });
            }
            "shape" => shape = Some(p.tuple()?),
            other => {
                return Err(Error::corrupt(
                    "npy",
                    format!("unexpected key {other:?} in header"),
                ));
            }
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    if p.s[p.i..].iter().any(|c| !c.is_ascii_whitespace()) {
        return Err(p.err("text after the dict"));
    }
    let (dtype, byte_order) = descr.ok_or_else(|| Error::corrupt("npy", "header lacks 'descr'"))?;
    Ok(Dict {
        dtype,
        byte_order,
        fortran: fortran.ok_or_else(|| Error::corrupt("npy", "header lacks 'fortran_order'"))?,
        shape: shape.ok_or_else(|| Error::corrupt("npy", "header lacks 'shape'"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_of(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_owned();
        let total = 10 + h.len() + 1;
        h.push_str(&" ".repeat((64 - total % 64) % 64));
        h.push('\n');
        let mut v = NPY_MAGIC.to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn header_is_aligned_and_parses_back() {
        for shape in [vec![], vec![0], vec![7], vec![3, 4], vec![1, 2, 3, 4, 5, 6]] {
            let data = vec![0u8; shape.iter().product::<usize>() * 8];
            let a = ArrayRef::new(DType::F64, &shape, Order::C, &data).unwrap();
            let mut v = Vec::new();
            write_header(&a, &mut v);
            assert_eq!(v.len() % 64, 0);
            assert_eq!(*v.last().unwrap(), b'\n');
            let h = parse_header(&v, &Limits::default()).unwrap();
            assert_eq!(h.shape, shape);
            assert_eq!(h.data_offset, v.len());
        }
    }

    #[test]
    fn parses_numpy_variants() {
        let v = npy_of(
            "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 2), }",
            &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4],
        );
        let a = decode(Bytes::from(v), &Limits::default()).unwrap();
        assert_eq!(a.order(), Order::F);
        assert_eq!(a.to_vec::<i32>().unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(a.to_vec_c_order::<i32>().unwrap(), vec![1, 3, 2, 4]);
        // Double quotes, no trailing comma, L suffix, odd key order.
        let v = npy_of(
            r#"{"shape": (3L,), "fortran_order": False, "descr": "<u2"}"#,
            &[1, 0, 2, 0, 3, 0],
        );
        let a = decode(Bytes::from(v), &Limits::default()).unwrap();
        assert_eq!(a.to_vec::<u16>().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn rejects_hostile_headers() {
        let lim = Limits::default();
        let cases: Vec<Vec<u8>> = vec![
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1024), }",
                &[],
            ),
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
                &[],
            ),
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                &[0; 8],
            ),
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
                &[0; 9],
            ),
            npy_of(
                "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
            npy_of(
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }",
                &[0; 8],
            ),
            npy_of("{'descr': '<f8', 'shape': (1,), }", &[0; 8]),
            npy_of(
                "{'descr': '<f8', 'fortran_order': Maybe, 'shape': (1,), }",
                &[0; 8],
            ),
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }",
                &[0; 8],
            ),
            npy_of(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                &[0; 8],
            ),
            npy_of(
                "{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }",
                &[7],
            ),
            b"\x93NUMPY\x01\x00\xff\xff{".to_vec(),
            b"\x93NUMPY\x09\x00".to_vec(),
            b"\x93NUMPY".to_vec(),
        ];
        for c in cases {
            let r = decode(Bytes::from(c.clone()), &lim);
            assert!(r.is_err(), "accepted {:?}", String::from_utf8_lossy(&c));
        }
        let huge = npy_of(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1024), }",
            &[],
        );
        assert!(matches!(
            decode(Bytes::from(huge), &lim),
            Err(Error::InvalidValue {
                problem: crate::ValueProblem::TooLarge { .. },
                ..
            })
        ));
    }
}
