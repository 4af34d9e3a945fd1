//! PostgreSQL -> Redis hashes: a million-row table loaded by `redstash load`, against
//! `redis-cli --pipe` fed a RESP file of the same commands (made by `redstash load
//! --emit-resp`), back to back on the same servers, with each process's peak RSS.
//! Prints a markdown table.
//!
//!     cargo bench --bench load_postgres --features cli,testkit,postgres
//!
//! `LOAD_PG_ROWS` sets the number of rows (default 1,000,000).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redstash::testkit::RedisServer;
use redstash::testkit::postgres::PostgresServer;

/// What one run measured.
struct Measured {
    seconds: f64,
    peak_rss: u64,
}

/// Runs `cmd` to its end (stdin from `input` when given), polling its peak RSS.
fn measure(mut cmd: Command, input: Option<&std::path::Path>) -> Measured {
    if let Some(p) = input {
        cmd.stdin(std::fs::File::open(p).expect("open input"));
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut peak_rss = 0;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_rss = peak_rss.max(kb * 1024);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = start.elapsed().as_secs_f64();
    let err = err.join().unwrap_or_default();
    assert!(status.success(), "{cmd:?} failed: {err}");
    Measured { seconds, peak_rss }
}

fn dbsize(con: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(con).expect("DBSIZE")
}

fn main() {
    let rows: u64 = std::env::var("LOAD_PG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pg = PostgresServer::start().expect("start postgres");
    let srv = RedisServer::start().expect("start redis-server");
    let mut con = srv
        .client()
        .and_then(|c| c.get_connection())
        .expect("connect");
    let t = Instant::now();
    pg.client()
        .expect("connect to postgres")
        .batch_execute(&format!(
            "CREATE TABLE t (id int8 PRIMARY KEY, name text NOT NULL, score float8, \
                             n int4, flag bool);
             INSERT INTO t SELECT g, 'user-' || g, g * 0.5, (g % 1000)::int4, g % 2 = 0
               FROM generate_series(1, {rows}) g;
             ANALYZE t;"
        ))
        .expect("make the table");
    eprintln!(
        "table of {rows} rows made in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let url = pg.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let resp = dir.path().join("t.resp");
    let load = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_redstash"));
        c.env("REDIS_URL", srv.url())
            .args([
                "--quiet",
                "load",
                &url,
                "--query",
                "SELECT * FROM t",
                "--key",
                "u:{id}",
                "--value",
                "hash",
            ])
            .args(extra);
        c
    };

    let direct = measure(load(&[]), None);
    assert_eq!(dbsize(&mut con), rows);
    redis::cmd("FLUSHALL")
        .query::<()>(&mut con)
        .expect("FLUSHALL");
    let keyed = measure(load(&["--pg-key-column", "id"]), None);
    assert_eq!(dbsize(&mut con), rows);
    redis::cmd("FLUSHALL")
        .query::<()>(&mut con)
        .expect("FLUSHALL");

    let emit = measure(
        load(&["--emit-resp", resp.to_str().expect("utf-8 path")]),
        None,
    );
    let resp_bytes = std::fs::metadata(&resp).map(|m| m.len()).unwrap_or(0);
    let mut pipe = Command::new("redis-cli");
    pipe.args(["-p", &srv.port().to_string(), "--pipe"]);
    let pipe = measure(pipe, Some(&resp));
    assert_eq!(dbsize(&mut con), rows);

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let rate = |s: f64| rows as f64 / s;
    println!(
        "\nPostgreSQL {rows} rows (5 columns) -> Redis hashes (HSET u:{{id}} ...), one redis-server, localhost\n"
    );
    println!("| run | time (s) | rows/s | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|");
    for (name, m) in [
        ("redstash load (COPY stream)", &direct),
        ("redstash load --pg-key-column id (ORDER BY id)", &keyed),
        ("redstash load --emit-resp FILE (no Redis)", &emit),
        ("redis-cli --pipe < FILE", &pipe),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.1} |",
            m.seconds,
            rate(m.seconds),
            mib(m.peak_rss)
        );
    }
    println!(
        "| emit + redis-cli --pipe | {:.2} | {:.0} | |",
        emit.seconds + pipe.seconds,
        rate(emit.seconds + pipe.seconds)
    );
    println!("\nRESP file: {:.1} MiB", mib(resp_bytes));
}
