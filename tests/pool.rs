//! The pool of direct async connections (feature `pool`) against a real redis-server:
//! many tasks share a few connections; a connection whose call was cancelled is never
//! handed out again.

use std::time::Duration;

use ndarray::Array2;
use redis::Value;
use redstash::direct::ConnectOptions;
use redstash::direct::pool::{DirectManager, DirectPool, PooledConnection};
use redstash::exec::{AsyncConnection, Request};
use redstash::testkit::RedisServer;
use redstash::{FeatureStore, View};

fn pool(srv: &RedisServer, size: usize) -> DirectPool {
    let manager = DirectManager::new(srv.url().as_str(), ConnectOptions::default()).unwrap();
    DirectPool::builder(manager).max_size(size).build().unwrap()
}

fn client_id(v: Vec<Value>) -> i64 {
    match v[..] {
        [Value::Int(id)] => id,
        ref other => panic!("CLIENT ID replied {other:?}"),
    }
}

/// 64 tasks read feature rows through a pool of 8 connections: every read is right and
/// the pool never opens more than 8.
#[test]
fn many_tasks_share_a_few_connections() {
    let srv = RedisServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = pool(&srv, 8);
        let store = FeatureStore::new("fs");
        let ids: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
        let values = Array2::from_shape_fn((1000, 16), |(i, j)| (i * 16 + j) as f32);
        {
            let mut con = pool.get().await.unwrap();
            store
                .register_view_async(&mut *con, &View::of::<f32>("emb", 16))
                .await
                .unwrap();
            store
                .write_many_async(&mut *con, "emb", &ids, &values)
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for t in 0..64usize {
            let (pool, store) = (pool.clone(), store.clone());
            let values = values.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..20usize {
                    let start = (t * 37 + r * 11) % 900;
                    let want: Vec<String> = (start..start + 100).map(|i| format!("u{i}")).collect();
                    let mut con = pool.get().await.unwrap();
                    let rows = store
                        .read_many_async::<f32, _, _>(&mut *con, "emb", &want)
                        .await
                        .unwrap();
                    assert!(rows.present.iter().all(|&p| p));
                    assert_eq!(
                        rows.values,
                        values.slice(ndarray::s![start..start + 100, ..])
                    );
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let status = pool.status();
        assert!(status.size <= 8, "{status:?}");
        assert!(status.size >= 2, "{status:?}");
    });
}

/// A call cancelled mid-reply leaves its connection out of sync: the pool closes it and
/// the next task gets a connection that works (another one), never the replies of the
/// cancelled call.
#[test]
fn a_connection_whose_call_was_cancelled_is_not_handed_out_again() {
    let srv = RedisServer::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = pool(&srv, 1);
        let (first, first_object) = {
            let mut con = pool.get().await.unwrap();
            let id = client_id(
                con.run_request(Request::single(
                    redis::cmd("CLIENT").arg("ID").clone(),
                    None,
                ))
                .await
                .unwrap(),
            );
            let mut blpop = redis::cmd("BLPOP");
            blpop.arg("nothing").arg(1);
            let call = con.run_request(Request::single(blpop, None));
            assert!(
                tokio::time::timeout(Duration::from_millis(50), call)
                    .await
                    .is_err()
            );
            assert!(!con.is_open());
            (id, PooledConnection::id(&con))
        };
        let mut con = pool.get().await.unwrap();
        assert_ne!(PooledConnection::id(&con), first_object, "not replaced");
        let id = client_id(
            con.run_request(Request::single(
                redis::cmd("CLIENT").arg("ID").clone(),
                None,
            ))
            .await
            .unwrap(),
        );
        assert_ne!(id, first, "the cancelled connection was handed out again");
        let pong = con
            .run_request(Request::single(redis::cmd("PING"), None))
            .await
            .unwrap();
        assert_eq!(pong, vec![Value::SimpleString("PONG".into())]);
        assert_eq!(pool.status().size, 1);
    });
}
