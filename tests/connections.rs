//! Connections for services, against real redis-servers: timeouts (a paused server, a
//! server that never answers the handshake), recovery after a killed connection, a
//! server restart and a cancelled call, and the retry policy (idempotent requests sent
//! again, others never), on the sync and tokio direct connections.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use redis::Value;
use redstash::direct::{ConnectOptions, DirectAsyncConnection, DirectConnection};
use redstash::exec::{AsyncConnection, Request, RetryPolicy, SyncConnection};
use redstash::testkit::RedisServer;
use redstash::{Error, RedisErrorKind};

fn server() -> RedisServer {
    RedisServer::start().expect("start redis-server (run scripts/setup)")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

fn req(args: &[&str]) -> Request<'static> {
    Request::single(cmd(args), None)
}

/// A plain redis-rs connection, for setting up and checking.
fn admin(srv: &RedisServer) -> redis::Connection {
    srv.client().unwrap().get_connection().unwrap()
}

fn kind(e: &Error) -> Option<RedisErrorKind> {
    e.redis_kind()
}

/// Pause every client's commands for `ms` from another connection.
fn pause(srv: &RedisServer, ms: u64) {
    let _: () = cmd(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
        .query(&mut admin(srv))
        .unwrap();
}

/// Close the server side of the connection whose `CLIENT ID` is `id`.
fn kill_client(srv: &RedisServer, id: i64) {
    let n: i64 = cmd(&["CLIENT", "KILL", "ID", &id.to_string()])
        .query(&mut admin(srv))
        .unwrap();
    assert_eq!(n, 1);
}

fn client_id_sync(con: &mut DirectConnection) -> i64 {
    match con.run_request(&req(&["CLIENT", "ID"])).unwrap()[..] {
        [Value::Int(id)] => id,
        ref other => panic!("CLIENT ID replied {other:?}"),
    }
}

const SHORT: Duration = Duration::from_millis(300);
/// Bound on how late a timed-out call may return (a loaded 2-core CI machine).
const MARGIN: Duration = Duration::from_millis(1500);

fn short_timeouts() -> ConnectOptions {
    ConnectOptions::default()
        .with_response_timeout(Some(SHORT))
        .with_retry(RetryPolicy::none())
}

/// A call to a paused server returns a `Timeout` error within the response timeout (plus
/// a margin); once the pause is over, the next call succeeds on a new connection.
#[test]
fn a_stalled_server_times_out_and_the_next_call_succeeds_sync() {
    let srv = server();
    let mut con = DirectConnection::open_with(srv.url().as_str(), short_timeouts()).unwrap();
    con.run_request(&req(&["SET", "k", "v"])).unwrap();
    pause(&srv, 1500);
    let t = Instant::now();
    let e = con.run_request(&req(&["GET", "k"])).unwrap_err();
    assert!(t.elapsed() < SHORT + MARGIN, "{:?}", t.elapsed());
    assert_eq!(kind(&e), Some(RedisErrorKind::Timeout), "{e}");
    assert!(!con.is_open());
    std::thread::sleep(Duration::from_millis(1600));
    let v = con.run_request(&req(&["GET", "k"])).unwrap();
    assert_eq!(v, vec![Value::BulkString(b"v".to_vec())]);
    assert!(con.is_open());
}

#[test]
fn a_stalled_server_times_out_and_the_next_call_succeeds_async() {
    let srv = server();
    rt().block_on(async {
        let mut con = DirectAsyncConnection::open_with(srv.url().as_str(), short_timeouts())
            .await
            .unwrap();
        con.run_request(req(&["SET", "k", "v"])).await.unwrap();
        pause(&srv, 1500);
        let t = Instant::now();
        let e = con.run_request(req(&["GET", "k"])).await.unwrap_err();
        assert!(t.elapsed() < SHORT + MARGIN, "{:?}", t.elapsed());
        assert_eq!(kind(&e), Some(RedisErrorKind::Timeout), "{e}");
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let v = con.run_request(req(&["GET", "k"])).await.unwrap();
        assert_eq!(v, vec![Value::BulkString(b"v".to_vec())]);
    });
}

/// A server that accepts the TCP connection but never answers `AUTH`: opening fails
/// with a `Timeout` within the connect timeout, sync and async.
#[test]
fn a_handshake_without_answer_times_out() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://:pw@127.0.0.1:{}/",
        silent.local_addr().unwrap().port()
    );
    let options = ConnectOptions::default().with_connect_timeout(Some(SHORT));
    let t = Instant::now();
    let e = DirectConnection::open_with(url.as_str(), options.clone()).unwrap_err();
    assert!(t.elapsed() < SHORT + MARGIN, "{:?}", t.elapsed());
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Timeout, "{e}");
    rt().block_on(async {
        let t = Instant::now();
        let e = DirectAsyncConnection::open_with(url.as_str(), options)
            .await
            .unwrap_err();
        assert!(t.elapsed() < SHORT + MARGIN, "{:?}", t.elapsed());
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Timeout, "{e}");
    });
    drop(silent);
}

/// The server closes the connection: an idempotent request is sent again on a new
/// connection and succeeds; a request that is not idempotent fails with a `Connection`
/// error and is not sent again (it did not run: the counter is unchanged); the call
/// after it succeeds.
#[test]
fn idempotent_requests_are_retried_others_never_sync() {
    let srv = server();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    con.run_request(&req(&["SET", "n", "0"])).unwrap();

    let id = client_id_sync(&mut con);
    kill_client(&srv, id);
    let v = con
        .run_request(&req(&["GET", "n"]).idempotent())
        .expect("retried on a new connection");
    assert_eq!(v, vec![Value::BulkString(b"0".to_vec())]);

    let id = client_id_sync(&mut con);
    kill_client(&srv, id);
    let e = con.run_request(&req(&["INCR", "n"])).unwrap_err();
    assert_eq!(kind(&e), Some(RedisErrorKind::Connection), "{e}");
    let n: i64 = cmd(&["GET", "n"]).query(&mut admin(&srv)).unwrap();
    assert_eq!(n, 0, "INCR was sent again");
    assert_eq!(
        con.run_request(&req(&["INCR", "n"])).unwrap(),
        vec![Value::Int(1)]
    );

    // Without retries, even an idempotent request fails once; the next call reconnects.
    let mut con = DirectConnection::open_with(
        srv.url().as_str(),
        ConnectOptions::default().with_retry(RetryPolicy::none()),
    )
    .unwrap();
    let id = client_id_sync(&mut con);
    kill_client(&srv, id);
    assert!(con.run_request(&req(&["GET", "n"]).idempotent()).is_err());
    assert!(con.run_request(&req(&["GET", "n"]).idempotent()).is_ok());
}

#[test]
fn idempotent_requests_are_retried_others_never_async() {
    let srv = server();
    rt().block_on(async {
        let mut con = DirectAsyncConnection::open(srv.url().as_str())
            .await
            .unwrap();
        con.run_request(req(&["SET", "n", "0"])).await.unwrap();
        let id = |v: Vec<Value>| match v[..] {
            [Value::Int(id)] => id,
            ref other => panic!("CLIENT ID replied {other:?}"),
        };

        kill_client(
            &srv,
            id(con.run_request(req(&["CLIENT", "ID"])).await.unwrap()),
        );
        let v = con
            .run_request(req(&["GET", "n"]).idempotent())
            .await
            .expect("retried on a new connection");
        assert_eq!(v, vec![Value::BulkString(b"0".to_vec())]);

        kill_client(
            &srv,
            id(con.run_request(req(&["CLIENT", "ID"])).await.unwrap()),
        );
        let e = con.run_request(req(&["INCR", "n"])).await.unwrap_err();
        assert_eq!(kind(&e), Some(RedisErrorKind::Connection), "{e}");
        let n: i64 = cmd(&["GET", "n"]).query(&mut admin(&srv)).unwrap();
        assert_eq!(n, 0, "INCR was sent again");
        assert_eq!(
            con.run_request(req(&["INCR", "n"])).await.unwrap(),
            vec![Value::Int(1)]
        );
    });
}

/// After a server restart the same connection works again: the first call may fail
/// (unless it is idempotent and retried), the ones after it succeed.
#[test]
fn connections_recover_after_a_server_restart() {
    let mut srv = RedisServer::builder().durable().start().unwrap();
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    con.run_request(&req(&["SET", "k", "v"])).unwrap();
    let mut acon = rt()
        .block_on(DirectAsyncConnection::open(srv.url().as_str()))
        .unwrap();
    srv.restart().unwrap();
    let get = || req(&["GET", "k"]).idempotent();
    assert_eq!(
        con.run_request(&get())
            .expect("an idempotent read is retried"),
        vec![Value::BulkString(b"v".to_vec())]
    );
    // A request that is not idempotent is not retried: it fails or succeeds once, and
    // the call after it succeeds.
    srv.restart().unwrap();
    let _ = con.run_request(&req(&["SET", "k", "w"]));
    con.run_request(&req(&["SET", "k", "w"])).unwrap();
    rt().block_on(async {
        let _ = acon.run_request(req(&["SET", "k", "x"])).await;
        acon.run_request(req(&["SET", "k", "x"])).await.unwrap();
        assert_eq!(
            acon.run_request(get()).await.unwrap(),
            vec![Value::BulkString(b"x".to_vec())]
        );
    });
}

/// A cancelled async call (dropped mid-reply) never poisons the handle: the next call
/// succeeds on a new connection and reads nothing of the cancelled one.
#[test]
fn a_cancelled_async_call_then_a_good_one() {
    let srv = server();
    rt().block_on(async {
        let mut con = DirectAsyncConnection::open(srv.url().as_str())
            .await
            .unwrap();
        let _: () = cmd(&["RPUSH", "later", "x"])
            .query(&mut admin(&srv))
            .unwrap();
        for _ in 0..3 {
            let call = con.run_request(req(&["BLPOP", "nothing", "1"]));
            assert!(
                tokio::time::timeout(Duration::from_millis(50), call)
                    .await
                    .is_err()
            );
            let v = con.run_request(req(&["LRANGE", "later", "0", "-1"])).await;
            assert_eq!(
                v.unwrap(),
                vec![Value::Array(vec![Value::BulkString(b"x".to_vec())])]
            );
        }
    });
}

/// The stores' reads and whole-value writes are idempotent requests: after the server
/// closed the connection, `get` and `put` succeed (sent again on a new connection);
/// `delete`, whose result says whether the key existed, is not sent again.
#[test]
fn store_reads_and_puts_are_retried_deletes_are_not() {
    let srv = server();
    let store = redstash::ArrayStore::new("r");
    let a = ndarray::Array1::<f32>::ones(16);
    let mut con = DirectConnection::open(srv.url().as_str()).unwrap();
    store.put(&mut con, "a", &a).unwrap();

    kill_client(&srv, client_id_sync(&mut con));
    let back = store.get(&mut con, "a").expect("get is sent again");
    assert_eq!(back.map(|b| b.shape().to_vec()), Some(vec![16]));

    kill_client(&srv, client_id_sync(&mut con));
    store.put(&mut con, "b", &a).expect("put is sent again");

    kill_client(&srv, client_id_sync(&mut con));
    let e = store.delete(&mut con, "b").unwrap_err();
    assert_eq!(kind(&e), Some(RedisErrorKind::Connection), "{e}");
    assert!(store.exists(&mut con, "b").unwrap(), "the DEL did not run");
}

/// An ACL user restricted to a key prefix: a write outside it is a typed `Auth`
/// (`NOPERM`) error, and a bulk write that mixes keys reports the refused items as
/// refused (never as written), on the sync and async direct connections.
#[test]
fn an_acl_user_restricted_to_a_prefix_gets_typed_refusals() {
    let srv = RedisServer::builder()
        .acl_user("svc", "pw", "~ok:* +@all")
        .start()
        .unwrap();
    let url = srv.url_for("svc", "pw");
    let allowed = redstash::ArrayStore::new("ok");
    let denied = redstash::ArrayStore::new("no");
    let a = ndarray::Array1::<u8>::ones(8);
    let mut con = DirectConnection::open(url.as_str()).unwrap();
    allowed.put(&mut con, "a", &a).unwrap();
    let e = denied.put(&mut con, "a", &a).unwrap_err();
    assert_eq!(kind(&e), Some(RedisErrorKind::Auth), "{e}");

    // put_many through a store without prefix: keys ok:* are allowed, no:* are not.
    let open = redstash::ArrayStore::new("");
    let items: Vec<(String, ndarray::Array1<u8>)> = (0..6)
        .map(|i| {
            (
                format!("{}:{i}", if i % 2 == 0 { "ok" } else { "no" }),
                a.clone(),
            )
        })
        .collect();
    let check = |e: Error| match e {
        Error::PartialWrite {
            written,
            refused,
            unknown,
            not_sent,
            source,
        } => {
            assert_eq!(written, [0, 2, 4]);
            assert_eq!(refused, [1, 3, 5]);
            assert!(unknown.is_empty() && not_sent.is_empty());
            assert_eq!(source.redis_kind(), Some(RedisErrorKind::Auth), "{source}");
        }
        other => panic!("not a partial write: {other}"),
    };
    check(open.put_many(&mut con, &items).unwrap_err());
    rt().block_on(async {
        let mut acon = DirectAsyncConnection::open(url.as_str()).await.unwrap();
        check(open.put_many_async(&mut acon, &items).await.unwrap_err());
    });
    let mut admin = admin(&srv);
    for (i, (k, _)) in items.iter().enumerate() {
        let exists: bool = cmd(&["EXISTS", k]).query(&mut admin).unwrap();
        assert_eq!(exists, i % 2 == 0, "{k}");
    }
}
