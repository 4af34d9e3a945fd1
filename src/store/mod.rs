//! Stores: typed views of Redis keys. Each operation is a plan and a parse (see
//! [`crate::exec`]); `op(&mut con, ..)` runs it on a sync connection, `op_async` on an
//! async one.

use std::time::Duration;

pub mod array;
pub mod batch;
pub(crate) mod chunked;
pub mod data_meta;
#[cfg(feature = "ndarray")]
pub mod feature;
#[cfg(feature = "arrow")]
pub mod table;
pub(crate) mod tally;

/// Join a store prefix and a name into a key: `prefix:name`, or `name` without prefix.
pub(crate) fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        let mut k = String::with_capacity(prefix.len() + 1 + name.len());
        k.push_str(prefix);
        k.push(':');
        k.push_str(name);
        k
    }
}

pub(crate) use crate::resp::slot::hash_tag;

/// The plan of an `exists`: `EXISTS key` (a read: idempotent), `true` if the key exists.
pub(crate) fn exists_step(key: &str) -> crate::exec::Step<'static, bool> {
    let mut c = redis::cmd("EXISTS");
    c.arg(key);
    crate::exec::Step::then(
        crate::exec::Request::single(c, Some(key)).idempotent(),
        |mut r| {
            let n = r.next_int()?;
            r.finish()?;
            Ok(n > 0)
        },
    )
}

/// TTL as whole milliseconds for `PX` (at least 1).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// Run `f`, an operation of `store` over several connections, in a span of its own
/// (feature `tracing`: time and outcome), or just run it.
#[allow(dead_code)]
pub(crate) fn traced<T>(
    store: &'static str,
    op: &'static str,
    key: &str,
    f: impl FnOnce() -> crate::Result<T>,
) -> crate::Result<T> {
    #[cfg(feature = "tracing")]
    return crate::exec::trace::timed(store, op, key, f);
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (store, op, key);
        f()
    }
}

/// [`traced`] for an async operation.
#[cfg(feature = "tokio")]
#[allow(dead_code)]
pub(crate) async fn traced_async<T>(
    store: &'static str,
    op: &'static str,
    key: &str,
    f: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    #[cfg(feature = "tracing")]
    return crate::exec::trace::timed_async(store, op, key, f).await;
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (store, op, key);
        f.await
    }
}

/// Generate the `op` (sync) and `op_async` (tokio) methods of a store from its plan
/// functions, so that no operation is written twice.
macro_rules! sync_and_async {
    ($(
        $(#[$doc:meta])*
        fn $name:ident / $name_async:ident
            $(<$($g:ident : $bound:path $(| $more:path)*),*>)?
            ($($arg:ident : $ty:ty),*) -> $ret:ty = $plan:ident;
    )*) => {$(
        $(#[$doc])*
        #[cfg(feature = "sync")]
        pub fn $name<$($($g: $bound $(+ $more)*,)*)? Con: $crate::exec::SyncConnection + ?Sized>(
            &self,
            con: &mut Con,
            $($arg: $ty),*
        ) -> $crate::Result<$ret> {
            #[cfg(feature = "tracing")]
            return $crate::exec::trace::run_traced(
                $crate::exec::trace::span(std::any::type_name::<Self>(), stringify!($name)),
                con,
                || self.$plan($($arg),*),
            );
            #[cfg(not(feature = "tracing"))]
            $crate::exec::run(con, self.$plan($($arg),*)?)
        }

        $(#[$doc])*
        ///
        /// Async version (feature `tokio`).
        #[cfg(feature = "tokio")]
        pub async fn $name_async<$($($g: $bound $(+ $more)*,)*)? Con: $crate::exec::AsyncConnection + ?Sized>(
            &self,
            con: &mut Con,
            $($arg: $ty),*
        ) -> $crate::Result<$ret> {
            #[cfg(feature = "tracing")]
            return $crate::exec::trace::run_traced_async(
                $crate::exec::trace::span(std::any::type_name::<Self>(), stringify!($name_async)),
                con,
                || self.$plan($($arg),*),
            )
            .await;
            #[cfg(not(feature = "tracing"))]
            {
                let step = self.$plan($($arg),*)?;
                $crate::exec::run_async(con, step).await
            }
        }
    )*};
}
pub(crate) use sync_and_async;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_join_with_a_colon() {
        // The hash-tag rule is tested where it is written (`resp::slot`).
        assert_eq!(join_key("", "k"), "k");
        assert_eq!(join_key("p", "k"), "p:k");
    }
}
