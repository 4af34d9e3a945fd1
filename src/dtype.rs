//! Element types: [`DType`] (numpy's numeric dtypes), numpy descriptor strings and the
//! [`Element`] trait that maps Rust types to them.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A numpy numeric dtype, without byte order (values in memory are native-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `bool` (`|b1`), one byte, 0 or 1.
    Bool,
    /// `int8` (`|i1`).
    I8,
    /// `int16` (`<i2`).
    I16,
    /// `int32` (`<i4`).
    I32,
    /// `int64` (`<i8`).
    I64,
    /// `uint8` (`|u1`).
    U8,
    /// `uint16` (`<u2`).
    U16,
    /// `uint32` (`<u4`).
    U32,
    /// `uint64` (`<u8`).
    U64,
    /// `float16` (`<f2`), [`half::f16`] in Rust.
    F16,
    /// `float32` (`<f4`).
    F32,
    /// `float64` (`<f8`).
    F64,
    /// `complex64` (`<c8`): two `f32`.
    C64,
    /// `complex128` (`<c16`): two `f64`.
    C128,
}

/// Byte order of a numpy descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// `<`
    Little,
    /// `>`
    Big,
    /// `|`: not applicable (one-byte types).
    NotApplicable,
}

impl ByteOrder {
    /// The byte order of this machine.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
}

/// Every dtype, in a fixed order (handy for tests and tables).
pub const ALL_DTYPES: [DType; 14] = [
    DType::Bool,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::F16,
    DType::F32,
    DType::F64,
    DType::C64,
    DType::C128,
];

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// Size of the unit that byte swapping works on (half an element for complex types).
    pub(crate) const fn swap_unit(self) -> usize {
        match self {
            DType::C64 => 4,
            DType::C128 => 8,
            other => other.size(),
        }
    }

    /// numpy's kind character (`b`, `i`, `u`, `f`, `c`).
    pub const fn kind(self) -> char {
        match self {
            DType::Bool => 'b',
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => 'i',
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => 'u',
            DType::F16 | DType::F32 | DType::F64 => 'f',
            DType::C64 | DType::C128 => 'c',
        }
    }

    /// numpy's name of the dtype (`str(np.dtype(...))`), e.g. `"float64"`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    /// The numpy descriptor for this dtype in native byte order, as numpy writes it
    /// (`"<f8"`, `"|b1"`, `"|u1"`).
    pub fn descr(self) -> String {
        self.descr_with(ByteOrder::NATIVE)
    }

    /// The numpy descriptor with the given byte order (one-byte types always use `|`).
    pub fn descr_with(self, order: ByteOrder) -> String {
        let c = if self.size() == 1 {
            '|'
        } else {
            match order {
                ByteOrder::Big => '>',
                ByteOrder::Little | ByteOrder::NotApplicable => '<',
            }
        };
        format!("{c}{}{}", self.kind(), self.size())
    }

    fn from_kind_size(kind: char, size: usize) -> Option<DType> {
        Some(match (kind, size) {
            ('b', 1) => DType::Bool,
            ('i', 1) => DType::I8,
            ('i', 2) => DType::I16,
            ('i', 4) => DType::I32,
            ('i', 8) => DType::I64,
            ('u', 1) => DType::U8,
            ('u', 2) => DType::U16,
            ('u', 4) => DType::U32,
            ('u', 8) => DType::U64,
            ('f', 2) => DType::F16,
            ('f', 4) => DType::F32,
            ('f', 8) => DType::F64,
            ('c', 8) => DType::C64,
            ('c', 16) => DType::C128,
            _ => return None,
        })
    }

    /// Parse a numpy descriptor such as `"<f8"`, `">i4"`, `"|b1"`, `"<c16"`, `"?"`.
    ///
    /// ```
    /// use redstash::{DType, ByteOrder};
    /// assert_eq!(DType::parse_descr(">i4").unwrap(), (DType::I32, ByteOrder::Big));
    /// assert_eq!(DType::parse_descr("|b1").unwrap().0, DType::Bool);
    /// assert!(DType::parse_descr("<U5").is_err());
    /// ```
    pub fn parse_descr(descr: &str) -> Result<(DType, ByteOrder)> {
        let bad = || Error::unsupported_dtype(descr.to_owned());
        if descr == "?" {
            return Ok((DType::Bool, ByteOrder::NotApplicable));
        }
        let mut chars = descr.chars();
        let first = chars.next().ok_or_else(bad)?;
        let (order, rest) = match first {
            '<' => (ByteOrder::Little, &descr[1..]),
            '>' => (ByteOrder::Big, &descr[1..]),
            '|' => (ByteOrder::NotApplicable, &descr[1..]),
            '=' => (ByteOrder::NATIVE, &descr[1..]),
            _ => (ByteOrder::NATIVE, descr),
        };
        let mut rc = rest.chars();
        let kind = rc.next().ok_or_else(bad)?;
        let kind = if kind == '?' { 'b' } else { kind };
        let size: usize = rc.as_str().parse().map_err(|_| bad())?;
        let dtype = DType::from_kind_size(kind, size).ok_or_else(bad)?;
        let order = if dtype.size() == 1 {
            ByteOrder::NotApplicable
        } else if order == ByteOrder::NotApplicable {
            // numpy never writes `|` for multi-byte types; treat it as invalid.
            return Err(bad());
        } else {
            order
        };
        Ok((dtype, order))
    }

    /// Parse a dtype name as numpy prints it (`"float32"`, `"bool"`, `"complex128"`) or a
    /// descriptor (`"<f4"`). Returns the byte order too (native for names).
    pub fn parse_any(s: &str) -> Result<(DType, ByteOrder)> {
        let s = s.trim();
        for d in ALL_DTYPES {
            if d.name() == s {
                return Ok((d, ByteOrder::NATIVE));
            }
        }
        match s {
            "bool_" | "?" => Ok((DType::Bool, ByteOrder::NotApplicable)),
            "half" => Ok((DType::F16, ByteOrder::NATIVE)),
            "single" => Ok((DType::F32, ByteOrder::NATIVE)),
            "double" | "float" => Ok((DType::F64, ByteOrder::NATIVE)),
            _ => DType::parse_descr(s),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DType::parse_any(s).map(|(d, _)| d)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is the element of a numpy array: `bool`, `i8`..`i64`, `u8`..`u64`,
/// [`half::f16`], `f32`, `f64`, [`num_complex::Complex<f32>`] and `Complex<f64>`.
///
/// ```
/// use redstash::{DType, Element};
/// assert_eq!(<f32 as Element>::DTYPE, DType::F32);
/// let v = f64::vec_from_bytes(&1.5f64.to_ne_bytes()).unwrap();
/// assert_eq!(v, vec![1.5]);
/// ```
pub trait Element: Copy + Send + Sync + fmt::Debug + 'static + sealed::Sealed {
    /// The dtype of this type.
    const DTYPE: DType;

    /// View a slice of elements as native-endian bytes (no copy).
    fn slice_as_bytes(slice: &[Self]) -> &[u8];

    /// Copy native-endian bytes into a new vector (one copy). The length must be a multiple
    /// of the element size; `bool` bytes must be 0 or 1.
    fn vec_from_bytes(bytes: &[u8]) -> Result<Vec<Self>>;

    /// View native-endian bytes as elements without copying, when they are suitably aligned
    /// (and, for `bool`, valid). `None` when not possible.
    fn try_view(bytes: &[u8]) -> Option<&[Self]>;
}

macro_rules! pod_element {
    ($($t:ty => $d:expr),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = $d;
            fn slice_as_bytes(slice: &[Self]) -> &[u8] {
                bytemuck::cast_slice(slice)
            }
            fn vec_from_bytes(bytes: &[u8]) -> Result<Vec<Self>> {
                let size = std::mem::size_of::<$t>();
                if bytes.len() % size != 0 {
                    return Err(Error::corrupt("array", format!(
                        "{} bytes is not a whole number of {}-byte elements", bytes.len(), size)));
                }
                // Aligned input (the usual case: .npy data starts at a 64-byte offset):
                // one copy into an uninitialised allocation.
                if let Ok(slice) = bytemuck::try_cast_slice::<u8, $t>(bytes) {
                    return Ok(slice.to_vec());
                }
                // Unaligned: zeroed_vec uses alloc_zeroed, then one copy.
                let mut out: Vec<$t> = bytemuck::allocation::zeroed_vec(bytes.len() / size);
                bytemuck::cast_slice_mut::<$t, u8>(&mut out).copy_from_slice(bytes);
                Ok(out)
            }
            fn try_view(bytes: &[u8]) -> Option<&[Self]> {
                bytemuck::try_cast_slice(bytes).ok()
            }
        }
    )*};
}

pod_element!(
    i8 => DType::I8, i16 => DType::I16, i32 => DType::I32, i64 => DType::I64,
    u8 => DType::U8, u16 => DType::U16, u32 => DType::U32, u64 => DType::U64,
    half::f16 => DType::F16, f32 => DType::F32, f64 => DType::F64,
    num_complex::Complex<f32> => DType::C64, num_complex::Complex<f64> => DType::C128,
);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn slice_as_bytes(slice: &[Self]) -> &[u8] {
        bytemuck::cast_slice(slice)
    }
    fn vec_from_bytes(bytes: &[u8]) -> Result<Vec<Self>> {
        bytes
            .iter()
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(Error::corrupt(
                    "array",
                    format!("byte {other} is not a valid bool"),
                )),
            })
            .collect()
    }
    fn try_view(bytes: &[u8]) -> Option<&[Self]> {
        bytemuck::checked::try_cast_slice(bytes).ok()
    }
}

/// Swap the byte order of every `unit`-byte word of `data` in place.
pub(crate) fn swap_bytes_in_place(data: &mut [u8], unit: usize) {
    if unit > 1 {
        for word in data.chunks_exact_mut(unit) {
            word.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descr_round_trip_for_every_dtype() {
        for d in ALL_DTYPES {
            let (parsed, _) = DType::parse_descr(&d.descr()).unwrap();
            assert_eq!(parsed, d);
            assert_eq!(DType::parse_any(d.name()).unwrap().0, d);
            let (big, order) = DType::parse_descr(&d.descr_with(ByteOrder::Big)).unwrap();
            assert_eq!(big, d);
            if d.size() > 1 {
                assert_eq!(order, ByteOrder::Big);
            }
        }
        assert_eq!(DType::C128.descr(), "<c16");
        assert_eq!(DType::Bool.descr(), "|b1");
        assert_eq!(DType::F16.descr(), "<f2");
    }

    #[test]
    fn rejects_unsupported_descr() {
        for bad in [
            "", "<", "<f3", "|f8", "<U10", "O", "<M8[ns]", "V16", "<i16x",
        ] {
            assert!(
                matches!(DType::parse_descr(bad), Err(Error::UnsupportedDType { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bool_rejects_invalid_bytes() {
        assert!(bool::vec_from_bytes(&[0, 1, 2]).is_err());
        assert_eq!(bool::vec_from_bytes(&[0, 1]).unwrap(), vec![false, true]);
    }
}
