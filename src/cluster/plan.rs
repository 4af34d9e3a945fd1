//! Planning (sans-IO): requests become a [`Plan`] of [`Unit`]s, the commands to send to
//! one node together and where their replies go; a transaction goes whole to the node of
//! its one slot.

use std::ops::Range;

use redis::{Cmd, Value};

use super::classify::{Args, PiecesArgs, Route, cmd_args, is_read_only, route, route_command};
use super::merge::{Merge, fold};
use super::scan::scan_start;
use super::topology::Topology;
use crate::error::{Error, Result};
use crate::exec::{Command, Delivery, Request};
use crate::resp::walk_packed;

/// A command to send: one of a request, one of a request's `Packed` buffer, or one made
/// by the router (a command split by slot, a rewritten `SCAN`).
#[derive(Debug, Clone)]
pub(crate) enum Part {
    /// Command `cmd` of request `req`, as it is.
    Whole { req: usize, cmd: usize },
    /// Bytes `range` of the packed command `cmd` of request `req` (one command).
    Raw {
        req: usize,
        cmd: usize,
        range: Range<usize>,
    },
    /// Command `i` of [`Plan::owned`].
    Owned(usize),
}

/// Which node a unit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Any primary.
    Any,
    /// The primary serving the slot.
    Slot(u16),
    /// Primary `i` of the topology.
    Node(usize),
}

/// Where the replies of a unit go.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sink {
    /// One reply per part, to replies `at..` of request `req`.
    Replies { req: usize, at: usize },
    /// The single reply is part `part` of merge `merge`.
    Merge { merge: usize, part: usize },
    /// A `SCAN` reply from primary `node`: its cursor becomes a composite one.
    Scan { req: usize, at: usize, node: usize },
    /// The whole of request `req`, a `MULTI`/`EXEC` transaction.
    Transaction { req: usize },
}

/// Commands sent together to one node, and where their replies go.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    /// Indices into [`Plan::parts`].
    pub(crate) parts: Range<usize>,
    pub(crate) target: Target,
    pub(crate) sink: Sink,
    /// Send `ASKING` first, to this address (after an `ASK` redirection).
    pub(crate) asking: Option<String>,
    /// Every command of the unit only reads (see `classify::is_read_only`).
    pub(crate) read_only: bool,
}

/// Requests turned into units.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) parts: Vec<Part>,
    pub(crate) owned: Vec<Cmd>,
    pub(crate) units: Vec<Unit>,
    pub(super) merges: Vec<Merge>,
    /// Replies of each request.
    lens: Vec<usize>,
    /// Primaries when the plan was made (SCAN cursors).
    pub(super) primaries: usize,
    /// What became of each unit so far.
    pub(crate) states: Vec<UnitState>,
    /// Transactions refused as a whole (request index, why): none of their commands ran.
    pub(crate) refused: Vec<(usize, Error)>,
    /// Requests whose writes ran but fewer replicas than asked acknowledged them
    /// (request index, why): reported as in flight, not answered.
    pub(crate) unreplicated: Vec<(usize, Error)>,
    /// Per request: whether it may be sent again ([`Request::is_idempotent`]).
    idempotent: Vec<bool>,
    /// Per unit: written once to a node that then failed, and scheduled again: it may
    /// have run even while its state says not sent.
    pub(crate) maybe_ran: Vec<bool>,
}

/// What became of a unit: never written (or redirected, so not executed), written
/// (it may have run), or answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum UnitState {
    #[default]
    NotSent,
    Sent,
    Answered,
}

/// An open `MULTI` block of a non-atomic request.
struct Block {
    first_part: usize,
    at: usize,
    slots: Vec<u16>,
    read_only: bool,
}

fn cross_slot(req: &Request<'_>, mut slots: Vec<u16>) -> Error {
    slots.sort_unstable();
    slots.dedup();
    Error::CrossSlot {
        key: req.key().map(str::to_owned),
        slots,
    }
}

impl Plan {
    /// Route the commands of `reqs`.
    pub(crate) fn new(reqs: &[Request<'_>], topology: &Topology) -> Result<Plan> {
        let mut plan = Plan {
            primaries: topology.primaries().len(),
            idempotent: reqs.iter().map(Request::is_idempotent).collect(),
            ..Plan::default()
        };
        for (r, req) in reqs.iter().enumerate() {
            if req.is_empty() {
                plan.lens.push(0);
            } else if req.is_atomic() {
                plan.add_transaction(r, req)?;
            } else {
                plan.add_request(r, req)?;
            }
        }
        plan.states = vec![UnitState::NotSent; plan.units.len()];
        plan.maybe_ran = vec![false; plan.units.len()];
        Ok(plan)
    }

    /// The request unit `u` belongs to.
    pub(crate) fn request_of(&self, u: usize) -> Option<usize> {
        match self.units.get(u)?.sink {
            Sink::Replies { req, .. } | Sink::Scan { req, .. } | Sink::Transaction { req } => {
                Some(req)
            }
            Sink::Merge { merge, .. } => self.merges.get(merge).map(|m| m.req),
        }
    }

    /// Whether unit `u` may be written again after its node failed while it was
    /// written: it only reads, or its request is idempotent.
    pub(crate) fn may_resend(&self, u: usize) -> bool {
        self.units.get(u).is_some_and(|unit| unit.read_only)
            || self
                .request_of(u)
                .and_then(|r| self.idempotent.get(r))
                .copied()
                .unwrap_or(false)
    }

    /// What became of each request when the plan was cut short, from the replies
    /// delivered so far: a command is answered when every unit it was split into was.
    pub(crate) fn deliveries(mut self, mut out: Vec<Vec<Value>>) -> Vec<Delivery> {
        let mut known: Vec<Vec<bool>> = self.lens.iter().map(|&n| vec![true; n]).collect();
        let mut touched = vec![false; self.lens.len()];
        for ((unit, state), maybe_ran) in self.units.iter().zip(&self.states).zip(&self.maybe_ran) {
            let (req, range) = match unit.sink {
                Sink::Replies { req, at } => (req, at..at + unit.parts.len()),
                Sink::Scan { req, at, .. } => (req, at..at + 1),
                Sink::Transaction { req } => (req, 0..self.lens.get(req).copied().unwrap_or(0)),
                Sink::Merge { merge, .. } => match self.merges.get(merge) {
                    Some(m) => (m.req, m.at..m.at + 1),
                    None => continue,
                },
            };
            if *state != UnitState::Answered
                && let Some(k) = known.get_mut(req)
            {
                for i in range {
                    if let Some(b) = k.get_mut(i) {
                        *b = false;
                    }
                }
            }
            if (*state != UnitState::NotSent || *maybe_ran)
                && let Some(t) = touched.get_mut(req)
            {
                *t = true;
            }
        }
        for m in std::mem::take(&mut self.merges) {
            if known.get(m.req).and_then(|k| k.get(m.at)).copied() == Some(true)
                && let Ok(v) = fold(m.fold, m.parts, &m.positions)
                && let Some(slot) = out.get_mut(m.req).and_then(|o| o.get_mut(m.at))
            {
                *slot = v;
            }
        }
        let mut refused: Vec<Option<Error>> = (0..out.len()).map(|_| None).collect();
        for (req, e) in std::mem::take(&mut self.refused) {
            if let Some(slot) = refused.get_mut(req) {
                *slot = Some(e);
            }
        }
        // Written on a primary, not proven replicated: not known to be stored.
        for (req, _) in std::mem::take(&mut self.unreplicated) {
            if let Some(k) = known.get_mut(req) {
                k.iter_mut().for_each(|b| *b = false);
            }
            if let Some(t) = touched.get_mut(req) {
                *t = true;
            }
        }
        out.into_iter()
            .zip(known)
            .zip(touched)
            .zip(refused)
            .map(|(((replies, known), touched), refused)| {
                if let Some(e) = refused {
                    Delivery::Refused(e)
                } else if known.iter().all(|&k| k) {
                    Delivery::Answered(replies)
                } else if !touched {
                    Delivery::NotSent
                } else {
                    Delivery::InFlight(
                        replies
                            .into_iter()
                            .zip(known)
                            .map(|(v, k)| k.then_some(v))
                            .collect(),
                    )
                }
            })
            .collect()
    }

    /// A `MULTI`/`EXEC` request: sent whole to the node of its one slot.
    fn add_transaction(&mut self, r: usize, req: &Request<'_>) -> Result<()> {
        let mut slots: Vec<u16> = Vec::new();
        let mut read_only = true;
        let mut check = |route: Route, ro: bool| -> Result<()> {
            read_only &= ro;
            match route {
                Route::Any => Ok(()),
                Route::Slot(s) => {
                    slots.push(s);
                    Ok(())
                }
                Route::Split(_, groups) => {
                    slots.extend(groups.iter().map(|g| g.0));
                    Ok(())
                }
                other => Err(Error::InvalidArgument(format!(
                    "{other:?} command in a transaction on a Redis Cluster"
                ))),
            }
        };
        for c in req.commands() {
            match c {
                Command::Packed(p) => {
                    walk_packed(p.as_bytes(), |_, args| {
                        check(route(args)?, is_read_only(args))
                    })?;
                }
                Command::Cmd(cmd) => check(route_command(c)?, is_read_only(&cmd_args(cmd)[..]))?,
                Command::Pieces(p) => check(route_command(c)?, is_read_only(&PiecesArgs(p)))?,
            }
        }
        let first = slots.first().copied();
        if slots.iter().any(|&s| Some(s) != first) {
            return Err(cross_slot(req, slots));
        }
        let start = self.parts.len();
        self.parts.push(Part::Whole { req: r, cmd: 0 });
        self.units.push(Unit {
            parts: start..start + 1,
            target: first.map_or(Target::Any, Target::Slot),
            sink: Sink::Transaction { req: r },
            asking: None,
            read_only,
        });
        self.lens.push(req.len());
        Ok(())
    }

    fn add_request(&mut self, r: usize, req: &Request<'_>) -> Result<()> {
        let mut at = 0;
        let mut block: Option<Block> = None;
        for (ci, c) in req.commands().iter().enumerate() {
            match c {
                Command::Packed(p) => {
                    walk_packed(p.as_bytes(), |range, args| {
                        let part = Part::Raw {
                            req: r,
                            cmd: ci,
                            range,
                        };
                        self.add(req, r, &mut at, &mut block, route(args)?, part, args)
                    })?;
                }
                Command::Cmd(cmd) => {
                    let args = cmd_args(cmd);
                    let route = route(&args[..])?;
                    let part = Part::Whole { req: r, cmd: ci };
                    self.add(req, r, &mut at, &mut block, route, part, &args[..])?;
                }
                Command::Pieces(p) => {
                    let args = PiecesArgs(p);
                    let route = route(&args)?;
                    let part = Part::Whole { req: r, cmd: ci };
                    self.add(req, r, &mut at, &mut block, route, part, &args)?;
                }
            }
        }
        if block.is_some() {
            return Err(Error::InvalidArgument(
                "MULTI without EXEC in a request on a Redis Cluster".into(),
            ));
        }
        if at != req.len() {
            return Err(Error::unexpected(
                format!("routed {at} commands of a request of {}", req.len()),
                req.key().map(str::to_owned),
            ));
        }
        self.lens.push(at);
        Ok(())
    }

    fn unit(&mut self, part: Part, target: Target, sink: Sink, read_only: bool) {
        let start = self.parts.len();
        self.parts.push(part);
        self.units.push(Unit {
            parts: start..start + 1,
            target,
            sink,
            asking: None,
            read_only,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        req: &Request<'_>,
        r: usize,
        at: &mut usize,
        block: &mut Option<Block>,
        route: Route,
        part: Part,
        args: &(impl Args + ?Sized),
    ) -> Result<()> {
        let ro = is_read_only(args);
        if let Some(b) = block {
            // Inside MULTI ... EXEC: every command goes with the block.
            let exec = route == Route::Exec;
            if !exec {
                b.read_only &= ro;
            }
            match route {
                Route::Any | Route::Exec => {}
                Route::Slot(s) => b.slots.push(s),
                Route::Split(_, groups) => b.slots.extend(groups.iter().map(|g| g.0)),
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "{other:?} command in a transaction on a Redis Cluster"
                    )));
                }
            }
            self.parts.push(part);
            *at += 1;
            if exec {
                let Some(b) = block.take() else {
                    return Ok(());
                };
                let first = b.slots.first().copied();
                if b.slots.iter().any(|&s| Some(s) != first) {
                    return Err(cross_slot(req, b.slots));
                }
                self.units.push(Unit {
                    parts: b.first_part..self.parts.len(),
                    target: first.map_or(Target::Any, Target::Slot),
                    sink: Sink::Replies { req: r, at: b.at },
                    asking: None,
                    read_only: b.read_only,
                });
            }
            return Ok(());
        }
        let here = Sink::Replies { req: r, at: *at };
        match route {
            Route::Any | Route::Exec => self.unit(part, Target::Any, here, ro),
            Route::Slot(s) => self.unit(part, Target::Slot(s), here, ro),
            Route::Multi => {
                *block = Some(Block {
                    first_part: self.parts.len(),
                    at: *at,
                    slots: Vec::new(),
                    read_only: true,
                });
                self.parts.push(part);
            }
            Route::All(fold) => {
                let merge = self.merges.len();
                self.merges.push(Merge {
                    req: r,
                    at: *at,
                    fold,
                    parts: vec![None; self.primaries],
                    positions: Vec::new(),
                });
                let start = self.parts.len();
                self.parts.push(part);
                for node in 0..self.primaries {
                    self.units.push(Unit {
                        parts: start..start + 1,
                        target: Target::Node(node),
                        sink: Sink::Merge { merge, part: node },
                        asking: None,
                        read_only: ro,
                    });
                }
            }
            Route::Split(fold, groups) => {
                let merge = self.merges.len();
                let name = args.at(0).unwrap_or_default();
                let positions = groups
                    .iter()
                    .map(|(_, idx)| idx.iter().map(|i| i - 1).collect())
                    .collect();
                self.merges.push(Merge {
                    req: r,
                    at: *at,
                    fold,
                    parts: vec![None; groups.len()],
                    positions,
                });
                for (g, (slot, idx)) in groups.into_iter().enumerate() {
                    let mut c = Cmd::with_capacity(idx.len() + 1, 0);
                    c.arg(&name[..]);
                    for i in idx {
                        c.arg(&args.at(i).unwrap_or_default()[..]);
                    }
                    self.owned.push(c);
                    let owned = Part::Owned(self.owned.len() - 1);
                    let sink = Sink::Merge { merge, part: g };
                    self.unit(owned, Target::Slot(slot), sink, ro);
                }
            }
            Route::Scan(cursor) => {
                let (node, node_cursor) = scan_start(cursor, self.primaries)?;
                let mut c = Cmd::with_capacity(args.len(), 0);
                for i in 0..args.len() {
                    if i == 1 {
                        c.arg(node_cursor);
                    } else {
                        c.arg(&args.at(i).unwrap_or_default()[..]);
                    }
                }
                self.owned.push(c);
                let owned = Part::Owned(self.owned.len() - 1);
                self.unit(
                    owned,
                    Target::Node(node),
                    Sink::Scan {
                        req: r,
                        at: *at,
                        node,
                    },
                    ro,
                );
            }
        }
        *at += 1;
        Ok(())
    }

    /// Empty replies, one per command of each request, to fill.
    pub(crate) fn empty_replies(&self) -> Vec<Vec<Value>> {
        self.lens.iter().map(|&n| vec![Value::Nil; n]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::scan::SCAN_CURSOR_BITS;
    use crate::resp::slot::key_slot;

    fn topology() -> Topology {
        let range = |start: i64, end: i64, port: i64| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![Value::BulkString(b"h".to_vec()), Value::Int(port)]),
            ])
        };
        Topology::parse(
            Value::Array(vec![
                range(0, 5460, 1),
                range(5461, 10922, 2),
                range(10923, 16383, 3),
            ]),
            "h",
        )
        .unwrap()
    }

    /// Replies a fake server would give to a unit: the command's own arguments.
    fn echo(plan: &Plan, reqs: &[Request<'_>], unit: &Unit) -> Vec<Value> {
        plan.parts[unit.parts.clone()]
            .iter()
            .map(|p| {
                let bytes = match p {
                    Part::Owned(i) => plan.owned[*i].get_packed_command(),
                    Part::Whole { req, cmd } => {
                        let mut b = Vec::new();
                        reqs[*req].commands()[*cmd].write_resp(&mut b);
                        b
                    }
                    Part::Raw { req, cmd, range } => match &reqs[*req].commands()[*cmd] {
                        Command::Packed(pk) => pk.as_bytes()[range.clone()].to_vec(),
                        _ => unreachable!(),
                    },
                };
                Value::BulkString(bytes)
            })
            .collect()
    }

    #[test]
    fn plans_route_packed_commands_blocks_and_splits_and_restore_the_order() {
        let t = topology();
        let mut p = crate::exec::Packed::with_capacity(0);
        for args in [
            &["SET", "a", "1"][..],
            &["MULTI"],
            &["SET", "{t}1", "x"],
            &["INCR", "{t}2"],
            &["EXEC"],
            &["GET", "b"],
        ] {
            p.command(args.len());
            for a in args {
                p.arg(a.as_bytes());
            }
        }
        let mut req = Request::new(None);
        req.push(p);
        let mut mget = redis::cmd("MGET");
        mget.arg("a").arg("b").arg("{t}1").arg("c");
        req.push(mget);
        req.push(redis::cmd("DBSIZE"));
        let mut scan = redis::cmd("SCAN");
        scan.arg((1u64 << SCAN_CURSOR_BITS) | 9).arg("COUNT").arg(5);
        req.push(scan);
        let reqs = [req];
        let mut plan = Plan::new(&reqs, &t).unwrap();
        // SET a, the MULTI block (one unit), GET b, one MGET per slot, DBSIZE per
        // primary, SCAN on primary 1 with its own cursor.
        let slots = |k: &str| Target::Slot(key_slot(k.as_bytes()));
        let targets: Vec<Target> = plan.units.iter().map(|u| u.target).collect();
        assert_eq!(
            targets,
            vec![
                slots("a"),
                slots("{t}"),
                slots("b"),
                slots("a"),
                slots("b"),
                slots("{t}"),
                slots("c"),
                Target::Node(0),
                Target::Node(1),
                Target::Node(2),
                Target::Node(1),
            ]
        );
        assert_eq!(
            plan.units[1].parts.len(),
            4,
            "MULTI, SET, INCR, EXEC together"
        );
        assert_eq!(
            plan.owned.last().map(|c| c.get_packed_command()),
            Some(
                redis::cmd("SCAN")
                    .arg(9)
                    .arg("COUNT")
                    .arg(5)
                    .get_packed_command()
            )
        );
        // Replies delivered in any order land where a single server would put them.
        let mut out = plan.empty_replies();
        let units = plan.units.clone();
        for unit in units.iter().rev() {
            let replies = match unit.sink {
                Sink::Merge { .. } if unit.target == Target::Node(0) => vec![Value::Int(1)],
                Sink::Merge { .. } if matches!(unit.target, Target::Node(_)) => {
                    vec![Value::Int(10)]
                }
                Sink::Merge { .. } => {
                    // MGET per slot: one value per key, the key itself.
                    let Part::Owned(i) = &plan.parts[unit.parts.start] else {
                        unreachable!()
                    };
                    let keys = plan.owned[*i]
                        .args_iter()
                        .skip(1)
                        .map(|a| match a {
                            redis::Arg::Simple(k) => Value::BulkString(k.to_vec()),
                            _ => Value::Nil,
                        })
                        .collect();
                    vec![Value::Array(keys)]
                }
                Sink::Scan { .. } => vec![Value::Array(vec![
                    Value::BulkString(b"0".to_vec()),
                    Value::Array(vec![]),
                ])],
                _ => echo(&plan, &reqs, unit),
            };
            plan.deliver(unit.sink, replies, &mut out).unwrap();
        }
        plan.finish(&mut out).unwrap();
        let out = out.pop().unwrap();
        let cmd_bytes = |args: &[&str]| {
            let mut c = redis::cmd(args[0]);
            for a in &args[1..] {
                c.arg(*a);
            }
            Value::BulkString(c.get_packed_command())
        };
        assert_eq!(out.len(), 9);
        assert_eq!(out[0], cmd_bytes(&["SET", "a", "1"]));
        assert_eq!(out[1], cmd_bytes(&["MULTI"]));
        assert_eq!(out[4], cmd_bytes(&["EXEC"]));
        assert_eq!(out[5], cmd_bytes(&["GET", "b"]));
        let k = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            out[6],
            Value::Array(vec![k("a"), k("b"), k("{t}1"), k("c")])
        );
        assert_eq!(out[7], Value::Int(21), "DBSIZE summed over the primaries");
        // Primary 1 is done: the composite cursor moves to primary 2.
        assert_eq!(
            out[8],
            Value::Array(vec![
                Value::BulkString((2u64 << SCAN_CURSOR_BITS).to_string().into_bytes()),
                Value::Array(vec![]),
            ])
        );
    }

    #[test]
    fn transactions_over_several_slots_are_refused() {
        let t = topology();
        let mut req = Request::new(Some("k"));
        req.push(redis::cmd("SET").arg("a").arg(1).clone());
        req.push(redis::cmd("SET").arg("b").arg(1).clone());
        let e = Plan::new(&[req.clone().atomic()], &t).unwrap_err();
        assert!(
            matches!(&e, Error::CrossSlot { key: Some(k), slots } if k == "k" && slots.len() == 2),
            "{e}"
        );
        let mut block = Request::new(None);
        block.push(redis::cmd("MULTI"));
        block.push(redis::cmd("MGET").arg("a").arg("b").clone());
        block.push(redis::cmd("EXEC"));
        assert!(matches!(
            Plan::new(&[block], &t),
            Err(Error::CrossSlot { .. })
        ));
        let mut open = Request::new(None);
        open.push(redis::cmd("MULTI"));
        open.push(redis::cmd("GET").arg("a").clone());
        assert!(matches!(
            Plan::new(&[open], &t),
            Err(Error::InvalidArgument(_))
        ));
        let mut one = Request::new(None);
        one.push(redis::cmd("SET").arg("{x}a").arg(1).clone());
        one.push(redis::cmd("PING"));
        one.push(redis::cmd("SET").arg("{x}b").arg(1).clone());
        let plan = Plan::new(&[one.atomic()], &t).unwrap();
        assert_eq!(plan.units.len(), 1);
        assert_eq!(plan.units[0].target, Target::Slot(key_slot(b"x")));
    }
}
