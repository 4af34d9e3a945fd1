//! The cluster connections on a Redis Cluster with replicas (3 primaries, 3 replicas,
//! `cluster-node-timeout` 1.5 s): the testkit's failover helpers, loops of reads and
//! writes that ride out a manual failover and a killed primary, writes in flight to a
//! killed primary that are not retried, `WAIT` (writes not proven replicated, and no
//! acknowledged write lost when primaries are killed), and reads from replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use redstash::RedisErrorKind;
use redstash::cluster::{ClusterConnection, key_slot};
use redstash::exec::RetryPolicy;
use redstash::exec::{Delivery, Request, Requests, SyncConnection};
use redstash::testkit::RedisCluster;

fn cluster() -> RedisCluster {
    RedisCluster::start_with_replicas(1).expect("start a Redis Cluster with replicas")
}

/// Generous for a shared 2-core CI machine: a promotion takes 2-4 s.
fn patient() -> RetryPolicy {
    RetryPolicy::failover().with_budget(Some(Duration::from_secs(25)))
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn raw(c: &RedisCluster, node: usize) -> redis::Connection {
    redis::Client::open(c.nodes()[node].as_str())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The node serving `key` as primary now.
fn owner(c: &RedisCluster, key: &str) -> usize {
    c.primary_of_slot(key_slot(key.as_bytes()))
        .unwrap()
        .expect("a primary for the slot")
}

/// `SET k v` then `GET k` for a few keys spread over the slots, as one idempotent
/// request; checks the replies.
fn step_request(n: usize) -> (Request<'static>, Vec<String>) {
    let mut req = Request::new(None);
    let mut keys = Vec::new();
    for j in 0..6 {
        let k = format!("loop:{}", (n * 6 + j) % 60);
        req.push(cmd(&["SET", &k, &format!("v{n}")]));
        req.push(cmd(&["GET", &k]));
        keys.push(k);
    }
    (req.idempotent(), keys)
}

fn check_step(n: usize, replies: &[Value]) -> Result<(), String> {
    let v = bulk(&format!("v{n}"));
    for pair in replies.chunks(2) {
        if pair != [Value::Okay, v.clone()] {
            return Err(format!("step {n}: {replies:?}"));
        }
    }
    Ok(())
}

/// What a loop of requests saw.
#[derive(Debug, Default)]
struct LoopStats {
    steps: usize,
    errors: Vec<String>,
    /// The longest time between two completed steps.
    max_gap: Duration,
}

/// Run `step` until `stop` (at least `min_steps` after it is raised is not needed: the
/// caller waits for progress itself), recording gaps and errors.
fn run_loop(
    stop: &AtomicBool,
    progress: &AtomicUsize,
    mut step: impl FnMut(usize) -> Result<(), String>,
) -> LoopStats {
    let mut stats = LoopStats::default();
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = step(stats.steps) {
            stats.errors.push(e);
        }
        stats.steps += 1;
        progress.store(stats.steps, Ordering::Relaxed);
        stats.max_gap = stats.max_gap.max(last.elapsed());
        last = Instant::now();
    }
    stats
}

/// Waits until the loop made `more` steps past where it is now (bounded).
fn wait_progress(progress: &AtomicUsize, more: usize) {
    let target = progress.load(Ordering::Relaxed) + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < deadline, "the loop made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Drives the failover scenario around a loop started by `spawn`: a manual failover of
/// the primary of `loop:0`, then a kill of the primary of `loop:1` (its replica is
/// promoted); returns the loop's stats and how long the promotion took.
fn failover_scenario(
    spawn: impl FnOnce(Vec<String>, Arc<AtomicBool>, Arc<AtomicUsize>) -> JoinHandle<LoopStats>,
) -> (LoopStats, Duration) {
    let mut c = cluster();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let handle = spawn(c.nodes(), stop.clone(), progress.clone());
    wait_progress(&progress, 20);

    let primary = owner(&c, "loop:0");
    let replica = c.replica_of(primary).expect("a replica");
    c.failover(replica).unwrap();
    assert!(c.primaries().contains(&replica));
    wait_progress(&progress, 20);

    let victim = owner(&c, "loop:1");
    let heir = c.replica_of(victim).expect("a replica");
    let killed = Instant::now();
    c.kill(victim);
    c.wait_until_ok().unwrap();
    let promotion = killed.elapsed();
    assert!(c.primaries().contains(&heir), "{:?}", c.primaries());
    wait_progress(&progress, 20);

    stop.store(true, Ordering::Relaxed);
    let stats = handle.join().unwrap();
    eprintln!("loop: {stats:?}, promotion took {promotion:?}");
    (stats, promotion)
}

fn assert_rode_out((stats, promotion): (LoopStats, Duration)) {
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    // The loop stalls for the promotion at most (plus the retry pauses and a slow CI).
    assert!(
        stats.max_gap <= promotion + Duration::from_secs(3),
        "the loop stopped for {:?} (promotion {promotion:?})",
        stats.max_gap
    );
}

/// The testkit's replicas: roles as the nodes say, a manual failover swaps them, a
/// killed primary's replica is promoted, and the killed node comes back as a replica.
#[test]
fn failover_testkit_roles_failover_kill_and_restart() {
    let started = Instant::now();
    let mut c = cluster();
    eprintln!("start_with_replicas(1): {:?}", started.elapsed());
    assert_eq!(c.nodes().len(), 6);
    let primaries = c.primaries();
    assert_eq!(primaries, [0, 1, 2]);
    assert_eq!(c.replicas(), [3, 4, 5]);
    for &p in &primaries {
        assert!(c.replica_of(p).is_some(), "primary {p} has a replica");
    }
    // Every write acknowledged before is on the replica (offsets caught up).
    let slot_owner = owner(&c, "{t}x");
    redis::cmd("SET")
        .arg("{t}x")
        .arg("1")
        .query::<()>(&mut raw(&c, slot_owner))
        .unwrap();
    let replica = c.replica_of(slot_owner).unwrap();
    let t = Instant::now();
    c.failover(replica).unwrap();
    eprintln!("manual failover: {:?}", t.elapsed());
    assert!(c.primaries().contains(&replica));
    assert_eq!(c.replica_of(replica), Some(slot_owner));
    assert_eq!(owner(&c, "{t}x"), replica);

    let t = Instant::now();
    c.kill(replica);
    c.wait_until_ok().unwrap();
    eprintln!("promotion after a kill: {:?}", t.elapsed());
    assert_eq!(owner(&c, "{t}x"), slot_owner);
    assert!(!c.replicas().contains(&replica));
    let t = Instant::now();
    c.restart(replica).unwrap();
    eprintln!("restart as a replica: {:?}", t.elapsed());
    assert_eq!(c.replica_of(slot_owner), Some(replica));
    let v: String = redis::cmd("GET")
        .arg("{t}x")
        .query(&mut raw(&c, slot_owner))
        .unwrap();
    assert_eq!(v, "1");
}

/// A loop of idempotent reads and writes on a `ClusterConnection` goes on through a
/// manual failover and a killed primary: no error, and no stall longer than the
/// promotion.
#[test]
fn failover_sync_loop_rides_out_a_failover_and_a_killed_primary() {
    assert_rode_out(failover_scenario(|urls, stop, progress| {
        let mut con = ClusterConnection::open(urls).unwrap().with_retry(patient());
        std::thread::spawn(move || {
            run_loop(&stop, &progress, |n| {
                let (req, _) = step_request(n);
                let replies = con.run_request(&req).map_err(|e| format!("{e:#}"))?;
                check_step(n, &replies)
            })
        })
    }));
}

/// The same loop on a `ClusterAsyncConnection`.
#[test]
fn failover_async_loop_rides_out_a_failover_and_a_killed_primary() {
    use redstash::cluster::ClusterAsyncConnection;
    use redstash::exec::AsyncConnection;
    assert_rode_out(failover_scenario(|urls, stop, progress| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut con = ClusterAsyncConnection::open(urls)
                    .await
                    .unwrap()
                    .with_retry(patient());
                let mut stats = LoopStats::default();
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let n = stats.steps;
                    let (req, _) = step_request(n);
                    let result = match con.run_request(req).await {
                        Ok(replies) => check_step(n, &replies),
                        Err(e) => Err(format!("{e:#}")),
                    };
                    if let Err(e) = result {
                        stats.errors.push(e);
                    }
                    stats.steps += 1;
                    progress.store(stats.steps, Ordering::Relaxed);
                    stats.max_gap = stats.max_gap.max(last.elapsed());
                    last = Instant::now();
                }
                stats
            })
        })
    }));
}

/// Writes that are not idempotent (`INCR`) in flight to a primary that is killed are
/// not sent again: the `SendAll` reports those requests in flight (or not sent) and
/// the others answered, each exactly once; after the promotion the next call works.
#[test]
fn failover_non_idempotent_writes_to_a_killed_primary_are_not_retried() {
    let mut c = cluster();
    let mut con = ClusterConnection::open(c.nodes())
        .unwrap()
        .with_retry(patient());
    let keys: Vec<String> = (0..60).map(|i| format!("n:{i}")).collect();
    // Connections to every primary are open.
    let mut warm = Request::new(None);
    for k in &keys {
        warm.push(cmd(&["GET", k]));
    }
    con.run_request(&warm).unwrap();
    let victim = owner(&c, &keys[0]);
    let on_victim: Vec<bool> = keys.iter().map(|k| owner(&c, k) == victim).collect();
    c.kill(victim);
    let reqs: Vec<Request<'static>> = keys
        .iter()
        .map(|k| Request::single(cmd(&["INCR", k]), Some(k)))
        .collect();
    let i = con.run_requests(Requests::from(reqs)).unwrap_err();
    let failure = i.failure.as_ref().expect("a connection failure");
    assert_eq!(
        failure.redis_kind(),
        Some(RedisErrorKind::Connection),
        "{failure}"
    );
    assert_eq!(i.requests.len(), keys.len());
    let mut answered = Vec::new();
    for (n, d) in i.requests.iter().enumerate() {
        match d {
            Delivery::Answered(r) => {
                assert!(!on_victim[n], "{} answered by a dead node", keys[n]);
                assert_eq!(r, &[Value::Int(1)]);
                answered.push(n);
            }
            Delivery::InFlight(r) => {
                assert!(on_victim[n], "{}: {r:?}", keys[n]);
                assert_eq!(r, &[None]);
            }
            Delivery::NotSent => assert!(on_victim[n], "{}", keys[n]),
            Delivery::Refused(e) => panic!("{}: {e}", keys[n]),
        }
    }
    assert_eq!(
        answered.len(),
        on_victim.iter().filter(|v| !**v).count(),
        "every request to a live primary was answered"
    );
    // The next call waits for the promotion (its requests were not written yet).
    c.wait_until_ok().unwrap();
    for (n, k) in keys.iter().enumerate() {
        let v = con
            .run_request(&Request::single(cmd(&["GET", k]), None))
            .unwrap();
        if on_victim[n] {
            // Not retried: at most the one INCR that may have reached it before the kill.
            assert!(
                matches!(&v[..], [Value::Nil] | [Value::BulkString(_)]),
                "{v:?}"
            );
            if let [Value::BulkString(b)] = &v[..] {
                assert_eq!(b, b"1");
            }
        } else {
            assert_eq!(v, [bulk("1")], "{k} incremented once");
        }
    }
    let r = con
        .run_request(&Request::single(cmd(&["INCR", &keys[0]]), None))
        .unwrap();
    assert!(matches!(r[..], [Value::Int(1 | 2)]), "{r:?}");
}

/// `with_wait(1, ...)` with the replica of one primary killed: a write to that primary
/// ran but is not proven replicated (`NotReplicated`; in a `SendAll`, in flight), and
/// the writes to the other primaries and the reads are fine.
#[test]
fn failover_wait_reports_writes_not_proven_replicated() {
    let mut c = cluster();
    let mut con = ClusterConnection::open(c.nodes())
        .unwrap()
        .with_wait(1, Duration::from_millis(300));
    let keys: Vec<String> = (0..30).map(|i| format!("w:{i}")).collect();
    let lonely = owner(&c, &keys[0]);
    let on_lonely: Vec<bool> = keys.iter().map(|k| owner(&c, k) == lonely).collect();
    // Every write acknowledged by a replica.
    let reqs: Vec<Request<'static>> = keys
        .iter()
        .map(|k| Request::single(cmd(&["SET", k, "a"]), Some(k)))
        .collect();
    let replies = con.run_requests(Requests::from(reqs)).unwrap();
    assert!(replies.iter().all(|r| r == &[Value::Okay]));

    let replica = c.replica_of(lonely).unwrap();
    c.kill(replica);
    let e = con
        .run_request(&Request::single(
            cmd(&["SET", &keys[0], "b"]),
            Some(&keys[0]),
        ))
        .unwrap_err();
    assert_eq!(e.redis_kind(), Some(RedisErrorKind::NotReplicated), "{e}");
    let why = std::error::Error::source(&e).map(ToString::to_string);
    assert!(
        why.as_ref().is_some_and(|w| w.contains("0 of 1 replicas")),
        "{why:?}"
    );
    // It ran on the primary all the same.
    let v = con
        .run_request(&Request::single(cmd(&["GET", &keys[0]]), None))
        .unwrap();
    assert_eq!(v, [bulk("b")], "reads need no WAIT");

    let reqs: Vec<Request<'static>> = keys
        .iter()
        .map(|k| Request::single(cmd(&["SET", k, "c"]), Some(k)))
        .collect();
    let i = con.run_requests(Requests::from(reqs)).unwrap_err();
    let failure = i.failure.as_ref().unwrap();
    assert_eq!(failure.redis_kind(), Some(RedisErrorKind::NotReplicated));
    for (n, d) in i.requests.iter().enumerate() {
        match d {
            Delivery::InFlight(r) if on_lonely[n] => assert_eq!(r, &[None]),
            Delivery::Answered(r) if !on_lonely[n] => assert_eq!(r, &[Value::Okay]),
            other => panic!(
                "{} (on the lonely primary: {}): {other:?}",
                keys[n], on_lonely[n]
            ),
        }
    }
    let other = keys.iter().zip(&on_lonely).find(|(_, l)| !**l).unwrap().0;
    con.run_request(&Request::single(cmd(&["SET", other, "d"]), None))
        .unwrap();
}

/// No acknowledged write is lost when primaries are killed, with `with_wait(1, ...)`:
/// after each batch of writes, the primary of some of them is killed; once its replica
/// is promoted, every write the batches reported answered is read back.
#[test]
fn failover_writes_acknowledged_with_wait_survive_killed_primaries() {
    let mut c = cluster();
    let mut con = ClusterConnection::open(c.nodes())
        .unwrap()
        .with_wait(1, Duration::from_secs(2))
        .with_retry(patient());
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut unknown = 0;
    for round in 0..2 {
        let keys: Vec<String> = (0..300).map(|i| format!("d:{i}")).collect();
        let value = format!("r{round}");
        let reqs: Vec<Request<'static>> = keys
            .iter()
            .map(|k| Request::single(cmd(&["SET", k, &value]), Some(k)))
            .collect();
        let deliveries: Vec<Delivery> = match con.run_requests(Requests::from(reqs)) {
            Ok(all) => all.into_iter().map(Delivery::Answered).collect(),
            Err(i) => i.requests,
        };
        for (k, d) in keys.iter().zip(deliveries) {
            match d {
                Delivery::Answered(r) => {
                    assert_eq!(r, [Value::Okay]);
                    written.insert(k.clone(), value.clone());
                }
                _ => {
                    unknown += 1;
                    written.remove(k);
                }
            }
        }
        // Kill the primary of one of the keys right after the acknowledgement.
        let victim = owner(&c, &keys[round * 7]);
        let t = Instant::now();
        c.kill(victim);
        c.wait_until_ok().unwrap();
        eprintln!("round {round}: promotion in {:?}", t.elapsed());
        let mut get = Request::new(None);
        for k in written.keys() {
            get.push(cmd(&["GET", k]));
        }
        let got = con.run_request(&get.idempotent()).unwrap();
        for ((k, v), g) in written.iter().zip(&got) {
            assert_eq!(g, &bulk(v), "{k}: acknowledged, then lost");
        }
        let t = Instant::now();
        c.restart(victim).unwrap();
        eprintln!("round {round}: restart as a replica in {:?}", t.elapsed());
    }
    assert_eq!(unknown, 0, "every write was acknowledged by a replica");
    assert_eq!(written.len(), 300);
}

/// `INFO commandstats` of a node: calls of `cmd` (lowercase), 0 when never called.
fn calls(node: &mut redis::Connection, cmd: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(node).unwrap();
    info.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("cmdstat_{cmd}:calls="))?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// With replica reads on, the reads of a request go to replicas and its writes to the
/// primaries; off (the default), everything goes to the primaries.
#[test]
fn failover_replica_reads_hit_replicas_only_when_asked() {
    use redstash::cluster::ClusterAsyncConnection;
    use redstash::exec::AsyncConnection;
    let c = cluster();
    let keys: Vec<String> = (0..60).map(|i| format!("r:{i}")).collect();
    let reads = || {
        let mut req = Request::new(None);
        for k in &keys {
            req.push(cmd(&["GET", k]));
        }
        let mut mget = redis::cmd("MGET");
        mget.arg(&keys[..10]);
        req.push(mget);
        req
    };
    let mut writes = Request::new(None);
    for k in &keys {
        writes.push(cmd(&["SET", k, "x"]));
    }
    let reset = || {
        for n in 0..6 {
            redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query::<()>(&mut raw(&c, n))
                .unwrap();
        }
    };
    let counts = |name: &str| -> (u64, u64) {
        let (mut on_primaries, mut on_replicas) = (0, 0);
        for p in c.primaries() {
            on_primaries += calls(&mut raw(&c, p), name);
        }
        for r in c.replicas() {
            on_replicas += calls(&mut raw(&c, r), name);
        }
        (on_primaries, on_replicas)
    };

    let mut con = ClusterConnection::open(c.nodes())
        .unwrap()
        .with_replica_reads(true);
    // Writes go to the primaries even so, and are acknowledged by the replicas.
    let mut con_wait = ClusterConnection::open(c.nodes())
        .unwrap()
        .with_wait(1, Duration::from_secs(5));
    con_wait.run_request(&writes).unwrap();
    reset();
    let r = con.run_request(&reads()).unwrap();
    assert!(r[..60].iter().all(|v| *v == bulk("x")), "{r:?}");
    con.run_request(&writes).unwrap();
    let (gp, gr) = counts("get");
    let (mp, mr) = counts("mget");
    let (sp, sr) = counts("set");
    assert_eq!((gp, gr), (0, 60), "GETs on replicas");
    assert_eq!(mp, 0);
    assert!(mr >= 1, "MGET on replicas");
    // (A replica counts the SETs it replicates.)
    assert_eq!((sp, sr), (60, 60), "SETs on primaries");
    for p in c.replicas() {
        assert!(
            calls(&mut raw(&c, p), "get") > 0,
            "every replica serves reads"
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    reset();
    rt.block_on(async {
        let mut con = ClusterAsyncConnection::open(c.nodes())
            .await
            .unwrap()
            .with_replica_reads(true);
        let r = con.run_request(reads()).await.unwrap();
        assert!(r[..60].iter().all(|v| *v == bulk("x")), "{r:?}");
    });
    assert_eq!(counts("get"), (0, 60), "async: GETs on replicas");

    reset();
    let mut plain = ClusterConnection::open(c.nodes()).unwrap();
    plain.run_request(&reads()).unwrap();
    assert_eq!(counts("get"), (60, 0), "default: GETs on primaries");
    rt.block_on(async {
        let mut con = ClusterAsyncConnection::open(c.nodes()).await.unwrap();
        con.run_request(reads()).await.unwrap();
    });
    assert_eq!(counts("get"), (120, 0), "async default: GETs on primaries");
}
