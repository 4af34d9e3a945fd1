//! The cluster executor against a real 3-primary Redis Cluster: routing by slot,
//! reply order, multi-key splits, SCAN over every primary, transactions, redirections
//! after a slot migration, auth. (The store suites also run on the cluster: see
//! `tests/common/mod.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;
use redstash::cluster::{ClusterConnection, key_slot};
use redstash::exec::{Request, SyncConnection};
use redstash::testkit::RedisCluster;
use redstash::{Error, RedisErrorKind};

fn cluster() -> RedisCluster {
    RedisCluster::start().expect("start a Redis Cluster (run scripts/setup)")
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

fn one(con: &mut ClusterConnection, c: redis::Cmd) -> Value {
    con.run_request(&Request::single(c, None))
        .expect("request")
        .pop()
        .expect("a reply")
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// A plain redis-rs connection to each node.
fn nodes(c: &RedisCluster) -> Vec<redis::Connection> {
    c.nodes()
        .iter()
        .map(|u| {
            redis::Client::open(u.as_str())
                .unwrap()
                .get_connection()
                .unwrap()
        })
        .collect()
}

/// Keys spread over the slots (and so over every primary).
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k:{i}")).collect()
}

/// A 3-primary cluster and a connection to it.
fn connected() -> (RedisCluster, ClusterConnection) {
    let c = cluster();
    let con = ClusterConnection::open(c.nodes()).unwrap();
    assert_eq!(con.primaries().len(), 3);
    (c, con)
}

/// `SET k:i vi` for the first `n` keys of [`keys`], in one request.
fn write_keys(con: &mut ClusterConnection, n: usize) -> Vec<String> {
    let ks = keys(n);
    let mut req = Request::new(None);
    for (i, k) in ks.iter().enumerate() {
        req.push(cmd(&["SET", k, &format!("v{i}")]));
    }
    let replies = con.run_request(&req).unwrap();
    assert!(replies.iter().all(|v| *v == Value::Okay), "{replies:?}");
    ks
}

/// `key_slot` agrees with the server's `CLUSTER KEYSLOT`.
#[test]
fn cluster_key_slot_agrees_with_the_server() {
    let (c, _con) = connected();
    let mut raw = nodes(&c);
    for k in [
        "foo",
        "bar",
        "{user1}:a",
        "a{}b",
        "k:17",
        "",
        "\u{e9}t\u{e9}",
    ] {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(k)
            .query(&mut raw[0])
            .unwrap();
        assert_eq!(key_slot(k.as_bytes()), slot, "{k}");
    }
}

/// One request of SETs and GETs over every node (Cmd, Pieces and Packed commands):
/// replies in the order of the commands.
#[test]
fn cluster_request_over_every_node_replies_in_command_order() {
    let (_c, mut con) = connected();
    let ks = keys(200);
    let owners: BTreeSet<&str> = ks
        .iter()
        .filter_map(|k| con.slot_owner(key_slot(k.as_bytes())))
        .collect();
    assert_eq!(owners.len(), 3, "the keys cover every primary");
    let mut req = Request::new(None);
    for (i, k) in ks.iter().enumerate() {
        if i % 2 == 0 {
            req.push(cmd(&["SET", k, &format!("v{i}")]));
        } else {
            let mut one = redstash::exec::Command::Pieces(vec![
                vec![b"SET"[..].into()],
                vec![b"k:"[..].into(), i.to_string().into_bytes().into()],
                vec![b"v"[..].into(), i.to_string().into_bytes().into()],
            ]);
            if i % 3 == 0 {
                let mut c = redis::cmd("SET");
                c.arg(k).arg(format!("v{i}"));
                one = redstash::exec::Command::Cmd(c);
            }
            req.push(one);
        }
    }
    let replies = con.run_request(&req).unwrap();
    assert_eq!(replies.len(), 200);
    assert!(replies.iter().all(|v| *v == Value::Okay), "{replies:?}");
    let mut req = Request::new(None);
    for k in ks.iter().rev() {
        req.push(cmd(&["GET", k]));
        req.push(cmd(&["STRLEN", k]));
    }
    let replies = con.run_request(&req).unwrap();
    for (j, i) in (0..200).rev().enumerate() {
        let v = format!("v{i}");
        assert_eq!(replies[2 * j], bulk(&v), "GET k:{i}");
        assert_eq!(
            replies[2 * j + 1],
            Value::Int(v.len() as i64),
            "STRLEN k:{i}"
        );
    }
}

/// MGET, EXISTS, DEL, MSET and DBSIZE across slots: split per node, merged in the
/// order of the keys (counts added).
#[test]
fn cluster_multi_key_commands_split_and_merge() {
    let (c, mut con) = connected();
    let ks = write_keys(&mut con, 200);
    let mut raw = nodes(&c);
    // MGET across slots: values in the order of the keys, missing keys nil.
    let mut mget = redis::cmd("MGET");
    mget.arg("missing:1");
    for k in ks.iter().step_by(7) {
        mget.arg(k);
    }
    mget.arg("missing:2");
    let Value::Array(values) = one(&mut con, mget) else {
        panic!("MGET reply")
    };
    let mut want = vec![Value::Nil];
    want.extend((0..200).step_by(7).map(|i| bulk(&format!("v{i}"))));
    want.push(Value::Nil);
    assert_eq!(values, want);
    // EXISTS and DEL across slots: counts added; DBSIZE over every primary.
    let mut exists = redis::cmd("EXISTS");
    exists.arg(&ks[..50]).arg("missing").arg(&ks[0]);
    assert_eq!(one(&mut con, exists), Value::Int(51));
    assert_eq!(one(&mut con, cmd(&["DBSIZE"])), Value::Int(200));
    let mut sizes = 0;
    for n in &mut raw {
        let s: i64 = redis::cmd("DBSIZE").query(n).unwrap();
        assert!(s > 0, "every primary holds keys");
        sizes += s;
    }
    assert_eq!(sizes, 200);
    let mut del = redis::cmd("DEL");
    del.arg(&ks[150..]).arg("missing");
    assert_eq!(one(&mut con, del), Value::Int(50));
    // MSET across slots.
    let mut mset = redis::cmd("MSET");
    mset.arg("m:a")
        .arg("1")
        .arg("m:b")
        .arg("2")
        .arg("m:c")
        .arg("3");
    assert_eq!(one(&mut con, mset), Value::Okay);
    let mut mget = redis::cmd("MGET");
    mget.arg("m:c").arg("m:a").arg("m:b");
    assert_eq!(
        one(&mut con, mget),
        Value::Array(vec![bulk("3"), bulk("1"), bulk("2")])
    );
}

/// A MULTI block of one slot inside a request over several nodes.
#[test]
fn cluster_multi_block_of_one_slot_inside_a_request_over_several_nodes() {
    let (_c, mut con) = connected();
    write_keys(&mut con, 4);
    let mut req = Request::new(None);
    req.push(cmd(&["MULTI"]));
    req.push(cmd(&["SET", "{t}:1", "a"]));
    req.push(cmd(&["INCR", "{t}:n"]));
    req.push(cmd(&["EXEC"]));
    req.push(cmd(&["GET", "k:3"]));
    let r = con.run_request(&req).unwrap();
    assert_eq!(r[0], Value::Okay);
    assert_eq!(r[3], Value::Array(vec![Value::Okay, Value::Int(1)]));
    assert_eq!(r[4], bulk("v3"));
}

/// SCAN over every primary: every key exactly once, the loop ends at cursor 0.
#[test]
fn cluster_scan_walks_every_primary_once() {
    let (_c, mut con) = connected();
    let ks = write_keys(&mut con, 150);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = 0u64;
    let mut pages = 0;
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg("k:*")
            .arg("COUNT")
            .arg(20);
        let Value::Array(mut reply) = one(&mut con, scan) else {
            panic!("SCAN reply")
        };
        let Some(Value::Array(found)) = reply.pop() else {
            panic!("SCAN keys")
        };
        for k in found {
            let Value::BulkString(k) = k else { panic!() };
            *seen.entry(String::from_utf8(k).unwrap()).or_default() += 1;
        }
        let Some(Value::BulkString(next)) = reply.pop() else {
            panic!("SCAN cursor")
        };
        cursor = std::str::from_utf8(&next).unwrap().parse().unwrap();
        pages += 1;
        if cursor == 0 {
            break;
        }
        assert!(pages < 1000, "SCAN does not end");
    }
    let want: BTreeMap<String, usize> = ks[..150].iter().map(|k| (k.clone(), 1)).collect();
    assert_eq!(seen, want);
    assert!(pages >= 3, "one SCAN loop per primary at least");
}

/// Transactions: one slot runs there; keys of several slots are a typed error and
/// nothing is sent.
#[test]
fn cluster_transactions_of_one_slot_run_and_cross_slot_ones_are_refused() {
    let (_c, mut con) = connected();
    let mut tx = Request::new(Some("{u}"));
    tx.push(cmd(&["SET", "{u}:a", "1"]));
    tx.push(cmd(&["INCR", "{u}:b"]));
    tx.push(cmd(&["GET", "{u}:a"]));
    let r = con.run_request(&tx.atomic()).unwrap();
    assert_eq!(r, vec![Value::Okay, Value::Int(1), bulk("1")]);
    let mut tx = Request::new(None);
    tx.push(cmd(&["SET", "x:1", "1"]));
    tx.push(cmd(&["SET", "x:2", "2"]));
    let e = con.run_request(&tx.atomic()).unwrap_err();
    let Error::CrossSlot { slots, .. } = &e else {
        panic!("expected CrossSlot, got {e:?}")
    };
    assert_eq!(slots.len(), 2, "{e}");
    assert_eq!(one(&mut con, cmd(&["EXISTS", "x:1", "x:2"])), Value::Int(0));
    let mut block = Request::new(None);
    block.push(cmd(&["MULTI"]));
    block.push(cmd(&["SET", "x:1", "1"]));
    block.push(cmd(&["SET", "x:2", "2"]));
    block.push(cmd(&["EXEC"]));
    assert!(matches!(
        con.run_request(&block),
        Err(Error::CrossSlot { .. })
    ));
}

/// Several requests at once (SendAll) keep their own replies.
#[test]
fn cluster_several_requests_at_once_keep_their_own_replies() {
    let (_c, mut con) = connected();
    write_keys(&mut con, 200);
    let reqs: Vec<Request<'static>> = (0..5)
        .map(|i| {
            let mut r = Request::new(None);
            r.push(cmd(&["GET", &format!("k:{i}")]));
            r.push(cmd(&["GET", &format!("k:{}", i + 100)]));
            r
        })
        .collect();
    let all = con.run_requests(reqs.into()).unwrap();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(
            r,
            &vec![bulk(&format!("v{i}")), bulk(&format!("v{}", i + 100))]
        );
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A transaction refused as a whole (here `EXECABORT`: a command of wrong arity was
/// refused while queued) among several requests is that request's refusal alone: the
/// requests before and after it on other nodes are answered, as on a single server.
#[test]
fn cluster_a_refused_transaction_among_requests_is_refused_alone() {
    use redstash::exec::Delivery;
    let (_c, mut con) = connected();
    let mut before = Request::new(None);
    before.push(cmd(&["SET", "k:1", "a"]));
    let mut tx = Request::new(Some("{t}x"));
    tx.push(cmd(&["SET", "{t}x", "1"]));
    tx.push(cmd(&["SET", "{t}y"]));
    let tx = tx.atomic();
    let mut after = Request::new(None);
    after.push(cmd(&["SET", "k:2", "b"]));
    after.push(cmd(&["GET", "k:1"]));
    let interrupted = match con.run_requests(vec![before, tx, after].into()) {
        Ok(all) => panic!("the transaction ran: {all:?}"),
        Err(i) => i,
    };
    assert!(interrupted.failure.is_none(), "{:?}", interrupted.failure);
    let d = &interrupted.requests;
    assert_eq!(d.len(), 3);
    assert!(
        matches!(&d[0], Delivery::Answered(r) if r == &vec![Value::Okay]),
        "{d:?}"
    );
    match &d[1] {
        Delivery::Refused(e) => assert!(chain(e).contains("wrong number"), "{}", chain(e)),
        other => panic!("not refused: {other:?}"),
    }
    assert!(
        matches!(&d[2], Delivery::Answered(r) if r == &vec![Value::Okay, bulk("a")]),
        "{d:?}"
    );
    // None of the transaction's commands ran.
    assert_eq!(one(&mut con, cmd(&["EXISTS", "{t}x"])), Value::Int(0));
    // A single request refused as a whole is its error.
    let mut tx = Request::new(Some("{t}x"));
    tx.push(cmd(&["SET", "{t}y"]));
    let e = con.run_request(&tx.atomic()).unwrap_err();
    assert!(chain(&e).contains("wrong number"), "{}", chain(&e));
}

/// Server errors stay per-command replies.
#[test]
fn cluster_server_errors_stay_per_command_replies() {
    let (_c, mut con) = connected();
    write_keys(&mut con, 3);
    let mut req = Request::new(None);
    req.push(cmd(&["INCR", "k:1"]));
    req.push(cmd(&["GET", "k:2"]));
    let r = con.run_request(&req).unwrap();
    assert!(matches!(&r[0], Value::ServerError(_)), "{r:?}");
    assert_eq!(r[1], bulk("v2"));
}

/// Run a command on one node (redis-rs), for the migration steps.
fn on(node: &mut redis::Connection, args: &[&str]) -> Value {
    cmd(args).query(node).unwrap()
}

fn node_id(node: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(node).unwrap()
}

#[test]
fn cluster_follows_ask_and_moved_during_a_slot_migration() {
    let c = cluster();
    let urls = c.nodes();
    let mut con = ClusterConnection::open(urls.clone()).unwrap();
    let mut strict = ClusterConnection::open(urls.clone())
        .unwrap()
        .with_max_redirects(0);
    let mut raw = nodes(&c);
    let key = "migrating-key";
    let slot = key_slot(key.as_bytes());
    let owner = con.slot_owner(slot).unwrap().to_owned();
    let port = |u: &str| {
        u.trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let src = urls.iter().position(|u| port(u) == port(&owner)).unwrap();
    let dst = (src + 1) % urls.len();
    let dst_port = port(&urls[dst]);
    let ids: Vec<String> = raw.iter_mut().map(node_id).collect();
    assert_eq!(one(&mut con, cmd(&["SET", key, "before"])), Value::Okay);

    // Mid-migration: the key moved, the slot not yet: the source answers ASK.
    let s = slot.to_string();
    on(
        &mut raw[dst],
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", &ids[src]],
    );
    on(
        &mut raw[src],
        &["CLUSTER", "SETSLOT", &s, "MIGRATING", &ids[dst]],
    );
    on(
        &mut raw[src],
        &["MIGRATE", "127.0.0.1", &dst_port, key, "0", "5000"],
    );
    let e: redis::RedisResult<Value> = cmd(&["GET", key]).query(&mut raw[src]);
    assert_eq!(e.unwrap_err().code(), Some("ASK"), "the source redirects");
    assert_eq!(one(&mut con, cmd(&["GET", key])), bulk("before"));
    let mut req = Request::new(None);
    req.push(cmd(&["SET", key, "during"]));
    req.push(cmd(&["GET", key]));
    req.push(cmd(&["GET", "k:other"]));
    assert_eq!(
        con.run_request(&req).unwrap(),
        vec![Value::Okay, bulk("during"), Value::Nil]
    );

    // Migration done: the source answers MOVED; the connection's slot map is stale.
    for n in &mut raw {
        on(n, &["CLUSTER", "SETSLOT", &s, "NODE", &ids[dst]]);
    }
    let e: redis::RedisResult<Value> = cmd(&["GET", key]).query(&mut raw[src]);
    assert_eq!(e.unwrap_err().code(), Some("MOVED"));
    assert_eq!(
        con.slot_owner(slot),
        Some(owner.as_str()),
        "still the old map"
    );
    assert_eq!(one(&mut con, cmd(&["GET", key])), bulk("during"));
    assert_ne!(con.slot_owner(slot), Some(owner.as_str()), "map refreshed");
    assert!(con.slot_owner(slot).unwrap().ends_with(&dst_port));
    // An atomic request on the moved slot follows too.
    let mut tx = Request::new(Some(key));
    tx.push(cmd(&["APPEND", key, "!"]));
    tx.push(cmd(&["GET", key]));
    assert_eq!(
        con.run_request(&tx.atomic()).unwrap(),
        vec![Value::Int(7), bulk("during!")]
    );

    // A connection that may not follow redirections fails with a typed error.
    let e = strict
        .run_request(&Request::single(cmd(&["GET", key]), Some(key)))
        .unwrap_err();
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Redirect), "{e}");
}

#[test]
fn cluster_auth_from_the_seed_url() {
    let c = cluster();
    let mut raw = nodes(&c);
    for n in &mut raw {
        on(n, &["CONFIG", "SET", "requirepass", "s3cret"]);
    }
    let urls: Vec<String> = c
        .nodes()
        .iter()
        .map(|u| u.replace("redis://", "redis://:s3cret@"))
        .collect();
    let mut con = ClusterConnection::open(urls).unwrap();
    let mut req = Request::new(None);
    for k in keys(30) {
        req.push(cmd(&["SET", &k, "x"]));
    }
    let r = con.run_request(&req).unwrap();
    assert!(r.iter().all(|v| *v == Value::Okay), "{r:?}");
    let e = ClusterConnection::open(c.nodes()).unwrap_err();
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Auth), "{e}");
}

/// The async connection: same routing (reply order, splits, SCAN, transactions) and it
/// follows MOVED after a completed slot migration.
#[cfg(feature = "tokio")]
#[test]
fn cluster_async_connection_routes_and_follows_moved() {
    use redstash::cluster::ClusterAsyncConnection;
    use redstash::exec::AsyncConnection;

    async fn one(con: &mut ClusterAsyncConnection, c: redis::Cmd) -> Value {
        con.run_request(Request::single(c, None))
            .await
            .expect("request")
            .pop()
            .expect("a reply")
    }

    let c = cluster();
    let urls = c.nodes();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut con = ClusterAsyncConnection::open(urls.clone()).await.unwrap();
        assert_eq!(con.primaries().len(), 3);
        let ks = keys(90);
        let mut req = Request::new(None);
        for (i, k) in ks.iter().enumerate() {
            req.push(cmd(&["SET", k, &format!("v{i}")]));
            req.push(cmd(&["GET", k]));
        }
        let r = con.run_request(req).await.unwrap();
        for i in 0..90 {
            assert_eq!(r[2 * i], Value::Okay);
            assert_eq!(r[2 * i + 1], bulk(&format!("v{i}")));
        }
        let mut mget = redis::cmd("MGET");
        mget.arg(&ks[40]).arg("nope").arg(&ks[3]);
        assert_eq!(
            one(&mut con, mget).await,
            Value::Array(vec![bulk("v40"), Value::Nil, bulk("v3")])
        );
        assert_eq!(one(&mut con, cmd(&["DBSIZE"])).await, Value::Int(90));
        let mut seen = BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("COUNT").arg(7);
            let Value::Array(reply) = one(&mut con, scan).await else {
                panic!()
            };
            let [Value::BulkString(next), Value::Array(found)] = &reply[..] else {
                panic!("{reply:?}")
            };
            for k in found {
                let Value::BulkString(k) = k else { panic!() };
                assert!(seen.insert(String::from_utf8(k.clone()).unwrap()), "twice");
            }
            cursor = std::str::from_utf8(next).unwrap().parse().unwrap();
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen, ks.iter().cloned().collect::<BTreeSet<_>>());
        let mut tx = Request::new(None);
        tx.push(cmd(&["SET", "x:1", "1"]));
        tx.push(cmd(&["SET", "x:2", "2"]));
        assert!(matches!(
            con.run_request(tx.atomic()).await,
            Err(Error::CrossSlot { .. })
        ));

        // Move the slot of k:0 to another primary.
        let key = "k:0";
        let slot = key_slot(key.as_bytes());
        let mut raw = nodes(&c);
        let owner = con.slot_owner(slot).unwrap().to_owned();
        let port = |u: &str| {
            u.trim_end_matches('/')
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned()
        };
        let src = urls.iter().position(|u| port(u) == port(&owner)).unwrap();
        let dst = (src + 2) % urls.len();
        let ids: Vec<String> = raw.iter_mut().map(node_id).collect();
        let s = slot.to_string();
        on(
            &mut raw[dst],
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &ids[src]],
        );
        on(
            &mut raw[src],
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &ids[dst]],
        );
        on(
            &mut raw[src],
            &["MIGRATE", "127.0.0.1", &port(&urls[dst]), key, "0", "5000"],
        );
        assert_eq!(one(&mut con, cmd(&["GET", key])).await, bulk("v0"), "ASK");
        for n in &mut raw {
            on(n, &["CLUSTER", "SETSLOT", &s, "NODE", &ids[dst]]);
        }
        assert_eq!(con.slot_owner(slot), Some(owner.as_str()));
        assert_eq!(one(&mut con, cmd(&["GET", key])).await, bulk("v0"), "MOVED");
        assert!(con.slot_owner(slot).unwrap().ends_with(&port(&urls[dst])));
    });
}

/// A primary restarts (same port, same identity and slots, data lost: no persistence in
/// the testkit). A request of reads that meets the dead connection is sent again on a
/// new one (reads may be); a request of writes fails with a connection error (its
/// writes may have been executed, so it is not retried), and the next call reconnects.
#[test]
fn cluster_reconnects_after_a_node_restart() {
    let mut c = cluster();
    let mut con = ClusterConnection::open(c.nodes()).unwrap();
    let ks = keys(60);
    let mut req = Request::new(None);
    for k in &ks {
        req.push(cmd(&["SET", k, "x"]));
    }
    assert!(
        con.run_request(&req)
            .unwrap()
            .iter()
            .all(|v| *v == Value::Okay)
    );
    let restarted = c.servers()[0].port().to_string();
    let restart = |c: &mut RedisCluster| {
        c.servers_mut()[0].restart().unwrap();
        // Wait until the restarted node serves its slots again.
        let mut n = redis::Client::open(c.nodes()[0].as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n).unwrap();
            if info.lines().any(|l| l.trim() == "cluster_state:ok") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{info}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let mut get = Request::new(None);
    for k in &ks {
        get.push(cmd(&["GET", k]));
    }
    let check = |con: &mut ClusterConnection, r: &[Value], v: &str| {
        for (k, got) in ks.iter().zip(r) {
            let on_restarted = con
                .slot_owner(key_slot(k.as_bytes()))
                .unwrap()
                .ends_with(&format!(":{restarted}"));
            let want = if on_restarted { Value::Nil } else { bulk(v) };
            assert_eq!(got, &want, "{k}");
        }
        assert!(r.contains(&Value::Nil) && r.contains(&bulk(v)));
    };

    restart(&mut c);
    let r = con.run_request(&get).unwrap();
    check(&mut con, &r, "x");

    restart(&mut c);
    let mut set = Request::new(None);
    for k in &ks {
        set.push(cmd(&["SET", k, "y"]));
    }
    let e = con.run_request(&set).unwrap_err();
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::Connection), "{e}");
    let r = con.run_request(&get).unwrap();
    check(&mut con, &r, "y");
}

/// Fill a database (a server or a cluster) for the SCAN walker: 2,500 strings `s:N`
/// (more than a page of COUNT), 300 hashes `h:N`, 20 lists `l:N`.
fn fill_for_scan(con: &mut impl SyncConnection) -> (BTreeSet<String>, BTreeSet<String>) {
    let strings: BTreeSet<String> = (0..2500).map(|i| format!("s:{i}")).collect();
    let hashes: BTreeSet<String> = (0..300).map(|i| format!("h:{i}")).collect();
    let mut req = Request::new(None);
    for k in &strings {
        req.push(cmd(&["SET", k, "v"]));
    }
    for k in &hashes {
        req.push(cmd(&["HSET", k, "f", "v"]));
    }
    for i in 0..20 {
        req.push(cmd(&["RPUSH", &format!("l:{i}"), "v"]));
    }
    let replies = con.run_request(&req).unwrap();
    assert!(replies.iter().all(|v| !matches!(v, Value::ServerError(_))));
    (strings, hashes)
}

/// The SCAN walker on `con`: MATCH, TYPE, more keys than COUNT, page by page, bounded.
fn scan_walker_finds_every_key(con: &mut impl SyncConnection) {
    use redstash::exec::{Scan, run};
    let (strings, hashes) = fill_for_scan(con);
    // Every matching key once, sorted, over many pages.
    let found = run(con, Scan::matching("s:*").with_count(100).keys()).unwrap();
    assert_eq!(found.len(), 2500);
    assert_eq!(found.iter().cloned().collect::<BTreeSet<_>>(), strings);
    assert!(
        found.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
    // TYPE filters: every hash and nothing else, with and without MATCH.
    let found = run(con, Scan::all().with_type("hash").keys()).unwrap();
    assert_eq!(found.into_iter().collect::<BTreeSet<_>>(), hashes);
    let found = run(con, Scan::matching("*:1*").with_type("list").keys()).unwrap();
    let lists: Vec<String> = (0..20)
        .map(|i| format!("l:{i}"))
        .filter(|k| k.starts_with("l:1"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(found, lists);
    assert!(
        run(con, Scan::matching("none:*").keys())
            .unwrap()
            .is_empty()
    );
    // Page by page: the cursor goes back to 0 after more than one page, and the pages
    // hold every key (a key may be on two pages).
    let scan = Scan::matching("s:*").with_count(200);
    let (mut cursor, mut pages, mut seen) = (0, 0, BTreeSet::new());
    loop {
        let page = run(con, scan.page(cursor)).unwrap();
        pages += 1;
        seen.extend(page.keys.into_iter().map(|k| String::from_utf8(k).unwrap()));
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
        assert!(pages < 10_000, "the walk does not end");
    }
    assert!(pages > 1, "{pages} pages");
    assert_eq!(seen, strings);
    // A bound on the keys collected.
    match run(
        con,
        Scan::matching("s:*")
            .with_max_keys(1000, "test keys")
            .keys(),
    ) {
        Err(Error::InvalidValue {
            problem: redstash::ValueProblem::Corrupt { format, reason },
            ..
        }) => {
            assert_eq!(format, "test keys");
            assert!(reason.contains("more than 1000 keys"), "{reason}");
        }
        other => panic!("not bounded: {other:?}"),
    }
    assert_eq!(
        run(
            con,
            Scan::all()
                .with_type("hash")
                .with_max_keys(300, "test keys")
                .keys()
        )
        .unwrap()
        .len(),
        300
    );
}

#[test]
fn scan_walker_on_a_single_server() {
    let server = redstash::testkit::RedisServer::start().unwrap();
    let mut con = server.client().unwrap().get_connection().unwrap();
    scan_walker_finds_every_key(&mut con);
    let mut direct = redstash::direct::DirectConnection::open(server.url().as_str()).unwrap();
    scan_walker_finds_every_key(&mut direct);
}

#[test]
fn scan_walker_on_every_primary_of_a_cluster() {
    let c = cluster();
    let mut con = ClusterConnection::open(c.nodes()).unwrap();
    scan_walker_finds_every_key(&mut con);
    // The keys were spread over every primary: the walk crossed them all.
    for mut node in nodes(&c) {
        let role: Vec<Value> = redis::cmd("ROLE").query(&mut node).unwrap();
        if role.first() == Some(&bulk("master")) {
            let n: i64 = redis::cmd("DBSIZE").query(&mut node).unwrap();
            assert!(n > 100, "a primary holds {n} keys");
        }
    }
}
