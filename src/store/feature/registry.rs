//! The view registry: a hash at `{prefix}:__views__`, one JSON field per view, and the
//! store's cache of the views it knows.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{FeatureStore, View, bytes_of};
use crate::error::{Error, Result};
use crate::exec::{Request, Step};

/// Name of the registry key (under the store's prefix).
pub(super) const REGISTRY: &str = "__views__";

impl FeatureStore {
    /// The views known to this store (and its clones) so far, sorted by name; see
    /// [`load_views`](Self::load_views) to read them all from the registry.
    pub fn views(&self) -> Vec<View> {
        let map = self.views.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<View> = map.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The cached definition of `view`, if known.
    pub fn view(&self, view: &str) -> Option<View> {
        let map = self.views.read().unwrap_or_else(|e| e.into_inner());
        map.get(view).cloned()
    }

    fn remember(views: &RwLock<HashMap<String, View>>, v: View) {
        let mut map = views.write().unwrap_or_else(|e| e.into_inner());
        map.insert(v.name.clone(), v);
    }

    /// The definitions of `names`, from the cache or (for those not cached) the registry.
    pub(super) fn resolve(&self, names: Vec<String>) -> Step<'static, Vec<View>> {
        let missing: Vec<String> = {
            let map = self.views.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .filter(|n| !map.contains_key(n.as_str()))
                .cloned()
                .collect()
        };
        let views = Arc::clone(&self.views);
        let lookup = move |views: &RwLock<HashMap<String, View>>, names: &[String]| {
            let map = views.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .map(|n| {
                    map.get(n)
                        .cloned()
                        .ok_or_else(|| Error::UnknownView(n.clone()))
                })
                .collect::<Result<Vec<View>>>()
        };
        if missing.is_empty() {
            return match lookup(&views, &names) {
                Ok(v) => Step::Done(v),
                // Removed from the cache meanwhile: fetch it.
                Err(_) => self.fetch_then(names.clone(), names, views, lookup),
            };
        }
        self.fetch_then(missing, names, views, lookup)
    }

    fn fetch_then(
        &self,
        missing: Vec<String>,
        names: Vec<String>,
        views: Arc<RwLock<HashMap<String, View>>>,
        lookup: impl FnOnce(&RwLock<HashMap<String, View>>, &[String]) -> Result<Vec<View>>
        + Send
        + 'static,
    ) -> Step<'static, Vec<View>> {
        let reg = self.registry_key();
        let limits = self.limits;
        let mut c = redis::cmd("HMGET");
        c.arg(&reg);
        for n in &missing {
            c.arg(n);
        }
        Step::then(Request::single(c, Some(&reg)).idempotent(), move |mut r| {
            let values = r.next_array_of(missing.len())?;
            r.finish()?;
            for (name, v) in missing.iter().zip(values) {
                match bytes_of(&v, &reg, "a view definition")? {
                    Some(json) => Self::remember(&views, View::from_json(name, json, &limits)?),
                    None => return Err(Error::UnknownView(name.clone())),
                }
            }
            lookup(&views, &names)
        })
    }

    /// Plan of [`register_view`](Self::register_view).
    pub fn plan_register_view(&self, view: &View) -> Result<Step<'static, ()>> {
        view.validate()?;
        view.checked_vector_len(&self.limits)?;
        let limits = self.limits;
        let reg = self.registry_key();
        let json = view.to_json()?;
        let mut req = Request::new(Some(&reg));
        let mut c = redis::cmd("HSETNX");
        c.arg(&reg).arg(&view.name).arg(&json);
        req.push(c);
        let mut c = redis::cmd("HGET");
        c.arg(&reg).arg(&view.name);
        req.push(c);
        let views = Arc::clone(&self.views);
        let view = view.clone();
        Ok(Step::then(req, move |mut r| {
            r.next_ok()?;
            let current = r.next_raw()?;
            r.finish()?;
            let registered = match bytes_of(&current, &reg, "a view definition")? {
                Some(json) => View::from_json(&view.name, json, &limits)?,
                None => {
                    return Err(Error::unexpected(
                        "the view vanished from the registry while registering it",
                        Some(reg),
                    ));
                }
            };
            if registered != view {
                return Err(Error::ViewConflict {
                    view: view.name.clone(),
                    registered: registered.to_string(),
                    requested: view.to_string(),
                });
            }
            Self::remember(&views, view);
            Ok(())
        }))
    }

    /// Plan of [`replace_view`](Self::replace_view).
    pub fn plan_replace_view(&self, view: &View) -> Result<Step<'static, ()>> {
        view.validate()?;
        let reg = self.registry_key();
        let mut c = redis::cmd("HSET");
        c.arg(&reg).arg(&view.name).arg(view.to_json()?);
        let views = Arc::clone(&self.views);
        let view = view.clone();
        Ok(Step::then(Request::single(c, Some(&reg)), move |mut r| {
            r.next_ok()?;
            r.finish()?;
            Self::remember(&views, view);
            Ok(())
        }))
    }

    /// Plan of [`load_views`](Self::load_views).
    pub fn plan_load_views(&self) -> Result<Step<'static, Vec<View>>> {
        let reg = self.registry_key();
        let limits = self.limits;
        let mut c = redis::cmd("HGETALL");
        c.arg(&reg);
        let views = Arc::clone(&self.views);
        Ok(Step::then(
            Request::single(c, Some(&reg)).idempotent(),
            move |mut r| {
                let pairs = r.next_pairs()?;
                r.finish()?;
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in &pairs {
                    let name = bytes_of(k, &reg, "a view name")?.unwrap_or_default();
                    let name = String::from_utf8_lossy(name).into_owned();
                    let json = bytes_of(v, &reg, "a view definition")?.unwrap_or_default();
                    out.push(View::from_json(&name, json, &limits)?);
                }
                let mut map = views.write().unwrap_or_else(|e| e.into_inner());
                map.clear();
                for v in &out {
                    map.insert(v.name.clone(), v.clone());
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            },
        ))
    }
}
