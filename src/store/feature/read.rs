//! Reads: the vectors of many entities of one or more views in one round trip, as rows
//! with a presence mask and write times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Value;

use super::layout::Found;
use super::{FeatureStore, View, corrupt, now_ms};
use crate::array::{Order, RawArray};
use crate::dtype::{ByteOrder, DType, Element, swap_bytes_in_place};
use crate::error::{Error, Origin, Result};
use crate::exec::{Request, Step, reply_ok};

/// One entity's vector and when it was written ([`FeatureStore::read`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature<T> {
    /// The vector.
    pub values: ndarray::Array1<T>,
    /// When it was written.
    pub written_at: SystemTime,
}

/// Vectors of many entities of one view ([`FeatureStore::read_many`]): row `i` belongs
/// to the `i`-th id asked for. Rows of missing, expired or stale entities are zero and
/// `present[i]` is `false`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    /// `(ids, dim)` values.
    pub values: ndarray::Array2<T>,
    /// Whether row `i` holds an entity's vector.
    pub present: Vec<bool>,
    /// When each present vector was written.
    pub written_at: Vec<Option<SystemTime>>,
}

impl<T> Rows<T> {
    /// `(values, presence mask)`.
    pub fn into_parts(self) -> (ndarray::Array2<T>, Vec<bool>) {
        (self.values, self.present)
    }

    /// Number of present rows.
    pub fn count_present(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }
}

/// [`Rows`] of a view of any dtype ([`FeatureStore::read_views`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawRows {
    /// The view's name.
    pub view: String,
    /// `(ids, dim)` values of the view's dtype, C order.
    pub values: RawArray,
    /// Whether row `i` holds an entity's vector.
    pub present: Vec<bool>,
    /// When each present vector was written.
    pub written_at: Vec<Option<SystemTime>>,
}

impl RawRows {
    /// The rows as `T` (a [`Error::DTypeMismatch`] if the view holds another dtype).
    pub fn into_typed<T: Element>(self) -> Result<Rows<T>> {
        Ok(Rows {
            values: self
                .values
                .to_ndarray::<T, ndarray::Ix2>()
                .map_err(|e| e.at(Origin::View(self.view.clone())))?,
            present: self.present,
            written_at: self.written_at,
        })
    }
}

/// Little-endian vector bytes as native ones (a copy only on big-endian machines).
fn le_to_native(dst: &mut [u8], src: &[u8], unit: usize) {
    dst.copy_from_slice(src);
    if ByteOrder::NATIVE == ByteOrder::Big {
        swap_bytes_in_place(dst, unit);
    }
}

/// Fill [`RawRows`] from the replies of one view's read commands.
fn parse_rows(
    view: &View,
    keys: &[String],
    replies: &[Value],
    max_age: Option<Duration>,
) -> Result<RawRows> {
    let n = keys.len();
    let vlen = view.vector_len();
    let unit = view.dtype.swap_unit();
    let mut buf = vec![0u8; n * vlen];
    let mut present = vec![false; n];
    let mut written_at = vec![None; n];
    let now = now_ms();
    let max_age_ms = max_age.map(|d| d.as_millis() as u64);
    for (i, (key, v)) in keys.iter().zip(replies).enumerate() {
        let Found::Vector {
            ts_ms,
            data,
            big_endian,
        } = view.layout.encoding().parse(view, key, v)?
        else {
            continue;
        };
        if let Some(max) = max_age_ms {
            // Without a timestamp a vector's age is unknown: stale.
            match ts_ms {
                Some(ts) if now.saturating_sub(ts) <= max => {}
                _ => continue,
            }
        }
        let row = &mut buf[i * vlen..(i + 1) * vlen];
        if big_endian {
            row.copy_from_slice(data);
            if ByteOrder::NATIVE == ByteOrder::Little {
                swap_bytes_in_place(row, unit);
            }
        } else {
            le_to_native(row, data, unit);
        }
        if view.dtype == DType::Bool && row.iter().any(|&b| b > 1) {
            return Err(corrupt(key, "a bool vector holds bytes other than 0 and 1"));
        }
        present[i] = true;
        written_at[i] = ts_ms.map(|t| UNIX_EPOCH + Duration::from_millis(t));
    }
    Ok(RawRows {
        view: view.name.clone(),
        values: RawArray::new(view.dtype, vec![n, view.dim], Order::C, Bytes::from(buf))?,
        present,
        written_at,
    })
}

impl FeatureStore {
    /// Plan of [`read_views`](Self::read_views).
    pub fn plan_read_views<N: AsRef<str>, V: AsRef<str>>(
        &self,
        entity_ids: &[N],
        views: &[V],
    ) -> Result<Step<'static, Vec<RawRows>>> {
        let ids: Vec<String> = entity_ids.iter().map(|i| i.as_ref().to_owned()).collect();
        let names: Vec<String> = views.iter().map(|v| v.as_ref().to_owned()).collect();
        let this = self.clone();
        Ok(self
            .resolve(names)
            .and_then(move |views| this.read_step(&ids, views)))
    }

    pub(super) fn read_step(
        &self,
        ids: &[String],
        views: Vec<View>,
    ) -> Result<Step<'static, Vec<RawRows>>> {
        // The rows are allocated for every id, present or not: bound them first, each
        // view's against the value limit, all views' together against the call's.
        let mut budget = crate::codec::CallBudget::new(&self.limits);
        for v in &views {
            let vlen = v.checked_vector_len(&self.limits)?;
            let total = vlen.checked_mul(ids.len());
            if total.is_none_or(|t| (t as u64) > self.limits.max_value_len) {
                return Err(Error::too_large(
                    total.map_or(u64::MAX, |t| t as u64),
                    self.limits.max_value_len,
                )
                .at(Origin::View(v.name.clone())));
            }
            budget
                .charge(total.map_or(u64::MAX, |t| t as u64))
                .map_err(|e| e.at(Origin::View(v.name.clone())))?;
        }
        if ids.is_empty() || views.is_empty() {
            let out = views
                .iter()
                .map(|v| parse_rows(v, &[], &[], None))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Step::Done(out));
        }
        let mut req = Request::new(None);
        let mut keys: Vec<Vec<String>> = Vec::with_capacity(views.len());
        for v in &views {
            let ks: Vec<String> = ids.iter().map(|id| self.key(&v.name, id)).collect();
            v.layout.encoding().push_reads(&ks, &mut req);
            keys.push(ks);
        }
        let max_age = self.max_age;
        Ok(Step::send(req.idempotent(), move |mut r| {
            let mut out = Vec::with_capacity(views.len());
            // Keys read as missing that may be of another type: checked below.
            let mut nil_keys: Vec<String> = Vec::new();
            for (v, ks) in views.iter().zip(&keys) {
                let values = v.layout.encoding().take_reads(ks, &mut r, &mut nil_keys)?;
                out.push(parse_rows(v, ks, &values, max_age)?);
            }
            r.finish()?;
            Ok(check_not_wrong_type(nil_keys, out))
        }))
    }

    /// Plan of [`read_many`](Self::read_many).
    pub fn plan_read_many<T: Element, N: AsRef<str>>(
        &self,
        view: &str,
        entity_ids: &[N],
    ) -> Result<Step<'static, Rows<T>>> {
        if let Some(v) = self.view(view) {
            // Reject a wrong element type before sending anything.
            if v.dtype != T::DTYPE {
                return Err(Error::DTypeMismatch {
                    origin: Origin::View(v.name.clone()),
                    expected: T::DTYPE,
                    found: v.dtype,
                });
            }
        }
        Ok(self
            .plan_read_views(entity_ids, &[view])?
            .try_map(|mut rows| {
                rows.pop()
                    .ok_or_else(|| Error::unexpected("no rows read", None))?
                    .into_typed::<T>()
            }))
    }

    /// Plan of [`read`](Self::read).
    pub fn plan_read<T: Element>(
        &self,
        view: &str,
        entity_id: &str,
    ) -> Result<Step<'static, Option<Feature<T>>>> {
        Ok(self
            .plan_read_many::<T, _>(view, &[entity_id])?
            .map(|rows| {
                let Rows {
                    values,
                    present,
                    written_at,
                } = rows;
                if !present.first().copied().unwrap_or(false) {
                    return None;
                }
                Some(Feature {
                    values: values.row(0).to_owned(),
                    written_at: written_at.first().copied().flatten().unwrap_or(UNIX_EPOCH),
                })
            }))
    }
}

/// MGET reports keys of another type as missing: if any key it found missing exists
/// (one `EXISTS`, only when some rows are missing), find it and fail with `WRONGTYPE`.
fn check_not_wrong_type(nil_keys: Vec<String>, out: Vec<RawRows>) -> Step<'static, Vec<RawRows>> {
    if nil_keys.is_empty() {
        return Step::Done(out);
    }
    let mut c = redis::cmd("EXISTS");
    for k in &nil_keys {
        c.arg(k);
    }
    let key = nil_keys.first().filter(|_| nil_keys.len() == 1).cloned();
    Step::send(
        Request::single(c, key.as_deref()).idempotent(),
        move |mut r| {
            let existing = r.next_int()?;
            r.finish()?;
            if existing == 0 {
                return Ok(Step::Done(out));
            }
            let mut req = Request::new(None);
            for k in &nil_keys {
                let mut c = redis::cmd("TYPE");
                c.arg(k);
                req.push(c);
            }
            Ok(Step::then(req.idempotent(), move |mut types| {
                for k in &nil_keys {
                    let t = match reply_ok(types.next_raw()?, k)? {
                        Value::SimpleString(s) => s,
                        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                        Value::Okay => "string".into(),
                        _ => continue,
                    };
                    // "string": written since the MGET, so it was missing then.
                    if t != "none" && t != "string" {
                        let e = redis::make_extension_error(
                            "WRONGTYPE".into(),
                            Some(format!(
                                "Operation against a key holding the wrong kind of value ({t})"
                            )),
                        );
                        return Err(Error::redis(e, Some(k)));
                    }
                }
                types.finish()?;
                Ok(out)
            }))
        },
    )
}
