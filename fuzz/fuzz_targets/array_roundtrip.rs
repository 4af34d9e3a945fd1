//! Structured round trip: an arbitrary array (dtype, shape, order and data from the
//! input) encoded with every codec decodes back equal, and `inspect` describes it.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use redstash::dtype::ALL_DTYPES;
use redstash::{Compression, DType, Order, RawArray, fuzzing};

fuzz_target!(|data: &[u8]| {
    let [d, o, n, rest @ ..] = data else { return };
    let dtype = ALL_DTYPES[*d as usize % ALL_DTYPES.len()];
    let order = if o & 1 == 0 { Order::C } else { Order::F };
    let ndim = (*n % 4) as usize;
    let (dims, body) = rest.split_at(rest.len().min(ndim.saturating_sub(1)));
    let mut shape: Vec<usize> = dims.iter().map(|&x| (x % 5) as usize).collect();
    let inner: usize = shape.iter().product::<usize>() * dtype.size();
    if ndim > 0 {
        shape.push(
            body.len()
                .checked_div(inner)
                .unwrap_or((*n / 4 % 3) as usize),
        );
    }
    let len = shape.iter().product::<usize>() * dtype.size();
    if len > body.len() {
        return;
    }
    let mut body = body[..len].to_vec();
    if dtype == DType::Bool {
        // A bool array holds 0 and 1 only (the decoder refuses other bytes).
        body.iter_mut().for_each(|b| *b &= 1);
    }
    let a = RawArray::new(dtype, shape, order, Bytes::from(body)).expect("a well-formed array");
    let limits = fuzzing::limits();
    for c in [
        Compression::None,
        Compression::Lz4,
        Compression::Zlib { level: 1 },
        Compression::Zstd { level: 1 },
    ] {
        let v = fuzzing::encode_array(&a, c).expect("encode");
        let b = fuzzing::decode_array(&v, &limits).expect("decode own encoding");
        assert_eq!(
            (a.dtype(), a.shape(), a.order()),
            (b.dtype(), b.shape(), b.order()),
            "{c:?}"
        );
        assert_eq!(a.data(), b.data(), "{c:?}");
        let info = fuzzing::inspect(&v, &limits).expect("inspect own encoding");
        assert_eq!(info.shape.as_slice(), a.shape());
    }
});
