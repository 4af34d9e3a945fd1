//! Arrays without a static element type: [`RawArray`] (owned, `bytes::Bytes`) and
//! [`ArrayRef`] (borrowed), plus conversions to and from `ndarray` (feature `ndarray`).

use bytes::Bytes;

use crate::dtype::{DType, Element};
use crate::error::{Error, Origin, Result};

/// Memory order of an array's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// Row-major (C, numpy's default): the last index varies fastest.
    #[default]
    C,
    /// Column-major (Fortran): the first index varies fastest.
    F,
}

/// Number of elements of a shape, or `None` on overflow.
pub(crate) fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Fortran order only means something when more than one dimension is longer than 1 (and
/// the array is not empty); otherwise both orders are the same bytes, and we say C, as
/// numpy does.
pub(crate) fn normalize_order(shape: &[usize], order: Order) -> Order {
    if order == Order::F && !shape.contains(&0) && shape.iter().filter(|&&d| d > 1).count() > 1 {
        Order::F
    } else {
        Order::C
    }
}

/// Number of bytes of an array of this dtype and shape, or an error on overflow.
pub(crate) fn checked_nbytes(dtype: DType, shape: &[usize]) -> Result<usize> {
    checked_len(shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| Error::corrupt("array", format!("shape {shape:?} overflows usize")))
}

/// A borrowed array: dtype, shape, order and native-endian element bytes.
///
/// This is what codecs encode. Anything implementing [`AsArray`] can produce one
/// without copying when its data is contiguous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrayRef<'a> {
    dtype: DType,
    shape: &'a [usize],
    order: Order,
    data: &'a [u8],
}

impl<'a> ArrayRef<'a> {
    /// Make an array reference, checking that `data` has exactly the bytes the shape needs
    /// (and, for [`DType::Bool`], only bytes 0 and 1).
    pub fn new(dtype: DType, shape: &'a [usize], order: Order, data: &'a [u8]) -> Result<Self> {
        let need = checked_nbytes(dtype, shape)?;
        if need != data.len() {
            return Err(Error::ShapeMismatch {
                origin: Origin::Input,
                expected: format!("{need} bytes of {dtype}"),
                found: shape.to_vec(),
            });
        }
        if dtype == DType::Bool && data.iter().any(|&b| b > 1) {
            // numpy and the decoder accept only 0 and 1: such an array could be written
            // but never read back.
            return Err(Error::InvalidArgument(
                "a bool array holds bytes other than 0 and 1".into(),
            ));
        }
        Ok(ArrayRef {
            dtype,
            shape,
            order: normalize_order(shape, order),
            data,
        })
    }

    /// A one-dimensional or n-dimensional array over a typed slice (C order).
    ///
    /// ```
    /// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let a = redstash::ArrayRef::from_slice(&[2, 3], &data).unwrap();
    /// assert_eq!(a.dtype(), redstash::DType::F32);
    /// assert_eq!(a.nbytes(), 24);
    /// ```
    pub fn from_slice<T: Element>(shape: &'a [usize], data: &'a [T]) -> Result<Self> {
        Self::new(T::DTYPE, shape, Order::C, T::slice_as_bytes(data))
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Shape (empty for a 0-d array).
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }
    /// Memory order of [`data`](Self::data).
    pub fn order(&self) -> Order {
        self.order
    }
    /// Native-endian element bytes in [`order`](Self::order).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// Size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.data.len()
    }
}

/// An owned array of any supported dtype: dtype, shape, order and native-endian bytes.
///
/// Decoding produces a `RawArray` whose bytes are usually a zero-copy slice of the value
/// read from Redis. Convert it to typed data with [`to_vec`](Self::to_vec),
/// [`to_ndarray`](Self::to_ndarray) or [`view`](Self::view).
#[derive(Debug, Clone, PartialEq)]
pub struct RawArray {
    dtype: DType,
    shape: Vec<usize>,
    order: Order,
    data: Bytes,
}

struct ElemVec<T>(Vec<T>);
impl<T: Element> AsRef<[u8]> for ElemVec<T> {
    fn as_ref(&self) -> &[u8] {
        T::slice_as_bytes(&self.0)
    }
}

impl RawArray {
    /// Make an array, checking that `data` has exactly the bytes the shape needs.
    pub fn new(dtype: DType, shape: Vec<usize>, order: Order, data: Bytes) -> Result<Self> {
        let order = ArrayRef::new(dtype, &shape, order, &data)?.order;
        Ok(RawArray {
            dtype,
            shape,
            order,
            data,
        })
    }

    /// Take ownership of a typed vector without copying it (C order).
    ///
    /// ```
    /// let a = redstash::RawArray::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]).unwrap();
    /// assert_eq!(a.to_vec::<i64>().unwrap(), vec![1, 2, 3, 4]);
    /// assert!(a.to_vec::<f64>().is_err());
    /// ```
    pub fn from_vec<T: Element>(shape: Vec<usize>, data: Vec<T>) -> Result<Self> {
        let expected = checked_len(&shape);
        if expected != Some(data.len()) {
            return Err(Error::ShapeMismatch {
                origin: Origin::Input,
                expected: format!("{} elements", data.len()),
                found: shape,
            });
        }
        Ok(RawArray {
            dtype: T::DTYPE,
            shape,
            order: Order::C,
            data: Bytes::from_owner(ElemVec(data)),
        })
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Shape (empty for a 0-d array).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Memory order of the data.
    pub fn order(&self) -> Order {
        self.order
    }
    /// The native-endian element bytes (in [`order`](Self::order)).
    pub fn data(&self) -> &Bytes {
        &self.data
    }
    /// Size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.data.len()
    }
    /// Borrow as an [`ArrayRef`].
    pub fn as_array_ref(&self) -> ArrayRef<'_> {
        ArrayRef {
            dtype: self.dtype,
            shape: &self.shape,
            order: self.order,
            data: &self.data,
        }
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        if self.dtype != T::DTYPE {
            return Err(Error::DTypeMismatch {
                origin: Origin::Input,
                expected: T::DTYPE,
                found: self.dtype,
            });
        }
        Ok(())
    }

    /// Copy the elements out, in memory order (see [`order`](Self::order)).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        T::vec_from_bytes(&self.data)
    }

    /// Copy the elements out in C (row-major) order, transposing Fortran-order data.
    pub fn to_vec_c_order<T: Element>(&self) -> Result<Vec<T>> {
        let v = self.to_vec::<T>()?;
        if self.order == Order::C || self.ndim() < 2 {
            return Ok(v);
        }
        Ok(f_to_c(&v, &self.shape))
    }
}

/// The array's bytes in C order: borrowed when already C order, else transposed once.
pub(crate) fn c_order_bytes<'a>(a: &ArrayRef<'a>) -> std::borrow::Cow<'a, [u8]> {
    if a.order() == Order::C || a.shape().len() < 2 {
        return std::borrow::Cow::Borrowed(a.data());
    }
    let items: Vec<&[u8]> = a.data().chunks_exact(a.dtype().size()).collect();
    std::borrow::Cow::Owned(f_to_c(&items, a.shape()).concat())
}

/// Reorder Fortran-order elements into C order.
fn f_to_c<T: Copy>(src: &[T], shape: &[usize]) -> Vec<T> {
    let n = src.len();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    // F strides in elements.
    let mut fstrides = vec![1usize; shape.len()];
    for i in 1..shape.len() {
        fstrides[i] = fstrides[i - 1] * shape[i - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let off: usize = idx.iter().zip(&fstrides).map(|(i, s)| i * s).sum();
        out.push(src[off]);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// Anything that can be seen as an [`ArrayRef`]: [`RawArray`], [`ArrayRef`], and with
/// feature `ndarray` any `ndarray::ArrayBase` of an [`Element`] type (a non-contiguous
/// view is copied once into a contiguous buffer; contiguous arrays are not copied).
pub trait AsArray {
    /// The array as an [`ArrayRef`] borrowing its memory, when it is contiguous (C or
    /// Fortran order); `None` when it must be copied (see
    /// [`with_array_ref`](Self::with_array_ref)).
    fn try_array_ref(&self) -> Option<ArrayRef<'_>>;

    /// Call `f` with an [`ArrayRef`] of this array, copying it into a contiguous buffer
    /// first only when it is not contiguous.
    fn with_array_ref<R>(&self, f: impl FnOnce(ArrayRef<'_>) -> R) -> R;
}

impl AsArray for RawArray {
    fn try_array_ref(&self) -> Option<ArrayRef<'_>> {
        Some(self.as_array_ref())
    }
    fn with_array_ref<R>(&self, f: impl FnOnce(ArrayRef<'_>) -> R) -> R {
        f(self.as_array_ref())
    }
}

impl AsArray for ArrayRef<'_> {
    fn try_array_ref(&self) -> Option<ArrayRef<'_>> {
        Some(*self)
    }
    fn with_array_ref<R>(&self, f: impl FnOnce(ArrayRef<'_>) -> R) -> R {
        f(*self)
    }
}

impl<A: AsArray + ?Sized> AsArray for &A {
    fn try_array_ref(&self) -> Option<ArrayRef<'_>> {
        (**self).try_array_ref()
    }
    fn with_array_ref<R>(&self, f: impl FnOnce(ArrayRef<'_>) -> R) -> R {
        (**self).with_array_ref(f)
    }
}

/// [`AsArray`] as an object-safe trait, so that [`NamedArrays`](crate::store::batch::NamedArrays) can hand out arrays of
/// different types. Implemented for every [`AsArray`].
pub trait DynArray {
    /// The array borrowing its memory when it is contiguous (see
    /// [`AsArray::try_array_ref`]).
    fn dyn_array_ref(&self) -> Option<ArrayRef<'_>>;
    /// Call `f` with the array, copied into a contiguous buffer first if needed.
    fn dyn_with_array_ref(&self, f: &mut dyn FnMut(ArrayRef<'_>) -> Result<()>) -> Result<()>;
}

impl<A: AsArray + ?Sized> DynArray for A {
    fn dyn_array_ref(&self) -> Option<ArrayRef<'_>> {
        self.try_array_ref()
    }
    fn dyn_with_array_ref(&self, f: &mut dyn FnMut(ArrayRef<'_>) -> Result<()>) -> Result<()> {
        self.with_array_ref(f)
    }
}

#[cfg(feature = "ndarray")]
mod nd {
    use super::*;
    use ndarray::{ArrayBase, ArrayView, Data, Dimension, IxDyn, ShapeBuilder};

    impl<T: Element, S: Data<Elem = T>, D: Dimension> AsArray for ArrayBase<S, D> {
        fn try_array_ref(&self) -> Option<ArrayRef<'_>> {
            let shape = self.shape();
            if let Some(slice) = self.as_slice() {
                return Some(ArrayRef {
                    dtype: T::DTYPE,
                    shape,
                    order: Order::C,
                    data: T::slice_as_bytes(slice),
                });
            }
            if self.t().is_standard_layout() {
                // Fortran-contiguous: the memory, in memory order, is the data.
                let slice = self.as_slice_memory_order()?;
                return Some(ArrayRef {
                    dtype: T::DTYPE,
                    shape,
                    order: normalize_order(shape, Order::F),
                    data: T::slice_as_bytes(slice),
                });
            }
            None
        }

        fn with_array_ref<R>(&self, f: impl FnOnce(ArrayRef<'_>) -> R) -> R {
            if let Some(r) = self.try_array_ref() {
                return f(r);
            }
            let shape = self.shape();
            // Not contiguous (a slice with steps, negative strides...): one copy.
            let owned: Vec<T> = self.iter().copied().collect();
            f(ArrayRef {
                dtype: T::DTYPE,
                shape,
                order: Order::C,
                data: T::slice_as_bytes(&owned),
            })
        }
    }

    impl RawArray {
        fn dim<D: Dimension>(&self) -> Result<D> {
            D::from_dimension(&IxDyn(&self.shape)).ok_or_else(|| Error::ShapeMismatch {
                origin: Origin::Input,
                expected: match D::NDIM {
                    Some(n) => format!("ndim {n}"),
                    None => "any ndim".into(),
                },
                found: self.shape.clone(),
            })
        }

        /// Convert into an owned `ndarray::Array<T, D>` (one copy into an aligned buffer).
        /// `D` may be fixed (`Ix2`) or dynamic (`IxDyn`); Fortran-order data gives a
        /// Fortran-layout array with the same logical values.
        ///
        /// ```
        /// use ndarray::{array, Array2};
        /// let a = redstash::RawArray::from_vec(vec![2, 2], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        /// let nd: Array2<f64> = a.to_ndarray().unwrap();
        /// assert_eq!(nd, array![[1.0, 2.0], [3.0, 4.0]]);
        /// ```
        pub fn to_ndarray<T: Element, D: Dimension>(&self) -> Result<ndarray::Array<T, D>> {
            self.check_dtype::<T>()?;
            let dim = self.dim::<D>()?;
            let v = T::vec_from_bytes(&self.data)?;
            ndarray::Array::from_shape_vec(dim.set_f(self.order == Order::F), v)
                .map_err(|e| Error::corrupt("array", e.to_string()))
        }

        /// Borrow as an `ndarray::ArrayView` without copying. Fails with
        /// [`Error::InvalidArgument`] when the bytes are not aligned for `T` (use
        /// [`to_ndarray`](Self::to_ndarray) then) and on dtype/ndim mismatch.
        pub fn view<T: Element, D: Dimension>(&self) -> Result<ArrayView<'_, T, D>> {
            self.check_dtype::<T>()?;
            let dim = self.dim::<D>()?;
            let slice = T::try_view(&self.data).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "array data is not aligned for {} (or holds invalid values); use to_ndarray",
                    T::DTYPE
                ))
            })?;
            ArrayView::from_shape(dim.set_f(self.order == Order::F), slice)
                .map_err(|e| Error::corrupt("array", e.to_string()))
        }

        /// Copy an ndarray into a new `RawArray` (keeps Fortran order when the input is
        /// Fortran-contiguous).
        pub fn from_ndarray<T: Element, S: Data<Elem = T>, D: Dimension>(
            a: &ArrayBase<S, D>,
        ) -> RawArray {
            a.with_array_ref(|r| RawArray {
                dtype: r.dtype,
                shape: r.shape.to_vec(),
                order: r.order,
                data: Bytes::copy_from_slice(r.data),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `array_roundtrip` fuzz target: a bool array with a byte other than 0
    /// and 1 was accepted, written, and then refused by the decoder on read.
    #[test]
    fn bool_array_with_bytes_other_than_0_and_1_is_refused() {
        let shape = [3];
        let bad = [0u8, 1, 2];
        assert!(matches!(
            ArrayRef::new(DType::Bool, &shape, Order::C, &bad),
            Err(Error::InvalidArgument(_))
        ));
        assert!(
            RawArray::new(
                DType::Bool,
                vec![3],
                Order::C,
                Bytes::from_static(&[1, 0, 255])
            )
            .is_err()
        );
        assert!(ArrayRef::new(DType::Bool, &shape, Order::C, &[0, 1, 1]).is_ok());
    }

    #[test]
    fn f_to_c_transposes() {
        // shape (2,3) in F order: columns [1,4],[2,5],[3,6]
        let f = [1, 4, 2, 5, 3, 6];
        assert_eq!(f_to_c(&f, &[2, 3]), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn new_checks_length() {
        assert!(
            RawArray::new(DType::F64, vec![2], Order::C, Bytes::from_static(&[0; 15])).is_err()
        );
        assert!(RawArray::new(DType::F64, vec![2], Order::C, Bytes::from_static(&[0; 16])).is_ok());
        assert!(RawArray::new(DType::F64, vec![usize::MAX, 2], Order::C, Bytes::new()).is_err());
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn ndarray_round_trip_c_f_and_strided() {
        use ndarray::{Array2, Array3, IxDyn, ShapeBuilder, s};
        let a = Array3::<i32>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 100 + j * 10 + k) as i32);
        let raw = RawArray::from_ndarray(&a);
        assert_eq!(raw.order(), Order::C);
        assert_eq!(raw.to_ndarray::<i32, ndarray::Ix3>().unwrap(), a);
        let f = Array2::<f64>::from_shape_fn((3, 2).f(), |(i, j)| (i * 10 + j) as f64);
        let raw = RawArray::from_ndarray(&f);
        assert_eq!(raw.order(), Order::F);
        assert_eq!(raw.to_ndarray::<f64, ndarray::Ix2>().unwrap(), f);
        assert_eq!(
            raw.to_vec_c_order::<f64>().unwrap(),
            f.iter().copied().collect::<Vec<_>>()
        );
        let strided = a.slice(s![.., ..;2, ..;-1]);
        let raw = RawArray::from_ndarray(&strided);
        assert_eq!(raw.to_ndarray::<i32, IxDyn>().unwrap(), strided.into_dyn());
        assert!(matches!(
            raw.to_ndarray::<i32, ndarray::Ix2>(),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            raw.to_ndarray::<f32, ndarray::Ix3>(),
            Err(Error::DTypeMismatch { .. })
        ));
    }
}
