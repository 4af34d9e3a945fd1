//! Export, live: `redstash export` (the CLI binary, in its own process) against the raw
//! limit of reading the same keyspace, on one fresh redis-server filled with hashes,
//! measured back to back and alternated. Prints markdown tables with ratios, peak RSS
//! and a projection to a billion items.
//!
//! The raw limit is one plain `TcpStream` doing `SCAN cursor COUNT 1000` and a pipelined
//! `HGETALL` of each page's keys, replies skipped without decoding (no `TYPE`, no
//! `PTTL`, no encoding, no compression, no file). The exports are
//! `--format dynamodb --compression gzip`, the same with zstd, `--format jsonl
//! --compression zstd` and `--format resp --compression none`; their peak RSS is the
//! process's `VmHWM`, polled every 20 ms. With a 3-primary cluster (fewer keys), the
//! dynamodb+gzip export with `--cluster on` against the raw limit with one thread per
//! primary.
//!
//! `cargo bench --features testkit,export,cli --bench export`; `REDSTASH_BENCH_KEYS`
//! (1,000,000 hashes of 5 fields; 0 skips the single server), `REDSTASH_BENCH_RUNS` (3 rounds, medians),
//! `REDSTASH_BENCH_CLUSTER_KEYS` (300,000; 0 skips the cluster).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redstash::testkit::{RedisCluster, RedisServer};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Append a command as a RESP array of bulk strings.
fn pack(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A minimal RESP2 reader over a buffered socket: replies are walked, not decoded into
/// values (a skipped bulk string is consumed from the buffer without a copy).
struct Raw {
    write: TcpStream,
    read: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Raw {
    fn connect(port: u16) -> io::Result<Self> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        Ok(Raw {
            write: s.try_clone()?,
            read: BufReader::with_capacity(1 << 20, s),
            line: Vec::with_capacity(64),
        })
    }

    /// The next reply's header line: its type byte and the number after it.
    fn header(&mut self) -> io::Result<(u8, i64)> {
        self.line.clear();
        self.read.read_until(b'\n', &mut self.line)?;
        if self.line.len() < 3 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let body = &self.line[1..self.line.len() - 2];
        if self.line[0] == b'-' {
            return Err(bad(String::from_utf8_lossy(body).into_owned()));
        }
        let n = std::str::from_utf8(body)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad header {:?}", String::from_utf8_lossy(body))))?;
        Ok((self.line[0], n))
    }

    /// Drop `n` bytes from the stream.
    fn consume(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            let got = self.read.fill_buf()?.len().min(n);
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.read.consume(got);
            n -= got;
        }
        Ok(())
    }

    /// Skip one reply (of any shape).
    fn skip(&mut self) -> io::Result<()> {
        match self.header()? {
            (b'$', n) if n >= 0 => self.consume(n as usize + 2),
            (b'*', n) => (0..n.max(0)).try_for_each(|_| self.skip()),
            _ => Ok(()),
        }
    }

    /// One bulk string, copied.
    fn bulk(&mut self) -> io::Result<Vec<u8>> {
        let (t, n) = self.header()?;
        if t != b'$' || n < 0 {
            return Err(bad("expected a bulk string"));
        }
        let mut v = vec![0; n as usize + 2];
        self.read.read_exact(&mut v)?;
        v.truncate(n as usize);
        Ok(v)
    }

    /// `SCAN cursor COUNT 1000`: the next cursor and the page's keys.
    fn scan(&mut self, cursor: u64) -> io::Result<(u64, Vec<Vec<u8>>)> {
        let mut req = Vec::with_capacity(64);
        let c = cursor.to_string();
        pack(&mut req, &[b"SCAN", c.as_bytes(), b"COUNT", b"1000"]);
        self.write.write_all(&req)?;
        if self.header()? != (b'*', 2) {
            return Err(bad("expected a SCAN reply"));
        }
        let next = String::from_utf8(self.bulk()?)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad SCAN cursor"))?;
        let (_, n) = self.header()?;
        let keys = (0..n.max(0))
            .map(|_| self.bulk())
            .collect::<io::Result<_>>()?;
        Ok((next, keys))
    }
}

/// The raw limit on one server: items read (each page's keys `HGETALL`ed in one
/// pipeline, replies skipped).
fn raw_read(port: u16) -> io::Result<u64> {
    let mut con = Raw::connect(port)?;
    let mut cursor = 0;
    let mut items = 0;
    let mut req = Vec::with_capacity(64 << 10);
    loop {
        let (next, keys) = con.scan(cursor)?;
        req.clear();
        for k in &keys {
            pack(&mut req, &[b"HGETALL", k]);
        }
        con.write.write_all(&req)?;
        for _ in &keys {
            con.skip()?;
        }
        items += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            return Ok(items);
        }
    }
}

const CITIES: [&str; 8] = [
    "London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Oslo",
];

/// `HSET user:<i> name .. age .. longitude .. email .. city ..`.
fn hset(out: &mut Vec<u8>, i: u64) {
    let key = format!("user:{i}");
    let name = format!("User Number {i}");
    let age = (18 + i % 70).to_string();
    let lon = format!("{:.6}", (i as f64 * 0.000_731).sin() * 180.0);
    let email = format!("user{i}@example.com");
    let city = CITIES[(i % 8) as usize];
    pack(
        out,
        &[
            b"HSET",
            key.as_bytes(),
            b"name",
            name.as_bytes(),
            b"age",
            age.as_bytes(),
            b"longitude",
            lon.as_bytes(),
            b"email",
            email.as_bytes(),
            b"city",
            city.as_bytes(),
        ],
    );
}

/// Send pipelined commands in batches of 10,000 and skip their replies.
struct Filler {
    con: Raw,
    req: Vec<u8>,
    pending: usize,
}

impl Filler {
    fn new(port: u16) -> io::Result<Self> {
        Ok(Filler {
            con: Raw::connect(port)?,
            req: Vec::with_capacity(1 << 20),
            pending: 0,
        })
    }

    fn add(&mut self, i: u64) -> io::Result<()> {
        hset(&mut self.req, i);
        self.pending += 1;
        if self.pending == 10_000 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.con.write.write_all(&self.req)?;
        for _ in 0..self.pending {
            self.con.skip()?;
        }
        self.req.clear();
        self.pending = 0;
        Ok(())
    }
}

fn fill_server(port: u16, n: u64) -> io::Result<()> {
    let mut f = Filler::new(port)?;
    (0..n).try_for_each(|i| f.add(i))?;
    f.flush()
}

/// CRC16 (XMODEM) of the key's hash tag or whole key, mod 16384: its cluster slot.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|s| {
            let e = key[s + 1..].iter().position(|&b| b == b'}')?;
            (e > 0).then(|| &key[s + 1..s + 1 + e])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Fill the cluster's primaries, each key sent to the primary of its slot (the
/// testkit splits the slots evenly, primary `i` owning `[16384 i/3, 16384 (i+1)/3)`).
fn fill_cluster(cluster: &RedisCluster, n: u64) -> io::Result<()> {
    let p = RedisCluster::PRIMARIES;
    let owner = |slot: u16| {
        (0..p)
            .find(|&i| usize::from(slot) < 16384 * (i + 1) / p)
            .unwrap_or(p - 1)
    };
    for i in 0..p {
        let first = (16384 * i / p) as u16;
        let last = (16384 * (i + 1) / p - 1) as u16;
        for s in [first, last] {
            if cluster.primary_of_slot(s)? != Some(i) {
                return Err(bad(format!("slot {s} is not on primary {i}")));
            }
        }
    }
    let mut fillers = cluster.servers()[..p]
        .iter()
        .map(|s| Filler::new(s.port()))
        .collect::<io::Result<Vec<_>>>()?;
    for i in 0..n {
        let slot = key_slot(format!("user:{i}").as_bytes());
        fillers[owner(slot)].add(i)?;
    }
    fillers.iter_mut().try_for_each(Filler::flush)
}

/// One export by the CLI binary: wall time and peak RSS (bytes).
struct Run {
    took: Duration,
    peak_rss: u64,
    out_bytes: u64,
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn cli_export(args: &[&str], url: &str, cluster: bool, expected: u64) -> Run {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let out = tmp.path().join("export");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redstash"));
    cmd.arg("export")
        .arg("--out")
        .arg(&out)
        .args(args)
        .args(["--url", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if cluster {
        cmd.args(["--cluster", "on"]);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("the redstash binary");
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(h) = vm_hwm(pid) {
            peak = peak.max(h);
        }
        match child.try_wait().expect("waiting for redstash") {
            Some(s) => break s,
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let took = start.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "redstash export {args:?} failed: {err}");
    let summary = redstash::export::manifest::read_summary(&out).expect("the summary");
    // Keys (a RESP export's `itemCount` counts its commands).
    let keys: u64 = summary.item_count_by_type.values().sum();
    assert_eq!(keys, expected, "keys exported by {args:?}");
    Run {
        took,
        peak_rss: peak,
        out_bytes: dir_bytes(&out.join("data")),
    }
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn mb(b: u64) -> String {
    format!("{:.1}", b as f64 / (1 << 20) as f64)
}

/// "1 billion items at this rate" in hours.
fn billion_hours(rate: f64) -> f64 {
    1e9 / rate / 3600.0
}

const CASES: [(&str, &[&str]); 4] = [
    (
        "dynamodb + gzip",
        &["--format", "dynamodb", "--compression", "gzip"],
    ),
    (
        "dynamodb + zstd",
        &["--format", "dynamodb", "--compression", "zstd"],
    ),
    (
        "jsonl + zstd",
        &["--format", "jsonl", "--compression", "zstd"],
    ),
    (
        "resp, uncompressed",
        &["--format", "resp", "--compression", "none"],
    ),
];

fn print_header() {
    println!(
        "| case | median s | items/s | vs raw limit | peak RSS MB | output MB | 1e9 items: hours on 1 machine | with --shard I/N on N machines |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
}

fn print_row(
    case: &str,
    n: u64,
    took: Duration,
    raw_rate: f64,
    rss: Option<u64>,
    out: Option<u64>,
) {
    let rate = n as f64 / took.as_secs_f64();
    let h = billion_hours(rate);
    println!(
        "| {case} | {:.2} | {:.0} | {:.2}x | {} | {} | {h:.1} | {h:.1}/N (N=10: {:.2}) |",
        took.as_secs_f64(),
        rate,
        rate / raw_rate,
        rss.map_or("-".into(), mb),
        out.map_or("-".into(), mb),
        h / 10.0
    );
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        // `cargo test --benches`: nothing to smoke-test without a long fill.
        return Ok(());
    }
    let n = env_u64("REDSTASH_BENCH_KEYS", 1_000_000);
    let runs = env_u64("REDSTASH_BENCH_RUNS", 3).max(1);
    let cluster_keys = env_u64("REDSTASH_BENCH_CLUSTER_KEYS", 300_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());

    if n > 0 {
        single_server(n, runs, cores)?;
    }
    if cluster_keys > 0 {
        cluster(cluster_keys, runs)?;
    }
    Ok(())
}

/// The single-server tables.
fn single_server(n: u64, runs: u64, cores: usize) -> io::Result<()> {
    let srv = RedisServer::start()?;
    let t = Instant::now();
    fill_server(srv.port(), n)?;
    println!(
        "# Export of {n} hashes (5 fields: name, age, longitude, email, city), {runs} rounds, {cores} cores\n\nfilled in {:.1}s\n",
        t.elapsed().as_secs_f64()
    );
    let url = srv.url();
    let mut raw = Vec::new();
    let mut cases: Vec<Vec<Run>> = (0..CASES.len()).map(|_| Vec::new()).collect();
    for round in 0..runs {
        let t = Instant::now();
        assert_eq!(raw_read(srv.port())?, n, "keys read by the raw limit");
        raw.push(t.elapsed());
        for (i, (_, a)) in CASES.iter().enumerate() {
            cases[i].push(cli_export(a, &url, false, n));
        }
        eprintln!("round {} of {runs} done", round + 1);
    }
    let raw_took = median(raw);
    let raw_rate = n as f64 / raw_took.as_secs_f64();
    print_header();
    print_row(
        "raw limit: SCAN COUNT 1000 + pipelined HGETALL, one socket, no decoding",
        n,
        raw_took,
        raw_rate,
        None,
        None,
    );
    for ((name, _), rs) in CASES.iter().zip(&cases) {
        let took = median(rs.iter().map(|r| r.took).collect());
        let rss = median(rs.iter().map(|r| r.peak_rss).collect());
        let out = median(rs.iter().map(|r| r.out_bytes).collect());
        print_row(
            &format!("redstash export {name}"),
            n,
            took,
            raw_rate,
            Some(rss),
            Some(out),
        );
    }
    println!(
        "\nWith --shard I/N on one server, each of the N exporters still SCANs every key (it \
         reads and encodes only its slots'): the /N projection holds while Redis answers \
         the N SCANs and the reads; a cluster splits the SCANs across its primaries."
    );
    Ok(())
}

/// The cluster table.
fn cluster(cluster_keys: u64, runs: u64) -> io::Result<()> {
    {
        let cluster = RedisCluster::start()?;
        let t = Instant::now();
        fill_cluster(&cluster, cluster_keys)?;
        let ports: Vec<u16> = cluster.servers()[..RedisCluster::PRIMARIES]
            .iter()
            .map(RedisServer::port)
            .collect();
        let nodes = cluster.nodes().join(",");
        println!(
            "\n# 3-primary cluster, {cluster_keys} hashes, {runs} rounds (filled in {:.1}s)\n",
            t.elapsed().as_secs_f64()
        );
        let (mut raw, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let read: u64 = std::thread::scope(|s| {
                let hs: Vec<_> = ports
                    .iter()
                    .map(|&p| s.spawn(move || raw_read(p)))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(bad("a reader panicked"))))
                    .sum::<io::Result<u64>>()
            })?;
            assert_eq!(read, cluster_keys, "keys read by the raw limit");
            raw.push(t.elapsed());
            ours.push(cli_export(CASES[0].1, &nodes, true, cluster_keys));
        }
        let raw_took = median(raw);
        let raw_rate = cluster_keys as f64 / raw_took.as_secs_f64();
        print_header();
        print_row(
            "raw limit: one socket per primary, SCAN + pipelined HGETALL",
            cluster_keys,
            raw_took,
            raw_rate,
            None,
            None,
        );
        let took = median(ours.iter().map(|r| r.took).collect());
        let rss = median(ours.iter().map(|r| r.peak_rss).collect());
        let out = median(ours.iter().map(|r| r.out_bytes).collect());
        print_row(
            "redstash export --cluster on, dynamodb + gzip",
            cluster_keys,
            took,
            raw_rate,
            Some(rss),
            Some(out),
        );
    }
    Ok(())
}
