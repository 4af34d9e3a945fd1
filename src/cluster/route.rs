//! How the commands of requests are routed on a Redis Cluster (sans-IO): each command
//! is classified ([`route`]), then requests become [`Plan`]s of [`Unit`]s (what to send
//! to which node) and the replies of the units are put back in the order of the
//! original commands.

use std::borrow::Cow;
use std::ops::Range;

use redis::{Cmd, Value};

use super::topology::Topology;
use crate::error::{Error, Result};
use crate::exec::{Command, Delivery, Request};
use crate::resp::slot::key_slot;
use crate::resp::walk_packed;

/// Bits of a composite SCAN cursor that hold the node's own cursor; the bits above
/// hold the index of the primary being scanned.
pub(crate) const SCAN_CURSOR_BITS: u32 = 50;
const SCAN_CURSOR_MASK: u64 = (1 << SCAN_CURSOR_BITS) - 1;

/// How the replies of a command sent to several nodes (or slots) become one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Integers added (`DEL`, `EXISTS`, `DBSIZE`...).
    Sum,
    /// Every part must succeed; the reply of the first (`FLUSHALL`, `MSET`...).
    FirstOk,
    /// Arrays concatenated (`KEYS`).
    Concat,
    /// Array elements put back at the positions of the keys (`MGET`).
    InOrder,
}

/// Where a command goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Keyless: any primary.
    Any,
    /// The primary serving this slot.
    Slot(u16),
    /// Every primary, replies folded.
    All(Fold),
    /// A multi-key command whose keys span slots: one command per slot (the argument
    /// indices it takes, key and value for `MSET`), replies folded.
    Split(Fold, Vec<(u16, Vec<usize>)>),
    /// `SCAN` with this composite cursor.
    Scan(u64),
    /// `MULTI`: opens a transaction block.
    Multi,
    /// `EXEC` or `DISCARD`: closes it.
    Exec,
}

/// Arguments of a command, read by index.
trait Args {
    fn len(&self) -> usize;
    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>>;
}

impl Args for [&[u8]] {
    fn len(&self) -> usize {
        <[&[u8]]>::len(self)
    }

    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        self.get(i).map(|a| Cow::Borrowed(*a))
    }
}

struct PiecesArgs<'x>(&'x [Vec<Cow<'x, [u8]>>]);

impl Args for PiecesArgs<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn at(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        match self.0.get(i)?.as_slice() {
            [one] => Some(Cow::Borrowed(&one[..])),
            many => Some(Cow::Owned(many.concat())),
        }
    }
}

/// The arguments of a (non-packed) command as slices.
fn cmd_args(c: &Cmd) -> Vec<&[u8]> {
    c.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &b""[..],
        })
        .collect()
}

/// Upper-case `name` into `buf` (names longer than `buf` are not any we route by).
fn upper<'b>(name: &[u8], buf: &'b mut [u8; 16]) -> &'b [u8] {
    if name.len() > buf.len() {
        return b"";
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    out
}

fn slot_of(args: &(impl Args + ?Sized), i: usize) -> Route {
    match args.at(i) {
        Some(k) => Route::Slot(key_slot(&k)),
        None => Route::Any,
    }
}

/// Group the keys at `first..` (every `step`-th argument) by slot.
fn keys_by_slot(args: &(impl Args + ?Sized), first: usize, step: usize, fold: Fold) -> Route {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    let mut i = first;
    while i + step <= args.len() {
        let Some(k) = args.at(i) else { break };
        let slot = key_slot(&k);
        let group = match groups.iter().rposition(|g| g.0 == slot) {
            Some(g) => g,
            None => {
                groups.push((slot, Vec::new()));
                groups.len() - 1
            }
        };
        groups[group].1.extend(i..i + step);
        i += step;
    }
    match groups.len() {
        0 => Route::Any,
        1 => Route::Slot(groups[0].0),
        _ => Route::Split(fold, groups),
    }
}

/// Classify one command.
fn route(args: &(impl Args + ?Sized)) -> Result<Route> {
    let n = args.len();
    let Some(name) = args.at(0) else {
        return Ok(Route::Any);
    };
    let mut buf = [0u8; 16];
    let name = upper(&name, &mut buf);
    let sub = || {
        let mut b = [0u8; 16];
        args.at(1)
            .map(|s| upper(&s, &mut b).to_vec())
            .unwrap_or_default()
    };
    Ok(match name {
        b"MGET" => keys_by_slot(args, 1, 1, Fold::InOrder),
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => keys_by_slot(args, 1, 1, Fold::Sum),
        b"MSET" => keys_by_slot(args, 1, 2, Fold::FirstOk),
        b"SCAN" => {
            let cursor = args
                .at(1)
                .and_then(|c| std::str::from_utf8(&c).ok()?.parse::<u64>().ok())
                .ok_or_else(|| Error::InvalidArgument("SCAN needs a numeric cursor".into()))?;
            Route::Scan(cursor)
        }
        b"MULTI" => Route::Multi,
        b"EXEC" | b"DISCARD" => Route::Exec,
        b"DBSIZE" => Route::All(Fold::Sum),
        b"FLUSHALL" | b"FLUSHDB" => Route::All(Fold::FirstOk),
        b"KEYS" => Route::All(Fold::Concat),
        b"SCRIPT" | b"FUNCTION" | b"CONFIG" => match (name, sub().as_slice()) {
            (b"SCRIPT", b"LOAD" | b"FLUSH")
            | (b"FUNCTION", b"LOAD" | b"FLUSH" | b"DELETE" | b"RESTORE")
            | (b"CONFIG", b"SET" | b"RESETSTAT") => Route::All(Fold::FirstOk),
            _ => Route::Any,
        },
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys = args
                .at(2)
                .and_then(|c| std::str::from_utf8(&c).ok()?.parse::<u64>().ok());
            match keys {
                Some(k) if k > 0 => slot_of(args, 3),
                _ => Route::Any,
            }
        }
        b"MEMORY" | b"OBJECT" | b"XINFO" | b"XGROUP" if n > 2 => slot_of(args, 2),
        b"XREAD" | b"XREADGROUP" => (1..n)
            .find(|&i| {
                args.at(i)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"STREAMS"))
            })
            .map_or(Route::Any, |i| slot_of(args, i + 1)),
        b"PING" | b"ECHO" | b"INFO" | b"TIME" | b"CLIENT" | b"COMMAND" | b"CLUSTER"
        | b"LASTSAVE" | b"SAVE" | b"BGSAVE" | b"BGREWRITEAOF" | b"READONLY" | b"READWRITE"
        | b"DEBUG" | b"SLOWLOG" | b"LATENCY" | b"ACL" | b"AUTH" | b"HELLO" | b"SELECT"
        | b"WAIT" | b"WAITAOF" | b"QUIT" | b"RANDOMKEY" | b"LOLWUT" | b"MODULE" | b"PUBLISH"
        | b"UNWATCH" | b"MEMORY" | b"OBJECT" | b"XINFO" | b"XGROUP" | b"ASKING" => Route::Any,
        _ => slot_of(args, 1),
    })
}

/// The route of a command given by its pieces or as a redis-rs command.
fn route_command(c: &Command<'_>) -> Result<Route> {
    match c {
        Command::Cmd(c) => route(&cmd_args(c)[..]),
        Command::Pieces(p) => route(&PiecesArgs(p)),
        Command::Packed(_) => Err(Error::InvalidArgument(
            "packed commands are routed one by one".into(),
        )),
    }
}

/// A command to send: one of a request, one of a request's [`Packed`](crate::exec::Packed)
/// buffer, or one made by the router (a command split by slot, a rewritten `SCAN`).
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
}

/// A command sent to several nodes or slots, whose replies become one.
#[derive(Debug)]
pub(crate) struct Merge {
    req: usize,
    at: usize,
    fold: Fold,
    parts: Vec<Option<Value>>,
    /// For [`Fold::InOrder`]: per part, the positions of its values in the reply.
    positions: Vec<Vec<usize>>,
}

/// Requests turned into units.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) parts: Vec<Part>,
    pub(crate) owned: Vec<Cmd>,
    pub(crate) units: Vec<Unit>,
    merges: Vec<Merge>,
    /// Replies of each request.
    lens: Vec<usize>,
    /// Primaries when the plan was made (SCAN cursors).
    primaries: usize,
    /// What became of each unit so far.
    pub(crate) states: Vec<UnitState>,
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
        Ok(plan)
    }

    /// What became of each request when the plan was cut short, from the replies
    /// delivered so far: a command is answered when every unit it was split into was.
    pub(crate) fn deliveries(mut self, mut out: Vec<Vec<Value>>) -> Vec<Delivery> {
        let mut known: Vec<Vec<bool>> = self.lens.iter().map(|&n| vec![true; n]).collect();
        let mut touched = vec![false; self.lens.len()];
        for (unit, state) in self.units.iter().zip(&self.states) {
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
            if *state != UnitState::NotSent
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
        out.into_iter()
            .zip(known)
            .zip(touched)
            .map(|((replies, known), touched)| {
                if known.iter().all(|&k| k) {
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
        let mut check = |route: Route| -> Result<()> {
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
                    walk_packed(p.as_bytes(), |_, args| check(route(args)?))?;
                }
                other => check(route_command(other)?)?,
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

    fn unit(&mut self, part: Part, target: Target, sink: Sink) {
        let start = self.parts.len();
        self.parts.push(part);
        self.units.push(Unit {
            parts: start..start + 1,
            target,
            sink,
            asking: None,
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
        if let Some(b) = block {
            // Inside MULTI ... EXEC: every command goes with the block.
            let exec = route == Route::Exec;
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
                });
            }
            return Ok(());
        }
        let here = Sink::Replies { req: r, at: *at };
        match route {
            Route::Any | Route::Exec => self.unit(part, Target::Any, here),
            Route::Slot(s) => self.unit(part, Target::Slot(s), here),
            Route::Multi => {
                *block = Some(Block {
                    first_part: self.parts.len(),
                    at: *at,
                    slots: Vec::new(),
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
                    self.unit(owned, Target::Slot(slot), Sink::Merge { merge, part: g });
                }
            }
            Route::Scan(cursor) => {
                let node = usize::try_from(cursor >> SCAN_CURSOR_BITS).unwrap_or(usize::MAX);
                if node >= self.primaries {
                    return Err(Error::InvalidArgument(format!(
                        "SCAN cursor {cursor} does not belong to this cluster of {} primaries",
                        self.primaries
                    )));
                }
                let mut c = Cmd::with_capacity(args.len(), 0);
                for i in 0..args.len() {
                    if i == 1 {
                        c.arg(cursor & SCAN_CURSOR_MASK);
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

/// The reply of a `SCAN` sent to primary `node`, with its cursor made composite: the
/// node's next cursor, or the start of the next primary, or 0 after the last one.
fn scan_reply(v: Value, node: usize, primaries: usize) -> Result<Value> {
    let Value::Array(mut items) = v else {
        return Ok(v);
    };
    let Some(first) = items.first() else {
        return Ok(Value::Array(items));
    };
    let cursor = match first {
        Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let Some(cursor) = cursor else {
        return Ok(Value::Array(items));
    };
    let next = scan_next(node, cursor, primaries)?;
    items[0] = Value::BulkString(next.to_string().into_bytes());
    Ok(Value::Array(items))
}

/// The composite cursor after primary `node` replied `cursor`.
pub(crate) fn scan_next(node: usize, cursor: u64, primaries: usize) -> Result<u64> {
    if cursor > SCAN_CURSOR_MASK {
        return Err(Error::unexpected(
            format!("SCAN cursor {cursor} of a node is too large for a composite cursor"),
            None,
        ));
    }
    let node = if cursor != 0 {
        node
    } else if node + 1 < primaries {
        node + 1
    } else {
        return Ok(0);
    };
    Ok(((node as u64) << SCAN_CURSOR_BITS) | cursor)
}

fn first_error(parts: &[Value]) -> Option<Value> {
    parts
        .iter()
        .find(|v| matches!(v, Value::ServerError(_)))
        .cloned()
}

fn fold(fold: Fold, parts: Vec<Option<Value>>, positions: &[Vec<usize>]) -> Result<Value> {
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

    fn r(args: &[&str]) -> Route {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        route(&a[..]).unwrap()
    }

    fn slot(k: &str) -> u16 {
        key_slot(k.as_bytes())
    }

    #[test]
    fn routes_commands() {
        assert_eq!(r(&["get", "foo"]), Route::Slot(12182));
        assert_eq!(r(&["PING"]), Route::Any);
        assert_eq!(r(&["info", "memory"]), Route::Any);
        assert_eq!(r(&["dbsize"]), Route::All(Fold::Sum));
        assert_eq!(r(&["script", "load", "x"]), Route::All(Fold::FirstOk));
        assert_eq!(r(&["script", "exists", "x"]), Route::Any);
        assert_eq!(r(&["MEMORY", "USAGE", "foo"]), Route::Slot(12182));
        assert_eq!(r(&["MEMORY", "STATS"]), Route::Any);
        assert_eq!(r(&["EVAL", "s", "1", "foo", "a"]), Route::Slot(12182));
        assert_eq!(r(&["EVAL", "s", "0", "a"]), Route::Any);
        assert_eq!(
            r(&["XREAD", "COUNT", "2", "STREAMS", "foo", "0"]),
            Route::Slot(12182)
        );
        assert_eq!(r(&["SCAN", "42", "MATCH", "*"]), Route::Scan(42));
        assert_eq!(r(&["mget", "{a}1", "{a}2"]), Route::Slot(slot("a")));
        assert_eq!(
            r(&["MGET", "foo", "bar", "{foo}x"]),
            Route::Split(
                Fold::InOrder,
                vec![(slot("foo"), vec![1, 3]), (slot("bar"), vec![2])]
            )
        );
        assert_eq!(
            r(&["MSET", "foo", "1", "bar", "2"]),
            Route::Split(
                Fold::FirstOk,
                vec![(slot("foo"), vec![1, 2]), (slot("bar"), vec![3, 4])]
            )
        );
        assert_eq!(r(&["multi"]), Route::Multi);
        assert_eq!(r(&["DISCARD"]), Route::Exec);
        let a: Vec<&[u8]> = vec![b"SCAN", b"x"];
        assert!(route(&a[..]).is_err());
    }

    #[test]
    fn composite_scan_cursors() {
        assert_eq!(scan_next(0, 5, 3).unwrap(), 5);
        assert_eq!(scan_next(0, 0, 3).unwrap(), 1 << SCAN_CURSOR_BITS);
        assert_eq!(scan_next(1, 7, 3).unwrap(), (1 << SCAN_CURSOR_BITS) | 7);
        assert_eq!(scan_next(2, 0, 3).unwrap(), 0);
        assert!(scan_next(0, 1 << SCAN_CURSOR_BITS, 3).is_err());
    }

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
