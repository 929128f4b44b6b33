//! The network-namespace test kit, tested in real namespaces (root only; see
//! `skip_unless_netns!`). Addresses: 198.18.0.0/15 and 2001:db8::/32 only.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use weft_topology_tests::sweep::pid_alive;
use weft_topology_tests::{
    Error, Family, Lab, Netns, NextHop, Route, netns_exists, skip_unless_netns, sweep, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(10);

/// A child of this test process, killed and reaped when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root_links() -> String {
    String::from_utf8(Command::new("ip").args(["-o", "link", "show"]).output().unwrap().stdout).unwrap()
}

#[test]
fn two_namespaces_joined_by_a_veth_ping_each_other_over_ipv4_and_ipv6() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let a = Netns::new("left")?;
    let b = Netns::new("right")?;
    let pair = a.veth("kit-left", &b, "kit-right")?;
    assert_eq!(pair.b.netns, b.name());
    assert!(
        !root_links().contains("kit-left"),
        "a veth end appeared in the root namespace"
    );

    a.add_address("kit-left", "198.19.0.1/30")?;
    b.add_address("kit-right", "198.19.0.2/30")?;
    a.add_address("kit-left", "2001:db8:0:1::1/64")?;
    b.add_address("kit-right", "2001:db8:0:1::2/64")?;

    a.ping("198.19.0.2", DEADLINE)?;
    b.ping("198.19.0.1", DEADLINE)?;
    a.ping("2001:db8:0:1::2", DEADLINE)?;
    b.ping("2001:db8:0:1::1", DEADLINE)?;
    Ok(())
}

#[test]
fn a_route_through_a_middle_namespace_forwards_both_families() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let mut lab = Lab::new();
    for label in ["a", "r", "b"] {
        lab.add(label)?;
    }
    lab.veth("a", "eth0", "r", "eth0")?;
    lab.veth("r", "eth1", "b", "eth0")?;
    let (a, r, b) = (lab.netns("a")?, lab.netns("r")?, lab.netns("b")?);
    r.enable_forwarding()?;
    assert_eq!(r.sysctl("net.ipv4.ip_forward")?, "1");

    a.add_address("eth0", "198.19.1.1/24")?;
    r.add_address("eth0", "198.19.1.2/24")?;
    r.add_address("eth1", "198.19.2.2/24")?;
    b.add_address("eth0", "198.19.2.1/24")?;
    a.add_address("eth0", "2001:db8:1::1/64")?;
    r.add_address("eth0", "2001:db8:1::2/64")?;
    r.add_address("eth1", "2001:db8:2::2/64")?;
    b.add_address("eth0", "2001:db8:2::1/64")?;

    // a: default routes; b: a specific route via a gateway, and IPv6 via r's link-local address.
    a.add_route(&Route::default_v4().via("198.19.1.2"))?;
    a.add_route(&Route::default_v6().via("2001:db8:1::2"))?;
    b.add_route(&Route::to("198.19.1.0/24").via("198.19.2.2").dev("eth0"))?;
    let r_link_local = r
        .addresses("eth1")?
        .into_iter()
        .find(|net| net.addr().to_string().starts_with("fe80"))
        .expect("r's eth1 has a link-local address");
    b.add_route(
        &Route::to("2001:db8:1::/64")
            .via(&r_link_local.addr().to_string())
            .dev("eth0"),
    )?;

    a.ping("198.19.2.1", DEADLINE)?;
    a.ping("2001:db8:2::1", DEADLINE)?;
    b.ping("198.19.1.1", DEADLINE)?;
    b.ping("2001:db8:1::1", DEADLINE)?;
    Ok(())
}

#[test]
fn an_ecmp_route_is_installed_with_every_next_hop() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let a = Netns::new("ecmp-a")?;
    let r = Netns::new("ecmp-r")?;
    a.veth("eth0", &r, "eth0")?;
    a.veth("eth1", &r, "eth1")?;
    a.add_address("eth0", "198.19.3.1/24")?;
    a.add_address("eth1", "198.19.4.1/24")?;
    a.add_route(
        &Route::to("198.18.9.0/24")
            .nexthop(NextHop::via("198.19.3.2").dev("eth0"))
            .nexthop(NextHop::via("198.19.4.2").dev("eth1").weight(2)),
    )?;
    let routes = a.routes(Family::V4)?;
    let ecmp = routes
        .iter()
        .find(|r| r.starts_with("198.18.9.0/24"))
        .expect("the ECMP route");
    assert!(ecmp.contains("nexthop via 198.19.3.2 dev eth0"), "{ecmp}");
    assert!(ecmp.contains("nexthop via 198.19.4.2 dev eth1 weight 2"), "{ecmp}");
    Ok(())
}

#[test]
fn addresses_outside_the_plan_are_refused_by_name() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let a = Netns::new("refuse")?;
    let b = Netns::new("refuse-peer")?;
    a.veth("eth0", &b, "eth0")?;
    for bad in [
        "203.0.113.1/24",
        "2001:db9::1/64",
        "203.0.113.9",
        "198.18.0.1/14",
        "fe80::1/64",
    ] {
        let err = a.add_address("eth0", bad).unwrap_err();
        assert!(matches!(err, Error::OutsidePlan { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "the error names {bad}: {err}");
    }
    let err = a.add_route(&Route::default_v4().via("203.0.113.254")).unwrap_err();
    assert!(err.to_string().contains("203.0.113.254"), "{err}");
    let err = a.ip(&["addr", "add", "203.0.113.1/24", "dev", "eth0"]).unwrap_err();
    assert!(err.to_string().contains("203.0.113.1/24"), "{err}");
    assert!(matches!(
        a.ping_once("203.0.113.1", Duration::from_millis(10)),
        Err(Error::OutsidePlan { .. })
    ));

    let addresses = a.addresses("eth0")?;
    assert!(
        addresses.iter().all(|net| net.addr().to_string().starts_with("fe80")),
        "{addresses:?}"
    );
    Ok(())
}

#[test]
fn a_namespace_is_gone_after_drop() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let netns = Netns::new("dropped")?;
    let name = netns.name().to_owned();
    assert!(name.starts_with(&format!("wk{}-", std::process::id())), "{name}");
    assert!(netns_exists(&name));
    drop(netns);
    assert!(!netns_exists(&name));
    let listed = Command::new("ip").args(["netns", "list"]).output()?;
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&name));
    Ok(())
}

#[test]
fn a_namespace_and_its_processes_are_gone_after_a_panic() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let mut name = String::new();
    let mut pid = 0;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let netns = Netns::new("panics").unwrap();
        name = netns.name().to_owned();
        let sleeper = netns.spawn(&["sleep", "600"]).unwrap();
        pid = sleeper.pid();
        panic!("a test failing half-way");
    }));
    assert!(outcome.is_err());
    assert!(!name.is_empty() && !netns_exists(&name), "{name} survived the panic");
    assert!(pid != 0 && !pid_alive(pid), "process {pid} survived the panic");
    Ok(())
}

#[test]
fn a_spawned_process_is_dead_after_drop() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let netns = Netns::new("proc")?;
    let sleeper = netns.spawn(&["sleep", "600"])?;
    let pid = sleeper.pid();
    assert!(sleeper.is_running());
    drop(sleeper);
    assert!(!pid_alive(pid), "process {pid} survived its handle");
    Ok(())
}

#[test]
fn dropping_a_namespace_ends_its_processes_even_forked_ones() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let netns = Netns::new("forks")?;
    let kept = netns.spawn(&["sleep", "600"])?;
    let forked = netns.run(&["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"])?;
    let forked: u32 = forked.stdout.trim().parse()?;
    assert!(pid_alive(forked));
    let kept_pid = kept.pid();
    drop(netns); // the handle outlives the namespace
    assert!(!pid_alive(kept_pid), "the spawned process survived its namespace");
    assert!(!kept.is_running());
    wait_until("the forked sleep to die", DEADLINE, Duration::from_millis(10), || {
        Ok::<_, Error>(!pid_alive(forked))
    })?;
    Ok(())
}

#[test]
fn process_output_is_captured_and_awaited() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let netns = Netns::new("output")?;
    let daemon = netns.spawn(&["sh", "-c", "echo starting >&2; echo ready; exec sleep 600"])?;
    daemon.wait_for_output("ready", DEADLINE)?;
    assert!(daemon.stdout()?.contains("ready"));
    assert!(daemon.stderr()?.contains("starting"));

    let quitter = netns.spawn(&["sh", "-c", "echo giving up >&2; exit 3"])?;
    let err = quitter.wait_for_output("never printed", DEADLINE).unwrap_err();
    let Error::Check { source, .. } = &err else {
        panic!("{err}")
    };
    assert!(source.to_string().contains("giving up"), "{source}");

    let out = netns.run(&["sh", "-c", "echo hello"])?;
    assert_eq!(out.stdout.trim(), "hello");
    let err = netns.run(&["sh", "-c", "echo broken >&2; exit 4"]).unwrap_err();
    assert!(
        matches!(&err, Error::CommandFailed { stderr, .. } if stderr == "broken"),
        "{err}"
    );
    let err = netns
        .command("sleep")
        .arg("600")
        .timeout(Duration::from_millis(100))
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::CommandTimeout { .. }), "{err}");
    Ok(())
}

#[test]
fn sockets_made_within_a_namespace_talk_over_the_veth() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let a = Netns::new("sock-a")?;
    let b = Netns::new("sock-b")?;
    a.veth("eth0", &b, "eth0")?;
    a.add_address("eth0", "198.19.5.1/24")?;
    b.add_address("eth0", "198.19.5.2/24")?;
    let listener = b.within(|| TcpListener::bind("198.19.5.2:0"))??;
    let address: SocketAddr = listener.local_addr()?;
    let mut client = a.within(|| TcpStream::connect_timeout(&address, DEADLINE))??;
    let (mut server, peer) = listener.accept()?;
    assert_eq!(peer.ip().to_string(), "198.19.5.1");
    client.write_all(b"hello")?;
    let mut buffer = [0u8; 5];
    server.read_exact(&mut buffer)?;
    assert_eq!(&buffer, b"hello");
    Ok(())
}

#[test]
fn sysctls_and_mtu_change_inside_the_namespace_only() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")?;
    let a = Netns::new("sysctl")?;
    let b = Netns::new("sysctl-peer")?;
    let pair = a.veth("eth0", &b, "eth0")?;
    let flipped = if root_before.trim() == "1" { "0" } else { "1" };
    a.set_sysctl("net.ipv6.conf.all.forwarding", flipped)?;
    assert_eq!(a.sysctl("net.ipv6.conf.all.forwarding")?, flipped);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")?,
        root_before
    );
    assert!(matches!(
        a.set_sysctl("kernel.pid_max", "1"),
        Err(Error::SysctlKey { .. })
    ));

    pair.set_mtu(1400)?;
    assert_eq!((a.mtu("eth0")?, b.mtu("eth0")?), (1400, 1400));
    a.set_mtu("eth0", 9000)?;
    assert_eq!(a.mtu("eth0")?, 9000);
    assert!(a.link_exists("eth0")? && !a.link_exists("eth9")?);
    assert_eq!(a.links()?, ["lo", "eth0"]);
    Ok(())
}

#[test]
fn a_lab_refuses_a_label_twice_and_removes_everything_on_drop() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let mut lab = Lab::new();
    lab.add("one")?;
    lab.add("two")?;
    assert!(matches!(lab.add("one"), Err(Error::DuplicateNetns { .. })));
    assert!(matches!(lab.netns("three"), Err(Error::UnknownNetns { .. })));
    let names: Vec<String> = lab.iter().map(|n| n.name().to_owned()).collect();
    let sleeper = lab.netns("two")?.spawn(&["sleep", "600"])?;
    drop(lab); // the handle outlives the lab: the lab must end the process itself
    assert!(names.iter().all(|n| !netns_exists(n)), "{names:?}");
    assert!(!pid_alive(sleeper.pid()) && !sleeper.is_running());
    Ok(())
}

#[test]
fn the_sweep_removes_leftovers_of_dead_pids_but_not_of_live_ones() -> Result<()> {
    skip_unless_netns!(Ok(()));
    let mut finished = Command::new("true").spawn()?;
    let dead = finished.id();
    finished.wait()?;
    let live = ChildGuard(Command::new("sleep").arg("600").stdout(Stdio::null()).spawn()?);
    assert!(!pid_alive(dead) && pid_alive(live.0.id()));

    let dead_name = format!("wk{dead}-0-leftover");
    let live_name = format!("wk{}-0-alive", live.0.id());
    let other_name = format!("wkx{dead}-0-other");
    let mut guards = Vec::new();
    for name in [&dead_name, &live_name, &other_name] {
        assert!(Command::new("ip").args(["netns", "add", name]).status()?.success());
    }
    let other = OtherNetnsGuard(other_name.clone());
    for name in [&dead_name, &live_name] {
        guards.push(Netns::adopt(name)?); // removes them even if this test fails
    }
    // A process the dead run left behind inside its namespace.
    let orphan = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &dead_name, "sleep", "600"])
            .stdout(Stdio::null())
            .spawn()?,
    );
    let orphan_pid = orphan.0.id();
    wait_until(
        "the orphan to enter its namespace",
        DEADLINE,
        Duration::from_millis(5),
        || {
            let target = std::fs::metadata(format!("/run/netns/{dead_name}"))?;
            let current = std::fs::metadata(format!("/proc/{orphan_pid}/ns/net"))?;
            Ok::<_, std::io::Error>(current.ino() == target.ino())
        },
    )?;

    let dead_file = std::env::temp_dir().join(format!("weft-kit-{dead_name}-x.stdout"));
    let live_file = std::env::temp_dir().join(format!("weft-kit-{live_name}-x.stdout"));
    std::fs::write(&dead_file, "left behind")?;
    std::fs::write(&live_file, "in use")?;
    let _files = FilesGuard(vec![dead_file.clone(), live_file.clone()]);

    let report = sweep();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        !netns_exists(&dead_name),
        "the leftover of dead pid {dead} is still there"
    );
    assert!(
        netns_exists(&live_name),
        "the namespace of live pid {} was swept",
        live.0.id()
    );
    assert!(
        netns_exists(&other_name),
        "a namespace without the kit's prefix was swept"
    );
    assert!(!pid_alive(orphan_pid), "the orphan survived the sweep"); // a zombie until reaped
    assert!(!dead_file.exists() && live_file.exists());
    drop((orphan, other));
    Ok(())
}

/// Removes files a test made itself.
struct FilesGuard(Vec<std::path::PathBuf>);

impl Drop for FilesGuard {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes a namespace outside the kit's prefix that a test made itself.
struct OtherNetnsGuard(String);

impl Drop for OtherNetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn wait_until_names_what_it_waited_for_and_for_how_long() {
    let err = wait_until(
        "the kettle to boil",
        Duration::from_millis(200),
        Duration::from_millis(20),
        || Ok::<_, Error>(false),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("the kettle to boil"), "{text}");
    assert!(text.contains("200ms"), "{text}");
    let Error::Timeout { waited, attempts, .. } = err else {
        panic!("{text}")
    };
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert!((2..=12).contains(&attempts), "{attempts}");
}
