//! Property tests of the codecs (no server): every codec round-trips arbitrary arrays, and
//! decoding arbitrary bytes never panics.

use proptest::prelude::*;
use redstash::codec::{ArrayCodec, Compressed, Limits, Npy, decode_array, inspect};
use redstash::dtype::ALL_DTYPES;
use redstash::{Compression, Order, RawArray};

fn arb_array() -> impl Strategy<Value = RawArray> {
    (
        0..ALL_DTYPES.len(),
        prop::collection::vec(0usize..5, 0..5),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(d, shape, f, seed)| {
            let dtype = ALL_DTYPES[d];
            let n: usize = shape.iter().product();
            let mut bytes = vec![0u8; n * dtype.size()];
            let mut x = seed | 1;
            for b in bytes.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if dtype == redstash::DType::Bool {
                    (x & 1) as u8
                } else {
                    x as u8
                };
            }
            let order = if f { Order::F } else { Order::C };
            RawArray::new(dtype, shape, order, bytes.into()).unwrap()
        })
}

fn codec(i: usize) -> Box<dyn ArrayCodec> {
    match i {
        0 => Box::new(Npy),
        1 => Box::new(Compressed::lz4()),
        2 => Box::new(Compressed::zlib(1)),
        3 if cfg!(feature = "zstd") => Box::new(Compressed::zstd(1)),
        _ => Box::new(Compressed::new(
            Compressed::lz4(),
            Compression::Zlib { level: 6 },
        )),
    }
}

proptest! {
    #[test]
    fn every_codec_round_trips(a in arb_array(), c in 0usize..5) {
        let codec = codec(c);
        let bytes = codec.encode(&a.as_array_ref()).unwrap();
        let info = inspect(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(&info.shape[..], a.shape());
        prop_assert_eq!(info.dtype, a.dtype());
        let back = decode_array(bytes.into(), &Limits::default()).unwrap();
        // 0-d and 1-d arrays have no distinct Fortran order.
        prop_assert_eq!(back.data(), a.data());
        prop_assert_eq!(back.shape(), a.shape());
        if a.ndim() > 1 {
            prop_assert_eq!(back.order(), a.order());
        }
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), prefix in 0usize..4) {
        let mut v = match prefix {
            0 => b"\x93NUMPY\x01\x00".to_vec(),
            1 => vec![0x04, 0x22, 0x4d, 0x18],
            2 => vec![0x78, 0x9c],
            _ => Vec::new(),
        };
        v.extend_from_slice(&bytes);
        let _ = decode_array(v.clone().into(), &Limits::default());
        let _ = inspect(&v, &Limits::default());
    }

    #[test]
    fn mutated_values_never_panic(a in arb_array(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), c in 0usize..3) {
        let mut bytes = codec(c).encode(&a.as_array_ref()).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        let _ = decode_array(bytes.clone().into(), &Limits::default());
        bytes.truncate(i);
        prop_assert!(decode_array(bytes.into(), &Limits::default()).is_err());
    }
}
