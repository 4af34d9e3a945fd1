//! Steps: an operation as a request plus the continuation that parses its replies.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Delivered, Replies, Request, Requests};
use crate::error::{Error, Result};

/// The cost (in bytes of work, see [`Step::compute`]) from which `run_async` runs a
/// [`Step::Compute`] on tokio's blocking threads (`spawn_blocking`) instead of the
/// runtime thread that polls it; [`run`](super::run) always runs it in place.
///
/// 1 MiB, from `examples/async_decode.rs` on a loaded 2-core machine: an lz4 array
/// decode in place takes about 0.1 ms for 64 KiB, 0.25 ms for 256 KiB, 0.43 ms for
/// 512 KiB, 1.8 to 2.2 ms from 768 KiB to 1 MiB and 17 ms for 16 MiB. The same decode
/// awaited through `spawn_blocking` took 1.05 to 4 times as long up to 512 KiB (the
/// blocking thread has to be woken and scheduled, its caches are cold), and as long or
/// less from 768 KiB on. From 1 MiB moving the work costs no latency and frees the
/// runtime thread; below it a decode blocks the runtime thread for at most about 2 ms.
pub const OFFLOAD_THRESHOLD: usize = 1 << 20;

/// What parses the replies of a [`Step::Send`]: it reads them with a [`Replies`] cursor
/// and returns the next step.
pub type Continuation<'a, T> = Box<dyn FnOnce(Replies) -> Result<Step<'a, T>> + Send + 'a>;

/// What a continuation of several independent requests returns.
pub type ContinuationAll<'a, T> = Box<dyn FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a>;

/// One step of an operation: done, or a request to send and what to do with its replies.
/// `'a` is the lifetime of memory the requests borrow (e.g. the array being written).
pub enum Step<'a, T> {
    /// The operation has its result.
    Done(T),
    /// Send this request, then feed its replies to the continuation.
    Send(Request<'a>, Continuation<'a, T>),
    /// Send these requests, which do not depend on each other's replies, then feed the
    /// replies of each to the continuation. Connections may send them all before reading
    /// any reply (pipelining across requests, so the server never waits for the client),
    /// each as soon as it is built. When a request is refused as a whole or the
    /// connection fails part-way, the continuation gets an [`Interrupted`](super::Interrupted) that says
    /// what became of each request (answered, in flight, never sent), so that a bulk
    /// write can report exactly what was stored.
    SendAll(Requests<'a>, ContinuationAll<'a, T>),
    /// The operation failed without sending anything more (what
    /// [`and_then`](Self::and_then) makes of a continuation that fails at once).
    Failed(Error),
    /// CPU-heavy work that sends nothing (decoding a large value), then the next step;
    /// made by [`Step::compute`]. [`run`](super::run) runs it in place; `run_async` on
    /// tokio's blocking threads when its cost is at least [`OFFLOAD_THRESHOLD`], so that
    /// it does not block the runtime thread.
    Compute(Compute<'a, T>),
}

/// The work of a [`Step::Compute`], its result boxed (the work is `'static` to be sent
/// to another thread, whatever the lifetime of the step).
type Work = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send + 'static>;

/// What a [`Step::Compute`] does with the boxed result of its work (or the error of a
/// work that panicked).
type Resume<'a, T> =
    Box<dyn FnOnce(Result<Box<dyn Any + Send>>) -> Result<Step<'a, T>> + Send + 'a>;

/// A [`Step::Compute`]: work that borrows nothing (so it can run on any thread), its
/// estimated cost, and the continuation that takes its result.
pub struct Compute<'a, T> {
    task: String,
    cost: usize,
    work: Work,
    then: Resume<'a, T>,
}

impl<'a, T> Compute<'a, T> {
    /// The estimated cost of the work, in bytes it produces or scans (see
    /// [`Step::compute`]).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// What the work does (named by [`Error::Panicked`] when it panics).
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Run the work on this thread, then its continuation; a panic of the work is
    /// [`Error::Panicked`].
    pub fn run(self) -> Result<Step<'a, T>> {
        let (work, then) = self.detach();
        then(work())
    }

    /// The work, ready to run on any thread (its panic caught and made
    /// [`Error::Panicked`]), and the continuation to give its outcome to.
    pub(crate) fn detach(
        self,
    ) -> (
        impl FnOnce() -> Result<Box<dyn Any + Send>> + Send + 'static,
        Resume<'a, T>,
    ) {
        let Compute {
            task, work, then, ..
        } = self;
        let work = move || {
            catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
                Error::panicked(format!("{task} ({})", panic_message(payload.as_ref())))
            })
        };
        (work, then)
    }

    /// The same work, its continuation's outcome passed through `f`.
    fn wrap<'b, U>(
        self,
        f: impl FnOnce(Result<Step<'a, T>>) -> Result<Step<'b, U>> + Send + 'b,
    ) -> Compute<'b, U>
    where
        'a: 'b,
        T: 'b,
    {
        let then = self.then;
        Compute {
            task: self.task,
            cost: self.cost,
            work: self.work,
            then: Box::new(move |out| f(then(out))),
        }
    }
}

/// The message of a panic's payload (a `&str` or a `String` for `panic!`s).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

impl<T> std::fmt::Debug for Step<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Done(_) => f.write_str("Step::Done"),
            Step::Send(r, _) => f.debug_tuple("Step::Send").field(r).finish(),
            Step::SendAll(r, _) => f.debug_tuple("Step::SendAll").field(r).finish(),
            Step::Failed(e) => f.debug_tuple("Step::Failed").field(e).finish(),
            Step::Compute(c) => f
                .debug_struct("Step::Compute")
                .field("task", &c.task)
                .field("cost", &c.cost)
                .finish_non_exhaustive(),
        }
    }
}

impl<'a, T: Send + 'a> Step<'a, T> {
    /// A step that sends `req` and parses the replies with `parse` (one reply per
    /// command, read in order; see [`Replies`]).
    pub fn send(
        req: Request<'a>,
        parse: impl FnOnce(Replies) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::Send(req, Box::new(parse))
    }

    /// A step that sends `req` alone and gives `parse` what became of it ([`Delivered`]):
    /// its replies, or, when the connection failed or the request was refused as a whole,
    /// whether it was in flight or not sent. For writes that account for every item.
    pub fn send_tracked(
        req: Request<'a>,
        parse: impl FnOnce(Delivered) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::SendAll(Requests::from(vec![req]), Box::new(parse))
    }

    /// A step that runs `work`, CPU-heavy work of about `cost` bytes (what it produces
    /// or scans: e.g. the decompressed size of a value it decodes), then continues with
    /// `then` on its result. The work borrows nothing, so that a runner can move it to
    /// another thread: `run_async` runs it with `tokio::task::spawn_blocking` when
    /// `cost` is at least [`OFFLOAD_THRESHOLD`] and a tokio runtime is current, and in
    /// place otherwise (as [`run`](super::run) always does), so small work keeps its
    /// latency. `then` runs where the runner is. A panic of `work` is
    /// [`Error::Panicked`] naming `task` (e.g. "the decode of key \"x\"").
    pub fn compute<U: Send + 'static>(
        task: impl Into<String>,
        cost: usize,
        work: impl FnOnce() -> Result<U> + Send + 'static,
        then: impl FnOnce(U) -> Result<Step<'a, T>> + Send + 'a,
    ) -> Self {
        Step::Compute(Compute {
            task: task.into(),
            cost,
            work: Box::new(move || Box::new(work()) as Box<dyn Any + Send>),
            then: Box::new(move |out| match out?.downcast::<Result<U>>() {
                Ok(result) => then((*result)?),
                // Unreachable: the work and its continuation are only made here, together.
                Err(_) => Err(Error::panicked(
                    "a compute step (its result is not of the type its continuation takes)",
                )),
            }),
        })
    }

    /// Continue with `f` once this step has its result. When the result is already
    /// there, `f` runs now, and its error is a [`Step::Failed`].
    pub fn and_then<U: Send + 'a>(
        self,
        f: impl FnOnce(T) -> Result<Step<'a, U>> + Send + 'a,
    ) -> Step<'a, U> {
        match self {
            Step::Done(v) => f(v).unwrap_or_else(Step::Failed),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.and_then(f)))),
            Step::SendAll(reqs, k) => Step::SendAll(reqs, Box::new(move |r| Ok(k(r)?.and_then(f)))),
            Step::Failed(e) => Step::Failed(e),
            Step::Compute(c) => Step::Compute(c.wrap(move |s| Ok(s?.and_then(f)))),
        }
    }

    /// Map the final result with `f`, which may fail.
    pub fn try_map<U: Send + 'a>(self, f: impl FnOnce(T) -> Result<U> + Send + 'a) -> Step<'a, U> {
        self.and_then(move |v| f(v).map(Step::Done))
    }

    /// The same step, seen as borrowing for a shorter lifetime (a `Step<'static, T>`
    /// where a `Step<'a, T>` is expected).
    pub fn narrow<'b>(self) -> Step<'b, T>
    where
        'a: 'b,
        T: 'b,
    {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.narrow()))),
            Step::SendAll(reqs, k) => Step::SendAll(
                // Not an identity: each request is coerced to the shorter lifetime (the
                // iterator's item type itself cannot be).
                #[allow(clippy::map_identity)]
                Requests::new(reqs.map(|r| -> Request<'b> { r })),
                Box::new(move |r| Ok(k(r)?.narrow())),
            ),
            Step::Failed(e) => Step::Failed(e),
            Step::Compute(c) => Step::Compute(c.wrap(|s| Ok(s?.narrow()))),
        }
    }

    /// Map the error of this and any later step's parse of its replies (a request a
    /// connection fails to send on a [`Step::Send`] is returned by the connection as
    /// it is; a [`Step::SendAll`]'s continuation sees what became of its requests).
    pub fn map_err(self, f: impl FnOnce(Error) -> Error + Clone + Send + 'a) -> Step<'a, T> {
        match self {
            Step::Done(v) => Step::Done(v),
            Step::Send(req, k) => Step::Send(
                req,
                Box::new(move |r| {
                    let later = f.clone();
                    k(r).map(|s| s.map_err(later)).map_err(f)
                }),
            ),
            Step::SendAll(reqs, k) => Step::SendAll(
                reqs,
                Box::new(move |r| {
                    let later = f.clone();
                    k(r).map(|s| s.map_err(later)).map_err(f)
                }),
            ),
            Step::Failed(e) => Step::Failed(f(e)),
            Step::Compute(c) => Step::Compute(c.wrap(move |s| {
                let later = f.clone();
                s.map(|s| s.map_err(later)).map_err(f)
            })),
        }
    }

    /// Map the final result.
    pub fn map<U: Send + 'a>(self, f: impl FnOnce(T) -> U + Send + 'a) -> Step<'a, U> {
        match self {
            Step::Done(v) => Step::Done(f(v)),
            Step::Send(req, k) => Step::Send(req, Box::new(move |r| Ok(k(r)?.map(f)))),
            Step::SendAll(reqs, k) => Step::SendAll(reqs, Box::new(move |r| Ok(k(r)?.map(f)))),
            Step::Failed(e) => Step::Failed(e),
            Step::Compute(c) => Step::Compute(c.wrap(move |s| Ok(s?.map(f)))),
        }
    }

    /// A step that sends `req` and maps its replies (see [`Replies`]) to the final
    /// result.
    pub fn then(req: Request<'a>, parse: impl FnOnce(Replies) -> Result<T> + Send + 'a) -> Self {
        Step::Send(req, Box::new(move |v| parse(v).map(Step::Done)))
    }
}

#[cfg(test)]
mod tests {
    use std::thread::ThreadId;

    use super::*;
    use crate::exec::{SyncConnection, run};

    /// A connection for plans that send nothing.
    struct NoConnection;

    impl SyncConnection for NoConnection {
        fn run_request(&mut self, _: &Request<'_>) -> Result<Vec<redis::Value>> {
            Err(Error::InvalidArgument("nothing is sent".into()))
        }
    }

    #[cfg(feature = "tokio")]
    impl crate::exec::AsyncConnection for NoConnection {
        async fn run_request(&mut self, _: Request<'_>) -> Result<Vec<redis::Value>> {
            Err(Error::InvalidArgument("nothing is sent".into()))
        }

        async fn run_requests(&mut self, reqs: Requests<'_>) -> Delivered {
            SyncConnection::run_requests(self, reqs)
        }
    }

    /// Work of `cost` that returns the thread it ran on; the step's result is that
    /// thread and the one its continuation ran on.
    fn where_it_runs(cost: usize) -> Step<'static, (ThreadId, ThreadId)> {
        Step::compute(
            "where it runs",
            cost,
            || Ok(std::thread::current().id()),
            |work| Ok(Step::Done((work, std::thread::current().id()))),
        )
    }

    fn panicking(cost: usize) -> Step<'static, u8> {
        Step::compute(
            "the test's work",
            cost,
            || -> Result<u8> { panic!("on purpose") },
            |v| Ok(Step::Done(v)),
        )
    }

    fn assert_panicked<T: std::fmt::Debug>(r: Result<T>) {
        match r {
            Err(Error::Panicked { task }) => {
                assert!(task.contains("the test's work"), "{task}");
                assert!(task.contains("on purpose"), "{task}");
            }
            other => panic!("not Panicked: {other:?}"),
        }
    }

    #[test]
    fn the_sync_runner_runs_compute_steps_in_place() {
        let here = std::thread::current().id();
        for cost in [0, OFFLOAD_THRESHOLD, usize::MAX] {
            assert_eq!(
                run(&mut NoConnection, where_it_runs(cost)).unwrap(),
                (here, here)
            );
        }
        assert_panicked(run(&mut NoConnection, panicking(0)));
        assert_panicked(run(&mut NoConnection, panicking(OFFLOAD_THRESHOLD)));
        assert!(format!("{:?}", where_it_runs(7)).contains("cost: 7"));
    }

    #[test]
    fn combinators_compose_through_compute_steps() {
        let step: Step<'static, u32> = Step::compute("add", 3, || Ok(2u32), |v| Ok(Step::Done(v)));
        let step = step
            .map(|v| v + 1)
            .and_then(|v| {
                Ok(Step::compute(
                    "double",
                    1,
                    move || Ok(v * 2),
                    |v| Ok(Step::Done(v)),
                ))
            })
            .try_map(|v| Ok(v + 10))
            .narrow();
        let Step::Compute(c) = &step else {
            panic!("not a compute step: {step:?}")
        };
        assert_eq!((c.task(), c.cost()), ("add", 3));
        assert_eq!(run(&mut NoConnection, step).unwrap(), 16);
        // An error of the work, and of a later step's work, goes through map_err.
        let failing = |at: u32| -> Step<'static, u32> {
            Step::compute(
                "first",
                1,
                move || {
                    if at == 0 {
                        Err(Error::InvalidArgument("first".into()))
                    } else {
                        Ok(1)
                    }
                },
                move |v| {
                    Ok(Step::compute(
                        "second",
                        1,
                        move || Err::<u32, _>(Error::InvalidArgument(format!("second {v}"))),
                        |v| Ok(Step::Done(v)),
                    ))
                },
            )
            .map_err(|e| Error::InvalidArgument(format!("mapped: {e}")))
        };
        for (at, want) in [
            (0, "invalid argument: mapped: invalid argument: first"),
            (1, "invalid argument: mapped: invalid argument: second 1"),
        ] {
            let e = run(&mut NoConnection, failing(at)).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn run_async_moves_costly_work_off_the_runtime_thread() {
        use crate::exec::run_async;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let (work, then) = rt
            .block_on(run_async(
                &mut NoConnection,
                where_it_runs(OFFLOAD_THRESHOLD),
            ))
            .unwrap();
        assert_ne!(
            work, here,
            "work at the threshold ran on the runtime thread"
        );
        assert_eq!(then, here, "the continuation ran off the runtime thread");
        let below = rt
            .block_on(run_async(
                &mut NoConnection,
                where_it_runs(OFFLOAD_THRESHOLD - 1),
            ))
            .unwrap();
        assert_eq!(below, (here, here));
        // Composed steps keep their cost.
        let mapped = where_it_runs(OFFLOAD_THRESHOLD).map(|(w, _)| w).narrow();
        assert_ne!(
            rt.block_on(run_async(&mut NoConnection, mapped)).unwrap(),
            here
        );
        // Panics, in place or on a blocking thread, are errors.
        assert_panicked(rt.block_on(run_async(&mut NoConnection, panicking(0))));
        assert_panicked(rt.block_on(run_async(&mut NoConnection, panicking(OFFLOAD_THRESHOLD))));
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn run_async_without_a_tokio_runtime_runs_costly_work_in_place() {
        let here = std::thread::current().id();
        let mut con = NoConnection;
        let fut = crate::exec::run_async(&mut con, where_it_runs(usize::MAX));
        let mut fut = std::pin::pin!(fut);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => assert_eq!(r.unwrap(), (here, here)),
            std::task::Poll::Pending => panic!("a step that sends nothing waited"),
        }
    }
}
