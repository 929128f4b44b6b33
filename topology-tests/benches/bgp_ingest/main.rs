//! BGP ingestion and FIB benchmark (issue 8, "Benchmark"): one purpose-built sender, one eBGP
//! session to each receiver in turn, the same UPDATE stream for all of them.
//!
//! Receivers (real daemons, each alone in a fresh namespace with its own config, sockets and pid
//! files in a temporary directory, passive, AS 65001): weft-bgpd (kernel install on), BIRD 2
//! (kernel protocol exporting everything), FRR (bgpd + zebra) and GoBGP (no FIB).
//!
//! The sender (AS 65000, in a namespace of its own behind one veth) is this bench itself: the
//! whole UPDATE stream is encoded by hand before the session opens (ORIGIN, AS_PATH, NEXT_HOP or
//! MP_REACH_NLRI once per UPDATE, as many prefixes as fit in 4096 octets), then written to the
//! socket in one `write_all` right after our KEEPALIVE, the moment the receiver turns
//! Established. A Cease (administrative shutdown) and a close end the session.
//!
//! Measured per receiver and family, from the receiver's Established (our KEEPALIVE sent):
//! - Loc-RIB: until the receiver's own count reaches N, polled every 20 ms through counters
//!   that cost the daemon O(1): `weftctl bgp peers --json` `prefixes_accepted`, `birdc show
//!   protocols all sender` (`Routes: N imported`), FRR's `pfxRcd` of the peer in `show bgp ipvX
//!   unicast summary json`, `gobgp global rib summary`. (`birdc show route count` walks the
//!   table: at 1M routes it slowed BIRD tenfold, so it is not used.)
//! - kernel FIB: until N routes of its protocol (87, bird, bgp) are in the main table, counted
//!   by a netlink route dump in the receiver's namespace (no `ip` parsing). The FIB follows the
//!   Loc-RIB, so dumps start once the Loc-RIB poll has ended, every 20 ms or twice the dump's own
//!   time, whichever is longer (at most a third of a core taken from the receiver);
//! - peak RSS: VmHWM of its processes (bgpd + zebra for FRR) once everything is in;
//! - withdraw: from our close until the Loc-RIB count and the FIB count are 0.
//!
//! A Loc-RIB time shown as "≤ t" is the FIB's: the FIB had everything before the CLI said so.
//! Every wait has a limit; a receiver that does not get there is reported as "timeout".
//!
//! ```sh
//! cargo bench -p weft-topology-tests --bench bgp_ingest -- --quick            # 10k IPv4, 100k IPv6
//! cargo bench -p weft-topology-tests --bench bgp_ingest                       # 100k IPv4, 1M IPv6
//! cargo bench -p weft-topology-tests --bench bgp_ingest -- --ipv4 50000 --ipv6 0 \
//!     --receivers weft,bird --runs 3 --limit 300
//! ```
//! `--no-build` skips the `cargo build --release -p weft-bgpd -p weftctl` done first. Needs
//! root, BIRD 2 (`bird2`), FRR (`frr`) and GoBGP (`gobgpd`). Addresses: prefixes are /32s of
//! 198.18.0.0/15 (at most 130,816) and /64s of 2001:db8::/32; the link is 198.19.255.252/30 and
//! 2001:db8:ff00::/64. A 1M IPv6 run holds up to ~0.5 GiB in the receiver and as much in the
//! kernel; receivers run one after the other, each namespace removed before the next.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use fib::FibCounter;
use receiver::Receiver;
use sender::{Session, encode_stream, sender_ceiling};

mod fib;
mod receiver;
mod sender;

const SENDER_ASN: u32 = 65000;
const RECEIVER_ASN: u32 = 65001;
const SENDER_V4: &str = "198.19.255.253";
const RECEIVER_V4: &str = "198.19.255.254";
const SENDER_V6: &str = "2001:db8:ff00::1";
const RECEIVER_V6: &str = "2001:db8:ff00::2";
/// /32s from 198.18.0.0 up, leaving 198.19.255.0/24 (the link) out.
const MAX_IPV4: usize = 130_816;
const HOLD_TIME: u16 = 240;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
const MAX_MESSAGE: usize = 4096;
const RIB_POLL: Duration = Duration::from_millis(20);
const FIB_POLL: Duration = Duration::from_millis(20);
const READY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
    fn afi(self) -> u16 {
        match self {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }
    fn netlink(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
    fn sender(self) -> &'static str {
        match self {
            Family::V4 => SENDER_V4,
            Family::V6 => SENDER_V6,
        }
    }
    fn receiver(self) -> &'static str {
        match self {
            Family::V4 => RECEIVER_V4,
            Family::V6 => RECEIVER_V6,
        }
    }
    fn key(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Weft,
    Bird,
    Frr,
    Gobgp,
}

impl Kind {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "weft" | "weft-bgpd" => Some(Kind::Weft),
            "bird" => Some(Kind::Bird),
            "frr" => Some(Kind::Frr),
            "gobgp" | "gobgpd" => Some(Kind::Gobgp),
            _ => None,
        }
    }
    /// The receiver's kernel route protocol, or `None` when it has no FIB.
    fn route_protocol(self) -> Option<u8> {
        match self {
            Kind::Weft => Some(87),
            Kind::Bird => Some(12),
            Kind::Frr => Some(186),
            Kind::Gobgp => None,
        }
    }
    fn title(self) -> String {
        let version = |argv: &[&str]| {
            let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.split_whitespace()
                .map(|w| w.trim_start_matches('v'))
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
                .map(str::to_owned)
        };
        match self {
            Kind::Weft => "weft-bgpd".into(),
            Kind::Bird => format!("BIRD {}", version(&["bird", "--version"]).unwrap_or_default()),
            Kind::Frr => format!(
                "FRR {} (bgpd+zebra)",
                version(&["/usr/lib/frr/bgpd", "--version"]).unwrap_or_default()
            ),
            Kind::Gobgp => format!("GoBGP {}", version(&["gobgpd", "--version"]).unwrap_or_default()),
        }
    }
}

struct Options {
    ipv4: usize,
    ipv6: usize,
    runs: usize,
    limit: Duration,
    receivers: Vec<Kind>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let number = |name: &str, default: usize| {
        value(name).map_or(default, |v| {
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not a number: {v}"))
        })
    };
    let ipv4 = number("--ipv4", if quick { 10_000 } else { 100_000 });
    assert!(ipv4 <= MAX_IPV4, "--ipv4: at most {MAX_IPV4} /32s fit in 198.18.0.0/15");
    let receivers = value("--receivers").map_or_else(
        || vec![Kind::Bird, Kind::Weft, Kind::Frr, Kind::Gobgp],
        |list| {
            list.split(',')
                .map(|n| Kind::from_name(n).unwrap_or_else(|| panic!("--receivers: unknown {n}")))
                .collect()
        },
    );
    Options {
        ipv4,
        ipv6: number("--ipv6", if quick { 100_000 } else { 1_000_000 }),
        runs: number("--runs", 1).max(1),
        limit: Duration::from_secs(number("--limit", if quick { 60 } else { 300 }) as u64),
        receivers,
    }
}

fn main() {
    if let Err(why) = weft_topology_tests::netns_support() {
        eprintln!("bgp_ingest bench: skipped: {why}");
        return;
    }
    let options = options();
    if !std::env::args().any(|a| a == "--no-build") {
        build_binaries();
    }
    let mut families = Vec::new();
    if options.ipv4 > 0 {
        families.push((Family::V4, options.ipv4));
    }
    if options.ipv6 > 0 {
        families.push((Family::V6, options.ipv6));
    }
    let mut report = String::new();
    for (family, n) in families {
        let started = Instant::now();
        let stream = encode_stream(family, n);
        let encode = started.elapsed();
        let ceiling = sender_ceiling(&stream);
        eprintln!(
            "bgp_ingest: {} {} prefixes: {} UPDATE octets, encoded in {:.3} s, written to a discarding reader in {:.3} s",
            count_label(n),
            family.name(),
            stream.len(),
            encode.as_secs_f64(),
            ceiling.as_secs_f64()
        );
        let mut results = Vec::new();
        for &kind in &options.receivers {
            let mut runs = Vec::new();
            for run in 0..options.runs {
                eprintln!("bgp_ingest: {:?} {} run {}", kind, family.name(), run + 1);
                let measured = measure(kind, family, n, &stream, options.limit).unwrap_or_else(|e| {
                    eprintln!("bgp_ingest: {kind:?} {}: failed: {e:#}", family.name());
                    Measured::failed()
                });
                eprintln!("bgp_ingest: {kind:?}: {measured:?}");
                runs.push(measured);
            }
            results.push((kind, Measured::median(&runs)));
        }
        report.push_str(&table(family, n, &results, ceiling, options.runs));
    }
    println!("\n{report}");
    println!(
        "Sender: the bench's own blaster (hand-encoded UPDATEs, pre-built, one write_all; \"sender alone\" is \
         the same stream into a reader that discards it). Receivers passive, one eBGP session, times from \
         Established. Loc-RIB polled every {} ms through each daemon's own CLI counters; FIB counted by netlink \
         route dumps in the receiver's namespace once the Loc-RIB is complete. \"≤ t\": the FIB had them \
         all at t, before the CLI showed it (the FIB follows the Loc-RIB both ways). \"timeout\": not \
         reached within the limit.",
        RIB_POLL.as_millis()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "Machine: {} cores, load average at the end {}.",
            std::thread::available_parallelism().map_or(0, usize::from),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
}

fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "weft-bgpd", "-p", "weftctl", "--bins"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release failed");
}

fn count_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    Seconds(f64),
    /// Seen through the FIB before the daemon's CLI showed it: a route enters the FIB only
    /// after the Loc-RIB and leaves it only after, so the FIB time bounds the Loc-RIB's.
    AtMost(f64),
    MiB(f64),
    Timeout,
    NoFib,
    Failed,
}

#[derive(Clone, Debug)]
struct Measured {
    rib: Cell,
    fib: Cell,
    rss: Cell,
    withdraw_rib: Cell,
    withdraw_fib: Cell,
}

impl Measured {
    fn failed() -> Self {
        Self {
            rib: Cell::Failed,
            fib: Cell::Failed,
            rss: Cell::Failed,
            withdraw_rib: Cell::Failed,
            withdraw_fib: Cell::Failed,
        }
    }

    fn median(runs: &[Measured]) -> Measured {
        let pick = |get: fn(&Measured) -> Cell| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|m| match get(m) {
                    Cell::Seconds(v) | Cell::AtMost(v) | Cell::MiB(v) => Some(v),
                    _ => None,
                })
                .collect();
            if values.len() * 2 <= runs.len() && values.len() < runs.len() {
                // Most runs did not get there: say why, as the first run did.
                return get(&runs[0]);
            }
            values.sort_by(f64::total_cmp);
            let v = values[values.len() / 2];
            match get(&runs[0]) {
                Cell::MiB(_) => Cell::MiB(v),
                Cell::AtMost(_) => Cell::AtMost(v),
                _ => Cell::Seconds(v),
            }
        };
        Measured {
            rib: pick(|m| m.rib),
            fib: pick(|m| m.fib),
            rss: pick(|m| m.rss),
            withdraw_rib: pick(|m| m.withdraw_rib),
            withdraw_fib: pick(|m| m.withdraw_fib),
        }
    }
}

/// Polls `count` until `done` holds or `limit` passes; the time since `since` when it held.
fn poll_until<T: Copy + Default>(
    limit: Duration,
    poll: Duration,
    since: Instant,
    mut count: impl FnMut() -> Result<T>,
    done: impl Fn(T) -> bool,
) -> (Cell, T) {
    let max_checks = limit.as_millis() / poll.as_millis().max(1) + 2;
    let mut last = T::default();
    let mut complained = false;
    for _ in 0..max_checks {
        if since.elapsed() > limit {
            break;
        }
        let started = Instant::now();
        match count() {
            Ok(n) => {
                last = n;
                if done(n) {
                    return (Cell::Seconds(since.elapsed().as_secs_f64()), n);
                }
            }
            // A daemon too busy to answer its CLI (or answering half a line) is "not yet":
            // reported once, then the limit decides.
            Err(e) => {
                if !complained {
                    eprintln!("bgp_ingest: count failed (retrying until the limit): {e:#}");
                    complained = true;
                }
            }
        }
        // A count that costs much (a dump of a million routes) is taken less often, so that
        // the poller takes at most a third of a core from the receiver.
        std::thread::sleep(poll.max(started.elapsed() * 2));
    }
    (Cell::Timeout, last)
}

/// Polls the Loc-RIB count and, once that poll has ended, the FIB count, until `done` holds for
/// each; times since `since`.
fn poll_both(
    receiver: &Receiver,
    fib: Option<(&mut FibCounter, u8)>,
    family: Family,
    limit: Duration,
    since: Instant,
    done: impl Fn(u64) -> bool + Sync,
) -> ((Cell, u64), (Cell, u64)) {
    let rib_ended = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let fib_thread = scope.spawn(|| match fib {
            Some((counter, protocol)) => poll_until(
                limit,
                FIB_POLL,
                since,
                || match rib_ended.load(Ordering::Acquire) {
                    true => counter.count(family, protocol).map(Some),
                    false => Ok(None),
                },
                |c| c.is_some_and(&done),
            ),
            None => (Cell::NoFib, None),
        });
        let rib = poll_until(limit, RIB_POLL, since, || receiver.rib_count(), &done);
        rib_ended.store(true, Ordering::Release);
        let (fib, last) = fib_thread.join().unwrap();
        (rib, (fib, last.unwrap_or(0)))
    })
}

fn measure(kind: Kind, family: Family, n: usize, stream: &[u8], limit: Duration) -> Result<Measured> {
    let receiver = Receiver::start(kind, family)?;
    let protocol = kind.route_protocol();
    let mut fib = match protocol {
        Some(_) => Some(FibCounter::new(&receiver.netns)?),
        None => None,
    };
    let target = n as u64;
    let stream = Arc::new(stream.to_vec());
    // A daemon that answers its CLI may still refuse the first OPEN (FRR answers a FSM error
    // while its peer is not yet Active): a few attempts, a second apart.
    let mut attempts = 0;
    let mut session = loop {
        attempts += 1;
        match Session::start(&receiver.sender, family, stream.clone()) {
            Ok(session) => break session,
            Err(e) if attempts < 5 => {
                eprintln!("bgp_ingest: {kind:?}: session attempt {attempts}: {e:#}; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    let established = session.established;
    // Loc-RIB and FIB polled side by side. The FIB follows the Loc-RIB, so the costly FIB dumps
    // start only once the Loc-RIB count is complete (or its poll has ended): before, the FIB
    // cannot be complete either, and dumps would only take CPU from the receiver.
    let ((rib, rib_last), (fib_cell, fib_last)) =
        poll_both(&receiver, fib.as_mut().zip(protocol), family, limit, established, |c| {
            c >= target
        });
    eprintln!(
        "bgp_ingest: {kind:?}: Loc-RIB {rib_last}/{n} ({rib:?}), FIB {fib_last}/{n} ({fib_cell:?}), stream written: {}, running: {}",
        session.written.load(Ordering::Acquire),
        receiver.all_running()
    );
    let rss = Cell::MiB(receiver.peak_rss_kib() as f64 / 1024.0);
    let closed = session.close();
    let ((withdraw_rib, _), (withdraw_fib, _)) =
        poll_both(&receiver, fib.as_mut().zip(protocol), family, limit, closed, |c| c == 0);
    drop(session);
    drop(fib);
    drop(receiver);
    let bound = |rib: Cell, fib: Cell| match (rib, fib) {
        (Cell::Seconds(r), Cell::Seconds(f)) if f < r => Cell::AtMost(f),
        (Cell::Timeout, Cell::Seconds(f)) => Cell::AtMost(f),
        _ => rib,
    };
    let (rib, withdraw_rib) = (bound(rib, fib_cell), bound(withdraw_rib, withdraw_fib));
    Ok(Measured {
        rib,
        fib: fib_cell,
        rss,
        withdraw_rib,
        withdraw_fib,
    })
}

// ---------------------------------------------------------------------------------------------
// The table.

/// One line of the table: which cell of a [`Measured`].
type Metric = fn(&Measured) -> Cell;

fn table(family: Family, n: usize, results: &[(Kind, Measured)], ceiling: Duration, runs: usize) -> String {
    let label = format!("{} {}", count_label(n), family.name());
    let bird = results.iter().find(|(k, _)| *k == Kind::Bird).map(|(_, m)| m.clone());
    let mut out = String::new();
    write!(out, "| {label} (median of {runs}) |").unwrap();
    for (kind, _) in results {
        write!(out, " {} |", kind.title()).unwrap();
    }
    writeln!(out).unwrap();
    write!(out, "| --- |").unwrap();
    for _ in results {
        write!(out, " ---: |").unwrap();
    }
    writeln!(out).unwrap();
    let rows: [(&str, Metric); 5] = [
        ("→ Loc-RIB", |m| m.rib),
        ("→ kernel FIB", |m| m.fib),
        ("peak RSS", |m| m.rss),
        ("withdraw from Loc-RIB", |m| m.withdraw_rib),
        ("withdraw from FIB", |m| m.withdraw_fib),
    ];
    for (name, get) in rows {
        write!(out, "| {label} {name} |").unwrap();
        for (_, measured) in results {
            let cell = get(measured);
            let reference = bird.as_ref().map(get);
            write!(out, " {} |", render(cell, reference)).unwrap();
        }
        writeln!(out).unwrap();
    }
    writeln!(
        out,
        "\nSender alone (same stream into a discarding reader over loopback): {:.3} s, {:.1} M prefixes/s.\n",
        ceiling.as_secs_f64(),
        n as f64 / ceiling.as_secs_f64() / 1e6
    )
    .unwrap();
    out
}

fn render(cell: Cell, bird: Option<Cell>) -> String {
    let ratio = |v: f64| match bird {
        Some(Cell::Seconds(b) | Cell::AtMost(b) | Cell::MiB(b)) if b > 0.0 => format!(" ({:.2}×)", v / b),
        _ => String::new(),
    };
    match cell {
        Cell::Seconds(v) => format!("{v:.3} s{}", ratio(v)),
        Cell::AtMost(v) => format!("≤ {v:.3} s{}", ratio(v)),
        Cell::MiB(v) => format!("{v:.1} MiB{}", ratio(v)),
        Cell::Timeout => "timeout".into(),
        Cell::NoFib => "—".into(),
        Cell::Failed => "failed".into(),
    }
}
