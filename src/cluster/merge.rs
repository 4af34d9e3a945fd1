//! Putting the replies of a plan's units back where a single server would put them
//! (sans-IO), and folding the replies of a command sent to several nodes or slots into
//! one.

use redis::Value;

use super::classify::Fold;
use super::plan::{Plan, Sink};
use super::scan::scan_reply;
use crate::error::{Error, Result};

/// A command sent to several nodes or slots, whose replies become one.
#[derive(Debug)]
pub(super) struct Merge {
    pub(super) req: usize,
    pub(super) at: usize,
    pub(super) fold: Fold,
    pub(super) parts: Vec<Option<Value>>,
    /// For [`Fold::InOrder`]: per part, the positions of its values in the reply.
    pub(super) positions: Vec<Vec<usize>>,
}

impl Plan {
    /// Put the replies of a unit (not a transaction) where they belong.
    pub(crate) fn deliver(
        &mut self,
        sink: Sink,
        replies: Vec<Value>,
        out: &mut [Vec<Value>],
    ) -> Result<()> {
        match sink {
            Sink::Replies { .. } | Sink::Transaction { .. } => {
                let (req, at) = match sink {
                    Sink::Replies { req, at } => (req, at),
                    Sink::Transaction { req } | Sink::Scan { req, .. } => (req, 0),
                    Sink::Merge { .. } => return Ok(()),
                };
                for (i, v) in replies.into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(req).and_then(|o| o.get_mut(at + i)) {
                        *slot = v;
                    }
                }
            }
            Sink::Merge { merge, part } => {
                if let Some(p) = self
                    .merges
                    .get_mut(merge)
                    .and_then(|m| m.parts.get_mut(part))
                {
                    *p = replies.into_iter().next();
                }
            }
            Sink::Scan { req, at, node } => {
                let v = replies.into_iter().next().unwrap_or(Value::Nil);
                let v = scan_reply(v, node, self.primaries)?;
                if let Some(slot) = out.get_mut(req).and_then(|o| o.get_mut(at)) {
                    *slot = v;
                }
            }
        }
        Ok(())
    }

    /// Fold the replies of commands sent to several nodes or slots into `out`.
    pub(crate) fn finish(self, out: &mut [Vec<Value>]) -> Result<()> {
        for m in self.merges {
            let v = fold(m.fold, m.parts, &m.positions)?;
            if let Some(slot) = out.get_mut(m.req).and_then(|o| o.get_mut(m.at)) {
                *slot = v;
            }
        }
        Ok(())
    }
}

fn first_error(parts: &[Value]) -> Option<Value> {
    parts
        .iter()
        .find(|v| matches!(v, Value::ServerError(_)))
        .cloned()
}

pub(super) fn fold(
    fold: Fold,
    parts: Vec<Option<Value>>,
    positions: &[Vec<usize>],
) -> Result<Value> {
    let parts: Vec<Value> = parts.into_iter().map(|p| p.unwrap_or(Value::Nil)).collect();
    if let Some(e) = first_error(&parts) {
        return Ok(e);
    }
    let unexpected = |what: &str, v: &Value| {
        Error::unexpected(format!("{what} from a cluster node: {v:?}"), None)
    };
    Ok(match fold {
        Fold::FirstOk => parts.into_iter().next().unwrap_or(Value::Nil),
        Fold::Sum => {
            let mut sum = 0i64;
            for v in &parts {
                match v {
                    Value::Int(i) => sum += i,
                    other => return Err(unexpected("expected an integer", other)),
                }
            }
            Value::Int(sum)
        }
        Fold::Concat => {
            let mut all = Vec::new();
            for v in parts {
                match v {
                    Value::Array(a) => all.extend(a),
                    other => return Err(unexpected("expected an array", &other)),
                }
            }
            Value::Array(all)
        }
        Fold::InOrder => {
            let n: usize = positions.iter().map(Vec::len).sum();
            let mut all = vec![Value::Nil; n];
            for (v, pos) in parts.into_iter().zip(positions) {
                match v {
                    Value::Array(a) if a.len() == pos.len() => {
                        for (x, &p) in a.into_iter().zip(pos) {
                            if let Some(slot) = all.get_mut(p) {
                                *slot = x;
                            }
                        }
                    }
                    other => return Err(unexpected("expected one value per key", &other)),
                }
            }
            Value::Array(all)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds() {
        let ints = vec![Some(Value::Int(2)), Some(Value::Int(3))];
        assert_eq!(fold(Fold::Sum, ints, &[]).unwrap(), Value::Int(5));
        let arrays = vec![
            Some(Value::Array(vec![Value::Int(0), Value::Int(2)])),
            Some(Value::Array(vec![Value::Int(1)])),
        ];
        assert_eq!(
            fold(Fold::InOrder, arrays, &[vec![0, 2], vec![1]]).unwrap(),
            Value::Array(vec![Value::Int(0), Value::Int(1), Value::Int(2)])
        );
    }
}
