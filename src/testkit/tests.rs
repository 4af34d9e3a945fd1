//! The testkit's own tests: servers and clusters started for real.

use std::time::Duration;

use super::probe::connect;
use super::server::url_encode;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn con(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection()
}

#[test]
fn set_and_get() -> TestResult {
    let server = RedisServer::start()?;
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    assert!(server.dir().is_dir());
    let mut c = server.client()?.get_connection()?;
    redis::cmd("SET")
        .arg("k")
        .arg(b"v\0x")
        .query::<()>(&mut c)?;
    let v: Vec<u8> = redis::cmd("GET").arg("k").query(&mut c)?;
    assert_eq!(v, b"v\0x");
    let save: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("save").query(&mut c)?;
    assert_eq!(save, ["save", ""]);
    Ok(())
}

#[test]
fn maxmemory_and_extra_args() -> TestResult {
    let server = RedisServer::builder()
        .maxmemory(8 * 1024 * 1024)
        .arg("--hz")
        .arg("20")
        .start()?;
    let mut c = con(&server.url())?;
    let get = |c: &mut redis::Connection, k: &str| {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(k)
            .query::<Vec<String>>(c)
    };
    assert_eq!(get(&mut c, "maxmemory")?, ["maxmemory", "8388608"]);
    assert_eq!(
        get(&mut c, "maxmemory-policy")?,
        ["maxmemory-policy", "noeviction"]
    );
    assert_eq!(get(&mut c, "hz")?, ["hz", "20"]);
    // Filling memory past the limit is refused, not evicted.
    let big = vec![7u8; 1 << 20];
    let err = (0..32)
        .find_map(|i| {
            redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(&big)
                .query::<()>(&mut c)
                .err()
        })
        .expect("OOM error");
    assert!(err.to_string().contains("OOM"), "{err}");
    Ok(())
}

#[test]
fn password() -> TestResult {
    let server = RedisServer::builder().password("p@ss:w/rd").start()?;
    assert!(
        server.url().contains(":p%40ss%3Aw%2Frd@"),
        "{}",
        server.url()
    );
    let mut c = server.client()?.get_connection()?;
    redis::cmd("SET").arg("k").arg(1).query::<()>(&mut c)?;
    // Without the password: NOAUTH.
    let mut anon = con(&format!("redis://127.0.0.1:{}/", server.port()))?;
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<i64>>(&mut anon)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    // Wrong password: refused at connect time.
    assert!(con(&format!("redis://:nope@127.0.0.1:{}/", server.port())).is_err());
    Ok(())
}

#[test]
fn acl_user() -> TestResult {
    let server = RedisServer::builder()
        .password("adminpw")
        .acl_user("reader", "readpw", "~* +@read +ping")
        .acl_user("writer", "writepw", "~* +@all")
        .start()?;
    let mut admin = con(&server.url())?;
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut admin)?;

    let mut w = con(&server.url_for("writer", "writepw"))?;
    redis::cmd("SET").arg("k2").arg("v2").query::<()>(&mut w)?;
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut w)?;
    assert_eq!(who, "writer");

    let mut r = con(&server.url_for("reader", "readpw"))?;
    let v: String = redis::cmd("GET").arg("k2").query(&mut r)?;
    assert_eq!(v, "v2");
    let err = redis::cmd("SET")
        .arg("k")
        .arg("x")
        .query::<()>(&mut r)
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");

    assert!(con(&server.url_for("reader", "wrong")).is_err());
    // The default user still needs its password.
    let mut anon = con(&format!("redis://127.0.0.1:{}/", server.port()))?;
    let err = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut anon)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
    Ok(())
}

#[test]
fn acl_user_without_password_keeps_default_open() -> TestResult {
    let server = RedisServer::builder()
        .acl_user("u", "pw", "~* +@all")
        .start()?;
    let mut c = con(&server.url())?;
    redis::cmd("SET").arg("k").arg("v").query::<()>(&mut c)?;
    let mut u = con(&server.url_for("u", "pw"))?;
    let v: String = redis::cmd("GET").arg("k").query(&mut u)?;
    assert_eq!(v, "v");
    Ok(())
}

#[test]
fn invalid_credentials_are_rejected() {
    let e = RedisServer::builder().password("a b").start().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = RedisServer::builder()
        .acl_user("", "pw", "+@all")
        .start()
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn stop_makes_connections_fail_and_drop_cleans_up() -> TestResult {
    let mut server = RedisServer::start()?;
    let mut c = con(&server.url())?;
    redis::cmd("PING").query::<String>(&mut c)?;
    server.stop();
    server.stop(); // idempotent
    assert!(con(&server.url()).is_err());
    assert!(redis::cmd("PING").query::<String>(&mut c).is_err());
    let dir = server.dir().to_owned();
    assert!(dir.is_dir());
    drop(server);
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn drop_kills_the_server() -> TestResult {
    let server = RedisServer::start()?;
    let port = server.port();
    drop(server);
    assert!(connect(port, Duration::from_millis(200)).is_err());
    Ok(())
}

#[test]
fn startup_failure_reports_the_log() {
    let e = RedisServer::builder()
        .arg("--no-such-option")
        .arg("1")
        .start()
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("exited during start-up"), "{msg}");
    assert!(msg.contains("no-such-option"), "{msg}");
}

#[test]
fn url_encoding() {
    assert_eq!(url_encode("aZ09-._~"), "aZ09-._~");
    assert_eq!(url_encode("a b:@/%"), "a%20b%3A%40%2F%25");
}

#[test]
fn redis_server_is_found() {
    let p = redis_server_path().expect("redis-server (run scripts/setup)");
    assert!(is_executable(&p));
}

#[test]
fn cluster_reaches_state_ok() -> TestResult {
    let mut cluster = RedisCluster::start()?;
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), RedisCluster::PRIMARIES);
    for url in &nodes {
        let mut c = con(url)?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c)?;
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_ok:16384"), "{info}");
        assert!(info.contains("cluster_size:3"), "{info}");
    }
    // Every node serves the keys of its own slots.
    let mut c = con(&nodes[0])?;
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c)?;
    assert_eq!(slots.len(), 3);
    cluster.stop();
    cluster.stop();
    assert!(nodes.iter().all(|u| con(u).is_err()));
    Ok(())
}

#[test]
fn cluster_nodes_take_the_builder_settings() -> TestResult {
    let cluster = RedisCluster::start_with(RedisServer::builder().maxmemory(1).acl_user(
        "u",
        "pw",
        "~* +@all -hset",
    ))?;
    let admin = cluster.nodes();
    for (i, url) in cluster.nodes_for("u", "pw").iter().enumerate() {
        let mut c = con(&admin[i])?;
        let mm: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query(&mut c)?;
        assert_eq!(mm, ["maxmemory", "1"]);
        let mut u = con(url)?;
        let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut u)?;
        assert_eq!(who, "u");
        let err = redis::cmd("HSET")
            .arg("{x}")
            .arg("f")
            .arg("v")
            .query::<()>(&mut u)
            .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("noperm"), "{err}");
    }
    Ok(())
}
