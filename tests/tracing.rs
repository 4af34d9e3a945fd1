//! A `tracing` span per store operation (feature `tracing`), against a real
//! redis-server: the fields a service sees in its traces.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use redstash::direct::{DirectAsyncConnection, DirectConnection};
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, RedisErrorKind};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

type Fields = BTreeMap<String, String>;

/// Collects the fields of every closed `redstash` span.
#[derive(Clone, Default)]
struct Collect {
    open: Arc<Mutex<BTreeMap<u64, Fields>>>,
    closed: Arc<Mutex<Vec<Fields>>>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Collect
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() != "redstash" {
            return;
        }
        let mut f = Fields::new();
        attrs.record(&mut Visitor(&mut f));
        self.open.lock().unwrap().insert(id.into_u64(), f);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Visitor(f));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(f) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(f);
        }
    }
}

fn spans(run: impl FnOnce()) -> Vec<Fields> {
    let collect = Collect::default();
    let subscriber = Registry::default().with(collect.clone());
    tracing::subscriber::with_default(subscriber, run);
    collect.closed.lock().unwrap().clone()
}

#[test]
fn every_store_operation_is_a_span_with_what_it_did() {
    let srv = RedisServer::start().unwrap();
    let store = ArrayStore::new("t");
    let a = ndarray::Array1::<f32>::zeros(1 << 18); // 1 MiB of data
    let got = spans(|| {
        let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
        store.put(&mut con, "a", &a).unwrap();
        store.get(&mut con, "a").unwrap().unwrap();
        store.get_many(&mut con, &["a", "missing"]).unwrap();
        let mut plain = srv.client().unwrap().get_connection().unwrap();
        let _: () = redis::cmd("HSET")
            .arg("t:h")
            .arg("f")
            .arg("v")
            .query(&mut plain)
            .unwrap();
        let e = store.get(&mut con, "h").unwrap_err();
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::WrongType));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut con = DirectAsyncConnection::open(srv.url().as_str())
                .await
                .unwrap();
            store.get_async(&mut con, "a").await.unwrap().unwrap();
        });
    });
    let ops: Vec<&str> = got.iter().map(|f| f["op"].as_str()).collect();
    assert_eq!(
        ops,
        ["put", "get", "get_many", "get", "get_async"],
        "{got:?}"
    );
    for f in &got {
        assert_eq!(f["store"], "ArrayStore", "{f:?}");
        for field in [
            "requests",
            "commands",
            "bytes_out",
            "bytes_in",
            "elapsed_us",
            "outcome",
        ] {
            assert!(f.contains_key(field), "{field} missing: {f:?}");
        }
    }
    let (put, get, many, wrong, get_async) = (&got[0], &got[1], &got[2], &got[3], &got[4]);
    assert_eq!(put["key"], "t:a");
    assert_eq!(put["outcome"], "ok");
    let n = |f: &Fields, k: &str| f[k].parse::<u64>().unwrap();
    assert!(n(put, "bytes_out") >= 1 << 20, "{put:?}");
    assert!(n(get, "bytes_in") >= 1 << 20, "{get:?}");
    assert!(n(get, "bytes_out") < 1024, "{get:?}");
    assert_eq!(n(many, "commands"), 1, "one MGET: {many:?}");
    assert_eq!(wrong["outcome"], "error");
    assert!(wrong["error"].contains("WRONGTYPE"), "{wrong:?}");
    assert_eq!(get_async["key"], "t:a");
    assert!(n(get_async, "bytes_in") >= 1 << 20, "{get_async:?}");
}

/// Without a subscriber the operations run as before (nothing is counted).
#[test]
fn without_a_subscriber_nothing_changes() {
    let srv = RedisServer::start().unwrap();
    let store = ArrayStore::new("t");
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    store
        .put(&mut con, "a", &ndarray::arr1(&[1u8, 2, 3]))
        .unwrap();
    let back = store.get(&mut con, "a").unwrap().unwrap();
    assert_eq!(back.shape(), &[3]);
}

/// The table operations over several connections have a span of their own too (time
/// and outcome; their requests run on threads of their own).
#[cfg(feature = "arrow")]
#[test]
fn table_operations_over_several_connections_are_spans() {
    use redstash::TableStore;
    use redstash::arrowgen::GenSpec;
    use redstash::store::table::ReadOptions;
    let srv = RedisServer::start().unwrap();
    let input: Vec<_> = GenSpec {
        partitions: 2,
        batches: 2,
        rows: 100,
        ..GenSpec::default()
    }
    .iter()
    .collect::<redstash::Result<_>>()
    .unwrap();
    let store = TableStore::new("").with_partition_by("partition");
    let got = spans(|| {
        let mut cons: Vec<DirectConnection> = (0..2)
            .map(|_| DirectConnection::open(srv.url().as_str()).unwrap())
            .collect();
        store
            .split_parallel(&mut cons, "t", input.into_iter())
            .unwrap();
        let t = store
            .read_parallel(&mut cons, "t", &ReadOptions::all())
            .unwrap()
            .unwrap();
        assert_eq!(t.num_rows(), 400);
        assert!(
            store
                .read_parallel(&mut cons, "missing", &ReadOptions::all())
                .unwrap()
                .is_none()
        );
    });
    let parallel: Vec<&Fields> = got
        .iter()
        .filter(|f| f["op"].ends_with("_parallel"))
        .collect();
    assert_eq!(parallel.len(), 3, "{got:?}");
    assert_eq!(parallel[0]["op"], "split_parallel");
    assert_eq!(parallel[0]["store"], "TableStore");
    assert_eq!(parallel[0]["key"], "t");
    assert_eq!(parallel[1]["op"], "read_parallel");
    assert_eq!(parallel[1]["outcome"], "ok");
    assert!(parallel[1].contains_key("elapsed_us"));
}
