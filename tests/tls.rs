//! TLS (`rediss://`, feature `tls`) against real redis-servers with a TLS port and
//! certificates made here: arrays stored and read on every connection kind, mutual TLS,
//! the failures that must be quick typed errors (a wrong CA, a plain client on the TLS
//! port, a TLS client on the plain port), insecure mode, the response timeout over TLS,
//! and reconnection.

mod common;

use std::time::{Duration, Instant};

use common::tls::{CA, CLIENT_CERT, CLIENT_KEY, OTHER_CA, Pki};
use common::{rt, sample};
use redis::Value;
use redstash::direct::{ConnectOptions, DirectAsyncConnection, DirectConnection, TlsOptions};
use redstash::exec::{AsyncConnection, Request, RetryPolicy, SyncConnection};
use redstash::testkit::RedisServer;
use redstash::{ArrayStore, DType, Error, Order, RawArray, RedisErrorKind};

/// A server with a TLS port whose certificate `pki`'s CA signed.
fn tls_server(pki: &Pki, auth_clients: bool) -> RedisServer {
    RedisServer::builder()
        .tls(pki.server_files(auth_clients))
        .start()
        .expect("start redis-server with TLS (run scripts/setup)")
}

fn tls_url(srv: &RedisServer) -> String {
    srv.tls_url().expect("started with a TLS port")
}

/// Trust `pki`'s CA.
fn trusting(pki: &Pki) -> ConnectOptions {
    ConnectOptions::default().with_tls(TlsOptions::default().with_ca_file(pki.path(CA)).unwrap())
}

fn with_client_cert(pki: &Pki) -> ConnectOptions {
    ConnectOptions::default().with_tls(
        TlsOptions::default()
            .with_ca_pem(&pki.pem(CA))
            .unwrap()
            .with_client_cert_files(pki.path(CLIENT_CERT), pki.path(CLIENT_KEY))
            .unwrap(),
    )
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

/// How quickly a failure must be reported (a loaded 2-core CI machine).
const QUICK: Duration = Duration::from_secs(2);

/// The arrays of the round trips and their stores: small, a few MB (one value, read
/// straight into its buffer), and one stored in 256 KiB chunks.
fn arrays() -> Vec<(&'static str, RawArray, ArrayStore)> {
    vec![
        ("small", sample(DType::F32, &[3, 4], Order::C), store()),
        ("big", sample(DType::F64, &[1 << 19], Order::C), store()), // 4 MiB
        (
            "chunked",
            sample(DType::I32, &[300_000], Order::C), // 1.2 MB
            store().with_chunk_bytes(256 << 10),
        ),
    ]
}

fn store() -> ArrayStore {
    ArrayStore::new("tls")
}

/// The connection really is on the TLS port: the server saw it arrive there (`laddr`
/// of `CLIENT INFO`).
fn assert_on_tls_port(con: &mut impl SyncConnection, srv: &RedisServer) {
    let info = match con
        .run_request(&req(&["CLIENT", "INFO"]))
        .unwrap()
        .remove(0)
    {
        Value::BulkString(b) => String::from_utf8(b).unwrap(),
        Value::VerbatimString { text, .. } => text,
        other => panic!("CLIENT INFO replied {other:?}"),
    };
    let laddr = format!("laddr=127.0.0.1:{}", srv.tls_port().unwrap());
    assert!(info.contains(&laddr), "{info}");
}

#[test]
fn arrays_round_trip_over_tls_on_every_connection_kind() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let url = tls_url(&srv);

    // redstash's direct connection.
    let mut con = DirectConnection::open_with(url.as_str(), trusting(&pki)).unwrap();
    assert_on_tls_port(&mut con, &srv);
    for (name, a, store) in arrays() {
        store.put(&mut con, name, &a).unwrap();
        assert_eq!(
            store.get(&mut con, name).unwrap().as_ref(),
            Some(&a),
            "{name}"
        );
    }
    let chunks: Vec<String> = cmd(&["KEYS", "*chunked*"])
        .query(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
    assert!(chunks.len() > 3, "not chunked: {chunks:?}");

    // redis-rs, sync and async, with the CA given to `build_with_tls`.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pki.pem(CA)),
        },
    )
    .unwrap();
    let mut rcon = client.get_connection().unwrap();
    assert_on_tls_port(&mut rcon, &srv);
    for (name, a, store) in arrays() {
        let key = format!("rs-{name}");
        store.put(&mut rcon, &key, &a).unwrap();
        assert_eq!(
            store.get(&mut rcon, &key).unwrap().as_ref(),
            Some(&a),
            "{name}"
        );
        // What one connection kind wrote, the others read.
        assert_eq!(
            store.get(&mut con, &key).unwrap().as_ref(),
            Some(&a),
            "{name}"
        );
    }

    rt().block_on(async {
        let mut acon = DirectAsyncConnection::open_with(url.as_str(), trusting(&pki))
            .await
            .unwrap();
        let mut mcon = client.get_multiplexed_async_connection().await.unwrap();
        for (name, a, store) in arrays() {
            let key = format!("async-{name}");
            store.put_async(&mut acon, &key, &a).await.unwrap();
            let back = store.get_async(&mut acon, &key).await.unwrap();
            assert_eq!(back.as_ref(), Some(&a), "{name}");
            let back = store.get_async(&mut mcon, &key).await.unwrap();
            assert_eq!(back.as_ref(), Some(&a), "{name}");
        }
    });
}

/// With `tls-auth-clients yes`, a client without a certificate is refused (a `Tls`
/// error, quickly: at the open or at its first command, as TLS 1.3 reports the refusal
/// after the client's side of the handshake); with the CA's client certificate it works.
#[test]
fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new();
    let srv = tls_server(&pki, true);
    let url = tls_url(&srv);

    let t = Instant::now();
    let e = DirectConnection::open_with(url.as_str(), trusting(&pki))
        .and_then(|mut con| con.exec(&[cmd(&["PING"])], false))
        .unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("client certificate"), "{e}");

    rt().block_on(async {
        let t = Instant::now();
        let e = match DirectAsyncConnection::open_with(url.as_str(), trusting(&pki)).await {
            Ok(mut con) => con.exec(&[cmd(&["PING"])], false).await.unwrap_err(),
            Err(e) => e,
        };
        assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");
    });

    let mut con = DirectConnection::open_with(url.as_str(), with_client_cert(&pki)).unwrap();
    let a = sample(DType::U8, &[1000], Order::C);
    store().put(&mut con, "m", &a).unwrap();
    assert_eq!(store().get(&mut con, "m").unwrap(), Some(a.clone()));
    rt().block_on(async {
        let mut con = DirectAsyncConnection::open_with(url.as_str(), with_client_cert(&pki))
            .await
            .unwrap();
        assert_eq!(store().get_async(&mut con, "m").await.unwrap(), Some(a));
    });
}

/// A server whose certificate another CA signed: the open fails at once with a `Tls`
/// error that says so (sync, async, and redis-rs's connection classifies the same).
#[test]
fn a_wrong_ca_fails_quickly_with_a_tls_error() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let url = tls_url(&srv);
    let other = ConnectOptions::default().with_tls(
        TlsOptions::default()
            .with_ca_file(pki.path(OTHER_CA))
            .unwrap(),
    );

    let t = Instant::now();
    let e = DirectConnection::open_with(url.as_str(), other.clone()).unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("not signed by a CA"), "{e}");

    rt().block_on(async {
        let t = Instant::now();
        let e = DirectAsyncConnection::open_with(url.as_str(), other)
            .await
            .unwrap_err();
        assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");
    });

    // The system roots (the default) do not know the test CA either.
    let e = DirectConnection::open(url.as_str()).unwrap_err();
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");

    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pki.pem(OTHER_CA)),
        },
    )
    .unwrap();
    let t = Instant::now();
    let Err(e) = client.get_connection_with_timeout(Duration::from_secs(5)) else {
        panic!("redis-rs connected with the wrong CA");
    };
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Tls, "{e}");
    assert_eq!(
        Error::from(e).redis_kind(),
        Some(RedisErrorKind::Tls),
        "an Error::Redis of kind Tls"
    );
}

/// A plain `redis://` client on the TLS port: the server resets the connection, a
/// `Connection` error, quickly (never a plaintext exchange). A `rediss://` client on the
/// plain port: a plain server never answers a TLS hello, so the open fails with a
/// `Timeout` within the connect timeout, saying to check the port.
#[test]
fn plain_and_tls_on_the_wrong_port_fail_quickly() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let plain_on_tls = format!("redis://127.0.0.1:{}/", srv.tls_port().unwrap());
    let tls_on_plain = format!("rediss://127.0.0.1:{}/", srv.port());
    let no_retry = trusting(&pki).with_retry(RetryPolicy::none());

    let t = Instant::now();
    let e = DirectConnection::open_with(plain_on_tls.as_str(), no_retry.clone())
        .and_then(|mut con| con.exec(&[cmd(&["PING"])], false))
        .unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(
        RedisErrorKind::classify(&e),
        RedisErrorKind::Connection,
        "{e}"
    );

    let short = trusting(&pki).with_connect_timeout(Some(Duration::from_millis(500)));
    let t = Instant::now();
    let e = DirectConnection::open_with(tls_on_plain.as_str(), short.clone()).unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("check the port"), "{e}");

    rt().block_on(async {
        let t = Instant::now();
        let e = match DirectAsyncConnection::open_with(plain_on_tls.as_str(), no_retry).await {
            Ok(mut con) => con.exec(&[cmd(&["PING"])], false).await.unwrap_err(),
            Err(e) => e,
        };
        assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
        assert_eq!(
            RedisErrorKind::classify(&e),
            RedisErrorKind::Connection,
            "{e}"
        );

        let t = Instant::now();
        let e = DirectAsyncConnection::open_with(tls_on_plain.as_str(), short)
            .await
            .unwrap_err();
        assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
        assert_eq!(RedisErrorKind::classify(&e), RedisErrorKind::Timeout, "{e}");
        assert!(e.to_string().contains("check the port"), "{e}");
    });

    // With the password, the plain client's open itself (AUTH) fails.
    let pw = RedisServer::builder()
        .password("pw")
        .tls(pki.server_files(false))
        .start()
        .unwrap();
    let url = format!("redis://:pw@127.0.0.1:{}/", pw.tls_port().unwrap());
    let t = Instant::now();
    let e = DirectConnection::open(url.as_str()).unwrap_err();
    assert!(t.elapsed() < QUICK, "{:?}", t.elapsed());
    assert_eq!(
        RedisErrorKind::classify(&e),
        RedisErrorKind::Connection,
        "{e}"
    );
    // ... and the TLS one works, password and all.
    let mut con = DirectConnection::open_with(tls_url(&pw).as_str(), trusting(&pki)).unwrap();
    assert_eq!(
        con.exec(&[cmd(&["PING"])], false).unwrap(),
        vec![Value::SimpleString("PONG".into())]
    );
}

/// Insecure mode accepts a certificate no trusted CA signed: by option, and by the
/// `#insecure` URL fragment (with the default options, the system roots).
#[test]
fn insecure_mode_accepts_an_unknown_ca() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let url = tls_url(&srv);
    let insecure = ConnectOptions::default().with_tls(
        TlsOptions::default()
            .with_ca_file(pki.path(OTHER_CA))
            .unwrap()
            .with_insecure(true),
    );
    assert!(insecure.tls().is_insecure());
    let mut con = DirectConnection::open_with(url.as_str(), insecure.clone()).unwrap();
    assert_on_tls_port(&mut con, &srv);
    let fragment = format!("{url}#insecure");
    let mut con = DirectConnection::open(fragment.as_str()).unwrap();
    assert_on_tls_port(&mut con, &srv);
    rt().block_on(async {
        for mut con in [
            DirectAsyncConnection::open_with(url.as_str(), insecure)
                .await
                .unwrap(),
            DirectAsyncConnection::open(fragment.as_str())
                .await
                .unwrap(),
        ] {
            let v = con.run_request(req(&["PING"])).await.unwrap();
            assert_eq!(v, vec![Value::SimpleString("PONG".into())]);
        }
    });
}

fn client_id(v: Vec<Value>) -> i64 {
    match v[..] {
        [Value::Int(id)] => id,
        ref other => panic!("CLIENT ID replied {other:?}"),
    }
}

fn kill_client(srv: &RedisServer, id: i64) {
    let n: i64 = cmd(&["CLIENT", "KILL", "ID", &id.to_string()])
        .query(&mut srv.client().unwrap().get_connection().unwrap())
        .unwrap();
    assert_eq!(n, 1);
}

/// A TLS connection closed by the server (`CLIENT KILL`): the next idempotent request
/// (a `GET` of a 4 MiB value) is sent again on a new TLS connection and succeeds, sync
/// and async; a store operation after it works.
#[test]
fn tls_connections_reconnect_after_a_kill() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let url = tls_url(&srv);
    let value = vec![7u8; 4 << 20];
    let get = || {
        let mut c = redis::cmd("GET");
        c.arg("k");
        Request::single(c, None).idempotent()
    };
    let a = sample(DType::F32, &[1000], Order::C);

    let mut con = DirectConnection::open_with(url.as_str(), trusting(&pki)).unwrap();
    let mut set = redis::cmd("SET");
    set.arg("k").arg(&value[..]);
    con.run_request(&Request::single(set, None)).unwrap();
    let id = client_id(con.run_request(&req(&["CLIENT", "ID"])).unwrap());
    kill_client(&srv, id);
    assert_eq!(
        con.run_request(&get())
            .expect("retried on a new connection"),
        vec![Value::BulkString(value.clone())]
    );
    let new_id = client_id(con.run_request(&req(&["CLIENT", "ID"])).unwrap());
    assert_ne!(new_id, id);
    assert_on_tls_port(&mut con, &srv);
    store().put(&mut con, "a", &a).unwrap();

    rt().block_on(async {
        let mut con = DirectAsyncConnection::open_with(url.as_str(), trusting(&pki))
            .await
            .unwrap();
        let id = client_id(con.run_request(req(&["CLIENT", "ID"])).await.unwrap());
        kill_client(&srv, id);
        assert_eq!(
            con.run_request(get())
                .await
                .expect("retried on a new connection"),
            vec![Value::BulkString(value)]
        );
        let new_id = client_id(con.run_request(req(&["CLIENT", "ID"])).await.unwrap());
        assert_ne!(new_id, id);
        assert_eq!(store().get_async(&mut con, "a").await.unwrap(), Some(a));
    });
}

/// A paused server over TLS: a call times out within the response timeout (rustls
/// reports the socket's timeout as such), and the next call after the pause succeeds on
/// a new TLS connection, sync and async.
#[test]
fn a_stalled_tls_server_times_out_and_the_next_call_succeeds() {
    let pki = Pki::new();
    let srv = tls_server(&pki, false);
    let url = tls_url(&srv);
    let short = Duration::from_millis(300);
    let options = trusting(&pki)
        .with_response_timeout(Some(short))
        .with_retry(RetryPolicy::none());
    let pause = || {
        let _: () = cmd(&["CLIENT", "PAUSE", "1500", "ALL"])
            .query(&mut srv.client().unwrap().get_connection().unwrap())
            .unwrap();
    };

    let mut con = DirectConnection::open_with(url.as_str(), options.clone()).unwrap();
    con.run_request(&req(&["SET", "k", "v"])).unwrap();
    pause();
    let t = Instant::now();
    let e = con.run_request(&req(&["GET", "k"])).unwrap_err();
    assert!(t.elapsed() < short + QUICK, "{:?}", t.elapsed());
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Timeout), "{e}");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        con.run_request(&req(&["GET", "k"])).unwrap(),
        vec![Value::BulkString(b"v".to_vec())]
    );

    rt().block_on(async {
        let mut con = DirectAsyncConnection::open_with(url.as_str(), options)
            .await
            .unwrap();
        pause();
        let t = Instant::now();
        let e = con.run_request(req(&["GET", "k"])).await.unwrap_err();
        assert!(t.elapsed() < short + QUICK, "{:?}", t.elapsed());
        assert_eq!(e.redis_kind(), Some(RedisErrorKind::Timeout), "{e}");
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(
            con.run_request(req(&["GET", "k"])).await.unwrap(),
            vec![Value::BulkString(b"v".to_vec())]
        );
    });
}
