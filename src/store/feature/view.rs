//! A feature view: its definition (dtype, dimension, TTL, layout), its registry JSON
//! and the checks of what is written to it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Layout;
use crate::codec::Limits;
use crate::dtype::{DType, Element};
use crate::error::{Error, Origin, Result};
use crate::store::ttl_millis;

/// A feature view: a named kind of vector (dtype, dimension), its TTL and layout.
///
/// ```
/// use redstash::{DType, Layout, View};
/// use std::time::Duration;
/// let v = View::new("user_emb", DType::F32, 128).with_ttl(Duration::from_secs(3600));
/// assert_eq!(v.dim(), 128);
/// assert_eq!(v.layout(), Layout::Native);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub(super) name: String,
    pub(super) dtype: DType,
    pub(super) dim: usize,
    pub(super) ttl: Option<Duration>,
    pub(super) layout: Layout,
}

/// The registry's JSON of a view.
#[derive(Serialize, Deserialize)]
struct ViewJson {
    dtype: String,
    dim: usize,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    layout: Layout,
}

impl View {
    /// A view of `dim`-long vectors of `dtype`, no TTL, [`Layout::Native`].
    pub fn new(name: impl Into<String>, dtype: DType, dim: usize) -> Self {
        View {
            name: name.into(),
            dtype,
            dim,
            ttl: None,
            layout: Layout::Native,
        }
    }

    /// A view of `dim`-long vectors of `T`.
    pub fn of<T: Element>(name: impl Into<String>, dim: usize) -> Self {
        Self::new(name, T::DTYPE, dim)
    }

    /// Expire each written vector `ttl` after its write (refreshed on every write).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Store the view in another layout.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// TTL of written vectors.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
    /// Storage layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Bytes of one vector.
    pub(super) fn vector_len(&self) -> usize {
        self.dim * self.dtype.size()
    }

    pub(super) fn ttl_ms(&self) -> Option<u64> {
        self.ttl.map(ttl_millis)
    }

    pub(crate) fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(&ViewJson {
            dtype: self.dtype.name().to_owned(),
            dim: self.dim,
            ttl_ms: self.ttl_ms(),
            layout: self.layout,
        })?)
    }

    /// A view from its registry entry, which is not trusted: its `dim` must be at least
    /// 1 and one vector (`dim` times the dtype's size, checked) at most
    /// `limits.max_value_len` bytes.
    pub(crate) fn from_json(name: &str, json: &[u8], limits: &Limits) -> Result<View> {
        let j: ViewJson = serde_json::from_slice(json).map_err(|e| {
            Error::corrupt(
                "feature view",
                format!("registry entry is not a view definition: {e}"),
            )
            .at(Origin::View(name.to_owned()))
        })?;
        let (dtype, _) =
            DType::parse_any(&j.dtype).map_err(|e| e.at(Origin::View(name.to_owned())))?;
        let view = View {
            name: name.to_owned(),
            dtype,
            dim: j.dim,
            ttl: j.ttl_ms.map(Duration::from_millis),
            layout: j.layout,
        };
        if view.dim == 0 {
            return Err(
                Error::corrupt("feature view", "registry entry declares a dimension of 0")
                    .at(Origin::View(name.to_owned())),
            );
        }
        view.checked_vector_len(limits)?;
        Ok(view)
    }

    /// Bytes of one vector, checked: [`Error::InvalidValue`] (too large) if `dim` times
    /// the dtype's size overflows or exceeds `limits.max_value_len`.
    pub(super) fn checked_vector_len(&self, limits: &Limits) -> Result<usize> {
        let len = self.dim.checked_mul(self.dtype.size());
        match len {
            Some(n) if (n as u64) <= limits.max_value_len => Ok(n),
            _ => Err(
                Error::too_large(len.map_or(u64::MAX, |n| n as u64), limits.max_value_len)
                    .at(Origin::View(self.name.clone())),
            ),
        }
    }

    /// Check a vector's dtype and length (`rows` vectors, or one) against the view.
    pub(super) fn check(&self, dtype: DType, shape: &[usize], rows: Option<usize>) -> Result<()> {
        let view = self;
        if dtype != view.dtype {
            return Err(Error::DTypeMismatch {
                origin: Origin::View(view.name.clone()),
                expected: view.dtype,
                found: dtype,
            });
        }
        let ok = match rows {
            None => shape == [view.dim],
            Some(n) => shape == [n, view.dim],
        };
        if !ok {
            return Err(Error::ShapeMismatch {
                origin: Origin::View(view.name.clone()),
                expected: match rows {
                    None => format!("[{}] (view {:?})", view.dim, view.name),
                    Some(n) => format!("[{n}, {}] (view {:?}, {n} ids)", view.dim, view.name),
                },
                found: shape.to_vec(),
            });
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidArgument("a view needs a name".into()));
        }
        if self.dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "view {:?}: the dimension must be at least 1",
                self.name
            )));
        }
        Ok(())
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.dtype, self.dim)?;
        if let Some(t) = self.ttl {
            write!(f, " ttl {} ms", ttl_millis(t))?;
        }
        if self.layout == Layout::Hash {
            f.write_str(" (hash layout)")?;
        }
        Ok(())
    }
}
