//! The whole-run harness: one line per figure, with its conditions.
//!
//!   cargo run --release -p celerity-bench -- --redis redis://127.0.0.1:6379/0
//!   cargo run --release -p celerity-bench -- --only cluster --cluster redis+cluster://127.0.0.1:7000
//!
//! Every figure runs in a namespace of its own, deleted afterwards, so the harness
//! neither flushes nor touches other data. Worker processes are this binary again
//! (`celerity-bench worker …`), as a user's worker binary would be.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use celerity_bench::{add, noop};
use clap::Parser;
use task_core::App;
use task_redis::RedisConfig;

#[derive(Debug, Parser)]
#[command(about = "Celerity's whole-run benchmark against a Redis server")]
struct Args {
    /// The Redis to measure against (nothing outside the harness's own namespaces is touched).
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// Tasks for each enqueue figure.
    #[arg(long, default_value_t = 20_000)]
    enqueue: usize,
    /// Tasks for each drain figure.
    #[arg(long, default_value_t = 100_000)]
    drain: usize,
    /// Worker concurrency.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Runtime threads of each worker process: 1 is tokio's current-thread runtime (one
    /// process per core, as Node and prefork Celery run), 0 its multi-thread default.
    #[arg(long, default_value_t = 1)]
    worker_threads: usize,
    /// Messages each worker process holds at once, as a multiple of its concurrency: 4 is
    /// Celery's default (`worker_prefetch_multiplier`); Celerity's own default is 1.
    #[arg(long, default_value_t = 4)]
    prefetch_multiplier: usize,
    /// The worker processes' pool: `threads`, or `process` (each worker process is then
    /// a supervisor of `--concurrency` children, one task at a time each).
    #[arg(long, default_value = "threads")]
    pool: String,
    /// Sequential delay -> get round trips.
    #[arg(long, default_value_t = 2_000)]
    rtt: usize,
    /// The deep queue of the flatness check.
    #[arg(long, default_value_t = 1_000_000)]
    deep: usize,
    /// Seconds of an idle worker's CPU.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Only these figures (enqueue, drain, rtt, memory, idle, depth); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also append each figure as a JSON line to this file (the peers' format, for
    /// benches/compare/compare.sh).
    #[arg(long)]
    jsonl: Option<std::path::PathBuf>,
    /// A shell command run around each drain: with `start` once the queue is filled and
    /// before its workers start, with `stop` after the last ack (env:
    /// CELERITY_BENCH_TASKS, CELERITY_BENCH_FIGURE). benches/callgrind.sh counts Redis's
    /// instructions per task with it.
    #[arg(long)]
    around_drain: Option<String>,
    /// A Redis Cluster (`redis+cluster://host:port,…`) for the `cluster` figure: the
    /// drain of one partitioned queue, with the Redis CPU per task on each primary.
    #[arg(long)]
    cluster: Option<String>,
    /// The partitions of the queue drained on the cluster.
    #[arg(long, default_value_t = 12)]
    partitions: u16,
}

/// Tells a worker process how many runtime threads to run.
const ENV_THREADS: &str = "CELERITY_BENCH_WORKER_THREADS";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        let threads: usize = std::env::var(ENV_THREADS).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut runtime = match threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            _ => tokio::runtime::Builder::new_multi_thread(),
        };
        if threads > 1 {
            runtime.worker_threads(threads);
        }
        let worker = async { task_core::cli::run(App::from_env().await?).await };
        return Ok(runtime.enable_all().build()?.block_on(worker)?);
    }
    tokio::runtime::Runtime::new()?.block_on(measure(Args::parse()))
}

async fn measure(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let want = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let started = Instant::now();
    let bench = Bench {
        url: args.redis.clone(),
        run: std::process::id(),
        n: std::sync::atomic::AtomicUsize::new(0),
        jsonl: args.jsonl.clone(),
        worker_threads: args.worker_threads,
        prefetch_multiplier: args.prefetch_multiplier.max(1),
        pool: args.pool.clone(),
        partitions: None,
        around_drain: args.around_drain.clone(),
    };
    println!(
        "# celerity-bench {} — redis {} — {} CPUs — release={} — worker processes: {}, prefetch {}× the concurrency, pool {}",
        env!("CARGO_PKG_VERSION"),
        task_core::redact_url(&args.redis),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        !cfg!(debug_assertions),
        match args.worker_threads {
            0 => "tokio's multi-thread runtime".to_owned(),
            1 => "current-thread runtime".to_owned(),
            n => format!("multi-thread runtime, {n} threads"),
        },
        args.prefetch_multiplier.max(1),
        args.pool
    );
    if want("enqueue") {
        bench.enqueue(args.enqueue).await?;
    }
    if want("drain") {
        for track_started in [true, false] {
            bench.drain(args.drain, 1, args.concurrency, track_started).await?;
            bench.drain(args.drain, 2, args.concurrency, track_started).await?;
        }
    }
    if want("rtt") {
        bench.rtt(args.rtt, args.concurrency).await?;
    }
    if want("memory") {
        bench.memory(10_000).await?;
    }
    if want("idle") {
        bench.idle(args.idle_secs).await?;
    }
    if want("depth") {
        bench.depth(args.deep, args.concurrency).await?;
    }
    if let Some(cluster) = &args.cluster
        && want("cluster")
    {
        let on_cluster = Bench { url: cluster.clone(), partitions: Some(args.partitions), ..bench };
        let primaries = on_cluster.primaries().await?;
        println!(
            "# cluster {} — {} primaries — queue `default` in {} partitions",
            task_core::redact_url(cluster),
            primaries.len(),
            args.partitions
        );
        for track_started in [true, false] {
            on_cluster.drain(args.drain, 2, args.concurrency, track_started).await?;
        }
    }
    println!("# done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

struct Bench {
    url: String,
    run: u32,
    n: std::sync::atomic::AtomicUsize,
    jsonl: Option<std::path::PathBuf>,
    worker_threads: usize,
    prefetch_multiplier: usize,
    pool: String,
    /// On a cluster: the partitions of the queue `default`.
    partitions: Option<u16>,
    /// `--around-drain`.
    around_drain: Option<String>,
}

/// A namespace of one figure, and its app.
struct Space {
    ns: String,
    app: App,
    url: String,
    worker_threads: usize,
    prefetch_multiplier: usize,
    pool: String,
    partitions: Option<u16>,
    /// The servers whose CPU is counted: the one Redis, or every primary of a cluster.
    nodes: Vec<String>,
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0} tasks/s", n as f64 / d.as_secs_f64())
}

impl Bench {
    /// Runs `--around-drain`'s command with `phase` (`start` or `stop`), if one is given.
    fn around_drain(&self, phase: &str, n: usize, figure: &str) -> Result<(), Box<dyn std::error::Error>> {
        let Some(command) = &self.around_drain else { return Ok(()) };
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{command} {phase}"))
            .env("CELERITY_BENCH_TASKS", n.to_string())
            .env("CELERITY_BENCH_FIGURE", figure)
            .status()?;
        if !status.success() {
            return Err(format!("`{command} {phase}` failed: {status}").into());
        }
        Ok(())
    }

    /// Appends `{"peer": "celerity", "measure": .., ..fields}` to the JSON-lines file, if any.
    fn record(&self, measure: &str, fields: &[(&str, f64)]) {
        let Some(path) = &self.jsonl else { return };
        let mut line = format!("{{\"peer\":\"celerity\",\"measure\":\"{measure}\"");
        for (k, v) in fields {
            line.push_str(&format!(",\"{k}\":{v}"));
        }
        line.push_str("}\n");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
        if let Err(e) = file.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes())) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }

    async fn space(&self) -> Result<Space, Box<dyn std::error::Error>> {
        let ns = format!("celerity-bench-{}-{}", self.run, self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut config = RedisConfig::from_url(&self.url).namespace(&ns);
        if let Some(n) = self.partitions {
            config = config.partitions("default", n);
        }
        let app = task_redis::app_builder(config).await?.build().await?;
        Ok(Space {
            ns,
            app,
            url: self.url.clone(),
            worker_threads: self.worker_threads,
            prefetch_multiplier: self.prefetch_multiplier,
            pool: self.pool.clone(),
            partitions: self.partitions,
            nodes: self.primaries().await?,
        })
    }

    /// `redis://host:port` of the one Redis, or of every primary of the cluster (as
    /// its first node's `CLUSTER NODES` lists them).
    async fn primaries(&self) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let Some(nodes) = self.url.strip_prefix("redis+cluster://") else { return Ok(vec![self.url.clone()]) };
        let first = nodes.split(['/', ',']).next().unwrap_or_default();
        let first = first.rsplit_once('@').map_or(first, |(_, host)| host);
        let mut con = redis::Client::open(format!("redis://{first}"))?.get_multiplexed_async_connection().await?;
        let table: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut con).await?;
        let mut primaries: Vec<String> =
            celerity_bench::cluster_primaries(&table).into_iter().map(|addr| format!("redis://{addr}")).collect();
        primaries.sort();
        Ok(primaries)
    }

    async fn enqueue(&self, n: usize) -> Result<(), Box<dyn std::error::Error>> {
        let s = self.space().await?;
        let t = Instant::now();
        for _ in 0..n {
            noop::delay(&s.app).await?;
        }
        println!("enqueue sequential: {} ({n} × awaited delay, one producer)", rate(n, t.elapsed()));
        self.record("enqueue", &[("n", n as f64), ("rate", n as f64 / t.elapsed().as_secs_f64())]);
        s.clean().await?;

        let s = self.space().await?;
        let t = Instant::now();
        let per = n / 64;
        let producers: Vec<_> = (0..64)
            .map(|_| {
                let app = s.app.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        noop::delay(&app).await?;
                    }
                    Ok::<_, task_core::Error>(())
                })
            })
            .collect();
        for p in producers {
            p.await??;
        }
        println!(
            "enqueue 64 in flight: {} ({} × delay, 64 concurrent on one connection)",
            rate(per * 64, t.elapsed()),
            per * 64
        );
        self.record(
            "enqueue_concurrent",
            &[("n", (per * 64) as f64), ("rate", (per * 64) as f64 / t.elapsed().as_secs_f64())],
        );
        s.clean().await?;

        let s = self.space().await?;
        let t = Instant::now();
        s.fill(n).await?;
        println!("enqueue batch: {} ({n} in send_batch calls of 1000)", rate(n, t.elapsed()));
        self.record(
            "enqueue_bulk",
            &[("n", n as f64), ("batch", 1000.0), ("rate", n as f64 / t.elapsed().as_secs_f64())],
        );
        s.clean().await?;
        Ok(())
    }

    /// Drains `n` no-op tasks; `track_started`: whether workers store STARTED (the
    /// default) or only the end, as Celery does by default.
    async fn drain(
        &self,
        n: usize,
        processes: usize,
        concurrency: usize,
        track_started: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let s = self.space().await?;
        s.fill(n).await?;
        let figure = format!(
            "drain, {}, {processes} worker process{}",
            if track_started { "STARTED stored" } else { "STARTED not stored" },
            if processes == 1 { "" } else { "es" }
        );
        self.around_drain("start", n, &figure)?;
        let redis_before = s.redis_cpu_nodes().await?;
        let workers: Vec<WorkerProcess> =
            (0..processes).map(|_| s.worker_tracking(concurrency, track_started)).collect();
        let (first, last) = s.watch_drain(n, n).await?;
        self.around_drain("stop", n, &figure)?;
        let per_node: Vec<f64> =
            s.redis_cpu_nodes().await?.iter().zip(&redis_before).map(|(after, before)| after - before).collect();
        let redis_used: f64 = per_node.iter().sum();
        let workers_used = workers.iter().map(|w| cpu_ticks_with_children(w.id())).sum::<u64>() as f64 / USER_HZ;
        let per_task = |secs: f64| secs / n as f64 * 1e6;
        let d = last - first;
        println!(
            "drain{}: {} ({n} no-op tasks, results stored, {}, {processes} worker process{} × concurrency {concurrency}, from first dequeue to last ack)",
            if track_started { "" } else { " (track_started off)" },
            rate(n, d),
            if track_started { "STARTED stored" } else { "STARTED not stored, as Celery's default" },
            if processes == 1 { "" } else { "es" }
        );
        println!(
            "  cpu per task: Redis {:.2} µs (INFO cpu over the drain, the harness's own polling included; its one thread bounds the drain near {:.0} tasks/s), workers {:.2} µs (user + system, start-up included)",
            per_task(redis_used),
            n as f64 / redis_used.max(f64::MIN_POSITIVE),
            per_task(workers_used)
        );
        if per_node.len() > 1 {
            let each: Vec<String> = per_node.iter().map(|secs| format!("{:.2}", per_task(*secs))).collect();
            let busiest = per_node.iter().copied().fold(0.0, f64::max);
            println!(
                "  per primary: {} µs per task (balance: the busiest does {:.2}× the mean; its thread alone would bound the drain near {:.0} tasks/s)",
                each.join(" / "),
                busiest / (redis_used / per_node.len() as f64).max(f64::MIN_POSITIVE),
                n as f64 / busiest.max(f64::MIN_POSITIVE)
            );
        }
        self.record(
            "drain",
            &[
                ("n", n as f64),
                ("workers", processes as f64),
                ("conc", concurrency as f64),
                ("track_started", f64::from(u8::from(track_started))),
                ("rate", n as f64 / d.as_secs_f64()),
                ("redis_cpu_us_per_task", per_task(redis_used)),
                ("worker_cpu_us_per_task", per_task(workers_used)),
                ("redis_nodes", per_node.len() as f64),
                ("busiest_node_cpu_us_per_task", per_task(per_node.iter().copied().fold(0.0, f64::max))),
            ],
        );
        for w in workers {
            stop(w);
        }
        s.clean().await?;
        Ok(())
    }

    async fn rtt(&self, m: usize, concurrency: usize) -> Result<(), Box<dyn std::error::Error>> {
        let s = self.space().await?;
        let worker = s.worker(concurrency);
        for _ in 0..50 {
            add::delay(&s.app, 1, 2).await?.get(Duration::from_secs(10)).await?;
        }
        let mut times = Vec::with_capacity(m);
        for _ in 0..m {
            let t = Instant::now();
            let three = add::delay(&s.app, 1, 2).await?.get(Duration::from_secs(10)).await?;
            times.push(t.elapsed());
            assert_eq!(three, 3);
        }
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "round trip: p50 {:.2} ms, p99 {:.2} ms ({m} sequential delay -> get of add(1, 2), 1 worker process)",
            pct(0.50),
            pct(0.99)
        );
        self.record("rtt", &[("m", m as f64), ("p50_ms", pct(0.50)), ("p99_ms", pct(0.99))]);
        stop(worker);
        s.clean().await?;
        Ok(())
    }

    async fn memory(&self, n: usize) -> Result<(), Box<dyn std::error::Error>> {
        let s = self.space().await?;
        s.fill(n).await?;
        let mut con = redis::Client::open(s.url.as_str())?.get_multiplexed_async_connection().await?;
        let key = format!("{}:{{default}}:ready:0", s.ns);
        let bytes: usize =
            redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut con).await?;
        let len: usize = redis::cmd("LLEN").arg(&key).query_async(&mut con).await?;
        let entry: Vec<u8> = redis::cmd("LINDEX").arg(&key).arg(0).query_async(&mut con).await?;
        println!(
            "memory per queued task: {} bytes (MEMORY USAGE of the ready list / {len}; one entry is {} bytes)",
            bytes / len.max(1),
            entry.len()
        );
        self.record("memory", &[("bytes_per_task", (bytes / len.max(1)) as f64)]);
        s.clean().await?;
        Ok(())
    }

    async fn idle(&self, secs: u64) -> Result<(), Box<dyn std::error::Error>> {
        let s = self.space().await?;
        let worker = s.worker(64);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = cpu_ticks(worker.id());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let after = cpu_ticks(worker.id());
        let cpu = (after - before) as f64 / USER_HZ;
        println!(
            "idle worker CPU: {:.3} s over {secs} s ({:.2} %) (1 process, concurrency 64, empty queue)",
            cpu,
            cpu / secs as f64 * 100.0
        );
        self.record("idle_cpu", &[("secs", secs as f64), ("cpu_percent", cpu / secs as f64 * 100.0)]);
        stop(worker);
        s.clean().await?;
        Ok(())
    }

    async fn depth(&self, deep: usize, concurrency: usize) -> Result<(), Box<dyn std::error::Error>> {
        let sample = 20_000;
        let mut rates = Vec::new();
        let mut rss = None;
        for depth in [sample, deep.max(sample)] {
            let s = self.space().await?;
            s.fill(depth).await?;
            let worker = s.worker(concurrency);
            let (first, last) = s.watch_drain(depth, sample).await?;
            rates.push((depth, sample as f64 / (last - first).as_secs_f64()));
            // On the deep queue, the worker's memory after 100k and after all of it.
            if depth >= 200_000 {
                s.watch_drain(depth, 100_000).await?;
                let early = rss_kib(worker.id());
                s.watch_drain(depth, depth).await?;
                rss = Some((early, rss_kib(worker.id()), depth));
            }
            stop(worker);
            s.clean().await?;
        }
        if let Some((early, late, n)) = rss {
            println!(
                "worker RSS: {:.1} MiB after 100000 tasks, {:.1} MiB after {n} (ratio {:.2}; 1 process, concurrency {concurrency})",
                early as f64 / 1024.0,
                late as f64 / 1024.0,
                late as f64 / early.max(1) as f64
            );
            self.record("rss", &[("early_kib", early as f64), ("late_kib", late as f64), ("n", n as f64)]);
        }
        println!(
            "drain vs queue depth: {:.0} tasks/s with {} queued, {:.0} tasks/s with {} queued (ratio {:.2}; first {sample} tasks, 1 worker process)",
            rates[0].1,
            rates[0].0,
            rates[1].1,
            rates[1].0,
            rates[1].1 / rates[0].1
        );
        self.record("depth", &[("shallow_rate", rates[0].1), ("deep_rate", rates[1].1), ("deep", rates[1].0 as f64)]);
        Ok(())
    }
}

impl Space {
    /// Queues `n` no-op tasks in batches of 1000.
    async fn fill(&self, n: usize) -> Result<(), task_core::Error> {
        let mut left = n;
        while left > 0 {
            let k = left.min(1000);
            self.app.send_batch((0..k).map(|_| noop::signature())).await?;
            left -= k;
        }
        Ok(())
    }

    fn worker(&self, concurrency: usize) -> WorkerProcess {
        self.worker_tracking(concurrency, true)
    }

    /// A worker process; `track_started` false sets `CELERITY_TRACK_STARTED=0`.
    fn worker_tracking(&self, concurrency: usize, track_started: bool) -> WorkerProcess {
        let child = Command::new(std::env::current_exe().expect("own path"))
            .args(["worker", "-c", &concurrency.to_string(), "--no-banner", "--loglevel", "error"])
            .args(["--prefetch", &(concurrency * self.prefetch_multiplier).to_string()])
            .args(["--pool", &self.pool])
            .env("CELERITY_BROKER_URL", &self.url)
            .env("CELERITY_REDIS_NAMESPACE", &self.ns)
            .env(task_redis::ENV_PARTITIONS, self.partitions.map(|n| format!("default={n}")).unwrap_or_default())
            .env(ENV_THREADS, self.worker_threads.to_string())
            .env(task_core::ENV_TRACK_STARTED, if track_started { "1" } else { "0" })
            .stdout(Stdio::null())
            .spawn()
            .expect("a worker process");
        WorkerProcess(child)
    }

    /// Times `count` tasks out of a queue of `depth`: from the first dequeue until
    /// `count` are acked (ready + in flight = depth - count).
    async fn watch_drain(&self, depth: usize, count: usize) -> Result<(Instant, Instant), Box<dyn std::error::Error>> {
        let inspect = self.app.broker().inspect().expect("redis inspects");
        let mut first = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let stats = inspect.queue_stats("default").await?;
            let now = Instant::now();
            if first.is_none() && stats.ready < depth {
                first = Some(now);
            }
            if stats.ready + stats.in_flight <= depth - count {
                return Ok((first.unwrap_or(now), now));
            }
            if now > deadline {
                return Err("the drain did not finish in 10 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The CPU seconds each Redis server (each primary of a cluster) has used so far.
    async fn redis_cpu_nodes(&self) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
        let mut all = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let mut con = redis::Client::open(node.as_str())?.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut con).await?;
            all.push(celerity_bench::redis_cpu_secs(&info).ok_or("INFO cpu has no used_cpu_sys / used_cpu_user")?);
        }
        Ok(all)
    }

    /// Deletes every key of the namespace, on each server (one key at a time on a
    /// cluster's primaries: the keys are of many slots).
    async fn clean(self) -> Result<(), Box<dyn std::error::Error>> {
        let on_cluster = self.nodes.len() > 1 || self.url.starts_with("redis+cluster://");
        for node in &self.nodes {
            clean_node(node, &self.ns, on_cluster).await?;
        }
        Ok(())
    }
}

async fn clean_node(url: &str, ns: &str, one_by_one: bool) -> Result<(), Box<dyn std::error::Error>> {
    {
        let mut con = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{ns}:*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut con)
                .await?;
            if one_by_one {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("UNLINK").arg(key).ignore();
                }
                if !keys.is_empty() {
                    let _: () = pipe.query_async(&mut con).await?;
                }
            } else if !keys.is_empty() {
                let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut con).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// A worker process, stopped (SIGTERM) and reaped when dropped, on every path.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn stop(worker: WorkerProcess) {
    drop(worker);
}

/// Clock ticks per second of `/proc/PID/stat` (Linux's USER_HZ).
const USER_HZ: f64 = 100.0;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12) // utime, stime (fields 14 and 15 of stat)
}

/// [`cpu_ticks`] of a process and of its live children (a process pool's supervisor
/// and its workers).
fn cpu_ticks_with_children(pid: u32) -> u64 {
    let children = std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let child: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        let parent: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (parent == pid).then_some(child)
    });
    cpu_ticks(pid) + children.map(cpu_ticks).sum::<u64>()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
