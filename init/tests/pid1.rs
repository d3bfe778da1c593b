//! kindling-init as PID 1 of a fresh PID + mount namespace, observed from outside:
//! reaping, restart backoff, readiness ordering, ordered shutdown, control socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use kindling_init_protocol::control::ServiceState;
use kindling_init_protocol::phase::BootPhase;
use nix::sys::signal::Signal;

/// A child that notifies readiness the s6 way.
const NOTIFY: &str = "echo ready >&$KINDLING_NOTIFY_FD";

#[test]
fn reaps_an_orphaned_grandchild() {
    if !can_run_namespaces("reaps_an_orphaned_grandchild") {
        return;
    }
    // The subshell starts the marker process in the background and exits at
    // once, so the marker is re-parented to init; it exits 0.6 s later.
    let services = r#"{"services":[{"name":"orphaner","argv":["/bin/sh","-c",
        "(sh -c 'sleep 0.6' ki-orphan-marker &); echo spawned > @DIR@/spawned; exec sleep 1000"]}]}"#;
    let init = NamespacedInit::start("reap", services, "");
    let marker = wait_for(Duration::from_secs(5), || {
        pids_with_cmdline("ki-orphan-marker").first().copied()
    })
    .expect("the orphan runs");
    let (ppid, _) = proc_stat(marker).expect("orphan visible");
    assert_eq!(
        ppid, init.init_pid,
        "the orphan was re-parented to kindling-init"
    );
    // After it exits, init must have collected it: not even a zombie remains.
    let gone = wait_for(Duration::from_secs(5), || {
        proc_stat(marker).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "orphan {marker} still in /proc: {:?}",
        proc_stat(marker)
    );
    assert!(zombie_children(init.init_pid).is_empty());
}

#[test]
fn restarts_a_crashing_child_with_growing_backoff() {
    if !can_run_namespaces("restarts_a_crashing_child_with_growing_backoff") {
        return;
    }
    let services = r#"{"services":[
        {"name":"crasher","argv":["/bin/sh","-c","date +%s.%N >> @DIR@/spawns; exit 3"],"required":false},
        {"name":"steady","argv":["/bin/sleep","1000"]}]}"#;
    let init = NamespacedInit::start("backoff", services, "");
    let spawns = wait_for(Duration::from_secs(10), || {
        let t = timestamps(&init.path("spawns"));
        (t.len() >= 5).then_some(t)
    })
    .expect("five spawns within 10 s");
    let gaps: Vec<f64> = spawns.windows(2).map(|w| w[1] - w[0]).collect();
    // 100, 200, 400, 800 ms: each gap at least the backoff and about double the last.
    for (gap, expected) in gaps.iter().zip([0.1, 0.2, 0.4, 0.8]) {
        assert!(*gap >= expected * 0.95, "gaps {gaps:?}");
        // Load can only delay a restart; a second of slack keeps CI from flaking.
        assert!(*gap < expected + 1.0, "gaps {gaps:?}");
    }
    // The fourth wait is 8x the first; with any slack it is still well over 2x.
    assert!(gaps[3] > 2.0 * gaps[0], "backoff does not grow: {gaps:?}");
    // The crasher is alive for a moment after each restart, and its last
    // exit reason is only listed between a crash and the next restart.
    let mut last = None;
    let crasher = wait_for(Duration::from_secs(5), || {
        let list = init.client().list().ok()?;
        let crasher = list.services.into_iter().find(|s| s.name == "crasher")?;
        let crashed = crasher
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("exited with status 3"));
        last = Some(crasher.clone());
        crashed.then_some(crasher)
    })
    .unwrap_or_else(|| panic!("no listing with the crash reason; last: {last:?}"));
    assert!(crasher.restarts >= 4, "{crasher:?}");
    let list = init.client().list().unwrap();
    // The rest keeps running; the optional crasher does not degrade the appliance.
    let steady = list.services.iter().find(|s| s.name == "steady").unwrap();
    assert_eq!(steady.state, ServiceState::Running);
    assert_eq!(steady.restarts, 0);
}

#[test]
fn dependents_start_only_after_readiness() {
    if !can_run_namespaces("dependents_start_only_after_readiness") {
        return;
    }
    // The namespace has its own loopback, so any port is free.
    let port = 7070;
    let services = format!(
        r#"{{"services":[
        {{"name":"slow","argv":["/bin/sh","-c","sleep 0.5; date +%s.%N > @DIR@/slow_ready; {NOTIFY}; exec sleep 1000"],
          "readiness":{{"kind":"notify"}},"phase":"network"}},
        {{"name":"after-slow","argv":["/bin/sh","-c","date +%s.%N > @DIR@/after_slow; exec sleep 1000"],"depends_on":["slow"]}},
        {{"name":"listener","argv":["/bin/sh","-c","sleep 0.4; date +%s.%N > @DIR@/listening; exec busybox nc -ll -p {port} -e /bin/true"],
          "readiness":{{"kind":"tcp","addr":"127.0.0.1:{port}"}}}},
        {{"name":"after-listener","argv":["/bin/sh","-c","date +%s.%N > @DIR@/after_listener; exec sleep 1000"],"depends_on":["listener"]}},
        {{"name":"migrate","argv":["/bin/sh","-c","sleep 0.3; date +%s.%N > @DIR@/migrated"],"oneshot":true,
          "readiness":{{"kind":"exited"}},"restart":"on_failure"}},
        {{"name":"after-migrate","argv":["/bin/sh","-c","date +%s.%N > @DIR@/after_migrate; exec sleep 1000"],"depends_on":["migrate"]}},
        {{"name":"web","argv":["/bin/sh","-c","sleep 0.3; date +%s.%N > @DIR@/web_up; exec busybox httpd -f -p 127.0.0.1:7071 -h @DIR@"],
          "readiness":{{"kind":"http","url":"http://127.0.0.1:7071/web_up","ok":[200]}}}},
        {{"name":"after-web","argv":["/bin/sh","-c","date +%s.%N > @DIR@/after_web; exec sleep 1000"],"depends_on":["web"]}}
        ]}}"#
    );
    let init = NamespacedInit::start("ready", &services, "");
    assert!(
        init.wait_console("kindling: ready (8 services", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let migrated = wait_timestamps(&init.path("migrated"), 1)[0];
    let after_migrate = wait_timestamps(&init.path("after_migrate"), 1)[0];
    assert!(
        after_migrate >= migrated,
        "a one-shot's dependent started before it exited"
    );
    let web_up = wait_timestamps(&init.path("web_up"), 1)[0];
    let after_web = wait_timestamps(&init.path("after_web"), 1)[0];
    assert!(
        after_web >= web_up,
        "after-web started before the HTTP probe could succeed"
    );
    let ready = wait_timestamps(&init.path("slow_ready"), 1)[0];
    let after = wait_timestamps(&init.path("after_slow"), 1)[0];
    assert!(
        after >= ready,
        "after-slow started at {after}, before slow was ready at {ready}"
    );
    let listening = wait_timestamps(&init.path("listening"), 1)[0];
    let after_listener = wait_timestamps(&init.path("after_listener"), 1)[0];
    assert!(
        after_listener >= listening,
        "{after_listener} < {listening}"
    );
    // Network-phase services are ready before the services phase starts anything.
    let console = init.console();
    let network_done = console
        .find(&format!("kindling: {}: done", BootPhase::Network))
        .unwrap();
    let listener_started = console.find("kindling: listener: started").unwrap();
    assert!(network_done < listener_started, "{console}");
}

/// A service that is not required and that no required one needs starts
/// once the boot is decided, so it does not slow the ones the boot waits
/// for; one a required service depends on starts at once.
#[test]
fn optional_services_start_after_the_boot_is_decided() {
    if !can_run_namespaces("optional_services_start_after_the_boot_is_decided") {
        return;
    }
    let services = format!(
        r#"{{"services":[
        {{"name":"helper","argv":["/bin/sh","-c","{NOTIFY}; exec sleep 1000"],
          "readiness":{{"kind":"notify"}},"required":false}},
        {{"name":"main","argv":["/bin/sh","-c","sleep 0.3; {NOTIFY}; exec sleep 1000"],
          "readiness":{{"kind":"notify"}},"depends_on":["helper"]}},
        {{"name":"extra","argv":["/bin/sleep","1000"],"required":false}}
        ]}}"#
    );
    let init = NamespacedInit::start("deferred", &services, "");
    assert!(
        init.wait_console("kindling: extra: started", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let console = init.console();
    let at = |needle: &str| {
        console
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{console}"))
    };
    let ready = at("kindling: ready (3 services");
    assert!(at("kindling: helper: started") < ready, "{console}");
    assert!(at("kindling: extra: started") > ready, "{console}");
}

#[test]
fn sigterm_stops_in_reverse_dependency_order_within_grace() {
    if !can_run_namespaces("sigterm_stops_in_reverse_dependency_order_within_grace") {
        return;
    }
    let svc = |name: &str, deps: &str| {
        format!(
            r#"{{"name":"{name}","argv":["/bin/sh","-c","trap 'echo {name} >> @DIR@/order; exit 0' TERM; {NOTIFY}; while :; do sleep 0.05; done"],
                "readiness":{{"kind":"notify"}},"depends_on":[{deps}],"stop_grace_ms":3000}}"#
        )
    };
    let services = format!(
        r#"{{"services":[{},{},{},
        {{"name":"stubborn","argv":["/bin/sh","-c","trap '' TERM; {NOTIFY}; while :; do sleep 0.05; done"],
          "readiness":{{"kind":"notify"}},"stop_grace_ms":400}}]}}"#,
        svc("base", ""),
        svc("mid", r#""base""#),
        svc("top", r#""mid""#),
    );
    let mut init = NamespacedInit::start("shutdown", &services, r#""shutdown": "reboot""#);
    assert!(
        init.wait_console("kindling: ready (4 services", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let sent = Instant::now();
    let ended_by = init.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
    let took = sent.elapsed();
    // reboot(2) inside a PID namespace ends it as if its init died of SIGHUP.
    assert_eq!(ended_by, Some(libc::SIGHUP), "{}", init.console());
    assert_eq!(
        lines(&init.path("order")),
        ["top", "mid", "base"],
        "{}",
        init.console()
    );
    // The stubborn one got SIGKILL after its 400 ms grace.
    // Under 3 s: nobody waited out the 3 s grace of the services that obey SIGTERM.
    assert!(took < Duration::from_millis(3000), "shutdown took {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "stubborn was not given its grace: {took:?}"
    );
    let console = init.console();
    assert!(
        console.contains("stubborn: did not stop within 400 ms of SIGTERM; sending SIGKILL"),
        "{console}"
    );
}

#[test]
fn sigusr2_powers_off() {
    if !can_run_namespaces("sigusr2_powers_off") {
        return;
    }
    let services = r#"{"services":[{"name":"idle","argv":["/bin/sleep","1000"]}]}"#;
    let mut init = NamespacedInit::start("poweroff", services, "");
    assert!(
        init.wait_console("kindling: ready (1 services", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    // Power off in a PID namespace looks like its init died of SIGINT.
    assert_eq!(
        init.signal_and_wait(Signal::SIGUSR2, Duration::from_secs(10)),
        Some(libc::SIGINT)
    );
}

#[test]
fn missing_binary_is_not_installed_and_control_socket_lists_restarts_reloads() {
    if !can_run_namespaces(
        "missing_binary_is_not_installed_and_control_socket_lists_restarts_reloads",
    ) {
        return;
    }
    let services = r#"{"hostname":"ki-test-host","services":[
        {"name":"present","argv":["/bin/sh","-c","echo started >> @DIR@/present_starts; echo present up; exec sleep 1000"]},
        {"name":"missing","argv":["/nonexistent/kindlingd","pxe"]},
        {"name":"needs-missing","argv":["/bin/sleep","1000"],"depends_on":["missing"],"required":false}]}"#;
    let init = NamespacedInit::start("control", services, "");
    assert!(
        init.wait_console(
            "kindling: degraded: missing: not_installed",
            Duration::from_secs(10)
        ),
        "{}",
        init.console()
    );
    let client = init.client();
    let list = client.list().unwrap();
    let get = |list: &kindling_init_protocol::control::ListResponse, name: &str| {
        list.services
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(get(&list, "missing").state, ServiceState::NotInstalled);
    assert!(get(&list, "missing")
        .reason
        .unwrap()
        .contains("/nonexistent/kindlingd"));
    assert_eq!(get(&list, "needs-missing").state, ServiceState::Waiting);
    assert_eq!(get(&list, "present").state, ServiceState::Running);
    assert!(!list.ready);
    assert!(
        list.degraded
            .iter()
            .any(|d| d.starts_with("missing: not_installed")),
        "{:?}",
        list.degraded
    );
    let names: Vec<&str> = list.phases.iter().map(|p| p.name.as_str()).collect();
    let table: Vec<&str> = BootPhase::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, table);
    assert_eq!(list.phases.len(), 6);

    // restart: a new process, counted, nothing else disturbed.
    let old_pid = get(&list, "present").pid.unwrap();
    client.restart("present").unwrap();
    let restarted = wait_for(Duration::from_secs(5), || {
        let s = get(&client.list().ok()?, "present");
        (s.state == ServiceState::Running && s.pid != Some(old_pid)).then_some(s)
    })
    .expect("present restarted");
    assert_eq!(restarted.restarts, 1);
    let starts = wait_for(Duration::from_secs(5), || {
        let n = lines(&init.path("present_starts")).len();
        (n >= 2).then_some(n)
    });
    assert_eq!(starts, Some(2));
    let err = client.restart("nosuch").unwrap_err().to_string();
    assert!(err.contains("no service \"nosuch\""), "{err}");

    // A reload may not widen privileges: `present` with a capability, or a
    // new service as root, is refused and nothing changes (the API, which
    // can write services.json, must not gain root that way).
    for widened in [
        r#"{"services":[
            {"name":"present","argv":["/bin/sh","-c","echo started >> DIR/present_starts; echo present up; exec sleep 1000"],
             "capabilities":["CAP_NET_ADMIN"]}]}"#,
        r#"{"services":[
            {"name":"present","argv":["/bin/sh","-c","echo started >> DIR/present_starts; echo present up; exec sleep 1000"]},
            {"name":"rooted","argv":["/bin/sleep","1000"]}]}"#,
    ] {
        std::fs::write(
            init.path("services.json"),
            widened.replace("DIR", init.dir.to_str().unwrap()),
        )
        .unwrap();
        let err = client.reload().unwrap_err().to_string();
        assert!(err.contains("next boot"), "{err}");
    }
    assert_eq!(get(&client.list().unwrap(), "present").restarts, 1);
    assert_eq!(
        get(&client.list().unwrap(), "missing").state,
        ServiceState::NotInstalled
    );

    // reload: the missing service is dropped, a new one (unprivileged) starts,
    // then the appliance is ready.
    std::fs::write(
        init.path("services.json"),
        r#"{"output_logs":{"file_bytes":8192,"files":2},"services":[
            {"name":"present","argv":["/bin/sh","-c","echo started >> DIR/present_starts; echo present up; exec sleep 1000"]},
            {"name":"added","argv":["/bin/sleep","1000"],"user":65534,"group":65534}]}"#
            .replace("DIR", init.dir.to_str().unwrap()),
    )
    .unwrap();
    client.reload().unwrap();
    let list = wait_for(Duration::from_secs(5), || {
        let l = client.list().ok()?;
        l.ready.then_some(l)
    })
    .unwrap_or_else(|| panic!("ready after reload: {}", init.console()));
    let names: Vec<&str> = list.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["present", "added"]);
    // `present` was unchanged, so it was left alone.
    assert_eq!(get(&list, "present").restarts, 1);
    assert!(init.wait_console("kindling: ready (2 services", Duration::from_secs(5)));
    // Its output reached its own log file too.
    let log = std::fs::read_to_string(init.path("log/present.log")).unwrap();
    assert!(log.contains("present up"), "{log}");
    // Without a data partition the logs are in RAM, said so, and the
    // reloaded table's bound applies.
    let logs = list.logs.expect("list says where the logs are");
    assert_eq!(
        logs.storage,
        kindling_init_protocol::control::LogStorage::Ram
    );
    assert_eq!(logs.dir, init.path("log").display().to_string());
    assert!(
        logs.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("no data partition")),
        "{logs:?}"
    );
    assert_eq!((logs.file_bytes, logs.files), (8192, 2));
}

#[test]
fn malformed_table_is_reported_and_the_fallback_runs() {
    if !can_run_namespaces("malformed_table_is_reported_and_the_fallback_runs") {
        return;
    }
    let services = r#"{"services":[{"name":"api","argv":["/bin/sleep","1000"]}]}"#;
    let init = NamespacedInit::start(
        "fallback",
        services,
        r#""service_tables": ["@DIR@/bad.json", "@DIR@/services.json"], "config_command": ["/bin/sh", "-c", "echo '{\"services\":[{\"name\":\"x\",\"argv\":[\"/bin/true\"],\"restrat\":1}]}' > @DIR@/bad.json; echo config done"]"#,
    );
    // Running on the fallback table is a degraded boot, and says why.
    assert!(
        init.wait_console("kindling: degraded: config:", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let console = init.console();
    assert!(console.contains("config| config done"), "{console}");
    assert!(
        console.contains("bad.json") && console.contains("restrat"),
        "{console}"
    );
    let list = init.client().list().unwrap();
    assert_eq!(
        list.services
            .iter()
            .find(|s| s.name == "api")
            .unwrap()
            .state,
        ServiceState::Running
    );
    assert!(!list.ready);
    let config = list
        .phases
        .iter()
        .find(|p| p.name == BootPhase::Config.name())
        .unwrap();
    assert!(config.detail.contains("restrat"), "{config:?}");
}

#[test]
fn cgroup_stop_takes_the_whole_service() {
    if !can_run_namespaces("cgroup_stop_takes_the_whole_service") {
        return;
    }
    // The service leaves a background child in its cgroup; a restart must take it too.
    let services = r#"{"services":[{"name":"forker","argv":["/bin/sh","-c",
        "sh -c 'trap \"\" TERM; sleep 1000; :' ki-cgroup-straggler & exec sleep 1000"],"stop_grace_ms":300}]}"#;
    let init = NamespacedInit::start("cgroup", services, "");
    let straggler = wait_for(Duration::from_secs(5), || {
        pids_with_cmdline("ki-cgroup-straggler").first().copied()
    })
    .expect("straggler runs");
    if !init.console().contains("forker: started")
        || init.console().contains("no per-service cgroups")
    {
        eprintln!(
            "skipping cgroup assertions: cgroup2 unavailable here\n{}",
            init.console()
        );
        return;
    }
    init.client().restart("forker").unwrap();
    let gone = wait_for(Duration::from_secs(5), || {
        proc_stat(straggler).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "straggler {straggler} survived the restart: {}",
        init.console()
    );
}

#[test]
fn children_get_only_the_listed_capabilities_user_and_no_new_privs() {
    if !can_run_namespaces("children_get_only_the_listed_capabilities_user_and_no_new_privs") {
        return;
    }
    let check = r#"["/bin/sh","-c","grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status; exec sleep 1000"]"#;
    let services = format!(
        r#"{{"services":[
        {{"name":"nobody","argv":{check},"user":65534,"group":65534,"capabilities":["CAP_NET_BIND_SERVICE"]}},
        {{"name":"rootless","argv":{check}}}]}}"#
    );
    let init = NamespacedInit::start("caps", &services, "");
    let status = |name: &str| {
        wait_for(Duration::from_secs(5), || {
            let log = std::fs::read_to_string(init.path(&format!("log/{name}.log"))).ok()?;
            log.contains("NoNewPrivs").then_some(log)
        })
        .unwrap_or_else(|| panic!("{name} wrote its status: {}", init.console()))
    };
    let field = |log: &str, key: &str| -> String {
        log.lines()
            .find_map(|l| {
                l.split_once("] ")
                    .map(|(_, rest)| rest)
                    .and_then(|r| r.strip_prefix(key))
            })
            .map(|v| {
                v.trim_start_matches(':')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    // CAP_NET_BIND_SERVICE is capability 10: bit 0x400.
    let nobody = status("nobody");
    assert_eq!(field(&nobody, "Uid"), "65534", "{nobody}");
    assert_eq!(field(&nobody, "Gid"), "65534", "{nobody}");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(field(&nobody, set), "0000000000000400", "{set}: {nobody}");
    }
    assert_eq!(field(&nobody, "NoNewPrivs"), "1", "{nobody}");
    // A root service with no capabilities listed keeps none, not even in the bounding set.
    let rootless = status("rootless");
    assert_eq!(field(&rootless, "Uid"), "0");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        assert_eq!(
            field(&rootless, set),
            "0000000000000000",
            "{set}: {rootless}"
        );
    }
    assert_eq!(field(&rootless, "NoNewPrivs"), "1");
}

#[test]
fn early_phase_mounts_kernel_filesystems_and_falls_back_to_ram() {
    if !can_run_namespaces("early_phase_mounts_kernel_filesystems_and_falls_back_to_ram") {
        return;
    }
    // Real early mounts, inside the test's own mount namespace. The label does
    // not exist, so the state phase scans the block devices (reading
    // superblocks only) and mounts a tmpfs. Modules stay off: the host kernel
    // is not ours to load modules into.
    let services = r#"{"services":[{"name":"mounts","argv":["/bin/sh","-c",
        "while read dev dir type rest; do echo \"mount $type $dir\"; done < /proc/self/mounts; exec sleep 1000"]}]}"#;
    // Init mounts a fresh /tmp and /run, so the test directory lives elsewhere.
    let mut init = NamespacedInit::start_in(
        std::path::Path::new("/var/tmp"),
        "early",
        services,
        r#""early_mounts": true, "data_label": "KI-NO-SUCH-LABEL", "data_wait_ms": 0"#,
    );
    assert!(
        init.wait_console("kindling: ready (1 services", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let data = init.path("data");
    let expected = [
        "mount proc /proc".to_string(),
        "mount sysfs /sys".to_string(),
        "mount devtmpfs /dev".to_string(),
        "mount tmpfs /run".to_string(),
        "mount tmpfs /tmp".to_string(),
        "mount cgroup2 /sys/fs/cgroup".to_string(),
        format!("mount tmpfs {}", data.display()),
    ];
    let seen = wait_for(Duration::from_secs(5), || {
        let console = init.console();
        expected
            .iter()
            .all(|e| console.contains(e.as_str()))
            .then_some(())
    });
    assert!(seen.is_some(), "{}", init.console());
    let console = init.console();
    assert!(
        console.contains("no partition labelled KI-NO-SUCH-LABEL found"),
        "{console}"
    );
    assert!(
        console.contains(&format!("kindling: {}: done", BootPhase::Early)),
        "{console}"
    );
    // Shutdown unmounts what init mounted, then ends the namespace.
    assert_eq!(
        init.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10)),
        Some(libc::SIGHUP)
    );
}

/// A loop device over an ext4 image whose superblock names a feature no
/// kernel knows: its label is readable, mounting it fails. Detached on drop.
struct UnmountableDisk {
    dir: std::path::PathBuf,
    device: String,
}

impl UnmountableDisk {
    fn create(label: &str) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("ki-baddisk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let image = dir.join("data.img");
        std::fs::File::create(&image).ok()?.set_len(8 << 20).ok()?;
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label])
            .arg(&image)
            .status()
            .ok()?;
        if !mkfs.success() {
            return None;
        }
        // s_feature_incompat (superblock at 1024, field at 0x60): set an
        // unknown bit, so ext4 refuses the mount with EINVAL.
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&image).ok()?;
        file.seek(SeekFrom::Start(1024 + 0x60 + 3)).ok()?;
        file.write_all(&[0x80]).ok()?;
        drop(file);
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)
            .output()
            .ok()?;
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !device.is_empty()).then_some(Self { dir, device })
    }
}

impl Drop for UnmountableDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.device])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_data_partition_that_cannot_be_mounted_degrades_the_appliance() {
    if !can_run_namespaces("a_data_partition_that_cannot_be_mounted_degrades_the_appliance") {
        return;
    }
    let label = format!("KI-BAD-{}", std::process::id() % 100_000);
    let Some(disk) = UnmountableDisk::create(&label) else {
        eprintln!("skipping: no loop device or mkfs.ext4 here");
        return;
    };
    let services = r#"{"services":[{"name":"idle","argv":["/bin/sleep","1000"]}]}"#;
    let mut init = NamespacedInit::start_in(
        std::path::Path::new("/var/tmp"),
        "baddisk",
        services,
        &format!(r#""early_mounts": true, "data_label": "{label}", "data_wait_ms": 0"#),
    );
    assert!(
        init.wait_console("kindling: degraded:", Duration::from_secs(10)),
        "{}",
        init.console()
    );
    let console = init.console();
    assert!(
        console.contains(&format!("kindling: {}: degraded", BootPhase::State)),
        "{console}"
    );
    assert!(
        console.contains("not mounted, nothing persists"),
        "{console}"
    );
    assert!(console.contains(&format!("label {label}")), "{console}");
    assert!(!console.contains("kindling: ready"), "{console}");
    // The service still runs: a degraded appliance comes up as far as it can.
    assert_eq!(
        init.signal_and_wait(Signal::SIGTERM, Duration::from_secs(10)),
        Some(libc::SIGHUP)
    );
    drop(disk);
}

/// Each child runs with exactly the account and capabilities its spec
/// names, read back from the kernel (`/proc/PID/status`), and the control
/// socket reports the same; a capability works after exec (a uid without
/// root binds port 80 with CAP_NET_BIND_SERVICE), and without it the same
/// bind fails.
#[test]
fn children_run_as_their_own_account_with_only_their_capabilities() {
    if !can_run_namespaces("children_run_as_their_own_account_with_only_their_capabilities") {
        return;
    }
    use kindling_init_protocol::accounts;
    use kindling_init_protocol::credentials::ProcessCredentials;
    let services = format!(
        r#"{{"services":[
        {{"name":"net","argv":["/bin/sleep","1000"],"user":{net},"group":{net},"groups":[{status}],
          "capabilities":["CAP_NET_ADMIN","CAP_NET_RAW","CAP_NET_BIND_SERVICE"]}},
        {{"name":"vault","argv":["/bin/sleep","1000"],"user":{vault},"group":{vault},"capabilities":["CAP_IPC_LOCK"]}},
        {{"name":"stack","argv":["/bin/sleep","1000"],"user":{stack},"group":{stack},
          "groups":[{status},{control},{consul},{vault},{nomad}]}},
        {{"name":"rootless-root","argv":["/bin/sleep","1000"]}},
        {{"name":"web","argv":["/bin/busybox","httpd","-f","-p","127.0.0.1:80","-h","/"],
          "user":{pxe},"group":{pxe},"capabilities":["CAP_NET_BIND_SERVICE"],
          "readiness":{{"kind":"tcp","addr":"127.0.0.1:80"}}}},
        {{"name":"web-nocap","argv":["/bin/busybox","httpd","-f","-p","127.0.0.1:81","-h","/"],
          "user":{api},"group":{api},"required":false,"restart":"never"}}
        ]}}"#,
        net = accounts::NET.uid,
        vault = accounts::VAULT.uid,
        stack = accounts::STACK.uid,
        pxe = accounts::PXE.uid,
        api = accounts::API.uid,
        status = accounts::STATUS.gid,
        control = accounts::CONTROL.gid,
        consul = accounts::CONSUL.gid,
        nomad = accounts::NOMAD.gid,
    );
    let init = NamespacedInit::start("privs", &services, "");
    assert!(
        init.wait_console("kindling: ready (6 services", Duration::from_secs(15)),
        "{}",
        init.console()
    );
    let list = init.client().list().unwrap();
    let want: &[(&str, u32, &[u32], &[&str])] = &[
        (
            "net",
            accounts::NET.uid,
            &[accounts::STATUS.gid],
            &["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"],
        ),
        ("vault", accounts::VAULT.uid, &[], &["CAP_IPC_LOCK"]),
        (
            "stack",
            accounts::STACK.uid,
            &[
                accounts::STATUS.gid,
                accounts::CONTROL.gid,
                accounts::CONSUL.gid,
                accounts::VAULT.gid,
                accounts::NOMAD.gid,
            ],
            &[],
        ),
        ("rootless-root", 0, &[], &[]),
        ("web", accounts::PXE.uid, &[], &["CAP_NET_BIND_SERVICE"]),
    ];
    for (name, uid, groups, caps) in want {
        let s = list.services.iter().find(|s| s.name == *name).unwrap();
        let pid = s.pid.unwrap_or_else(|| panic!("{name} not running: {s:?}"));
        // The kernel's view, read here, not init's word (the listing's pid
        // is in init's PID namespace; find the same child from outside).
        let host = host_pid_of_child(init.init_pid, pid)
            .unwrap_or_else(|| panic!("{name}: no child of init with pid {pid} in its namespace"));
        let text = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap();
        let real = ProcessCredentials::parse(&text).unwrap();
        assert_eq!((real.uid, real.gid), (*uid, *uid), "{name}: {text}");
        let mut sorted = groups.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            real.groups, sorted,
            "{name}: supplementary groups (the kernel sorts them)"
        );
        assert_eq!(real.effective, *caps, "{name}: CapEff");
        assert_eq!(real.permitted, *caps, "{name}: CapPrm");
        assert_eq!(real.bounding, *caps, "{name}: CapBnd");
        assert!(real.no_new_privs, "{name}: NoNewPrivs");
        // And the control socket's listing says the same.
        assert_eq!(s.user, *uid, "{name}");
        assert_eq!(
            s.process.as_ref(),
            Some(&real),
            "{name}: listed credentials"
        );
    }
    // Without the capability, the same bind below 1024 fails.
    let nocap = wait_for(Duration::from_secs(10), || {
        let l = init.client().list().ok()?;
        let s = l.services.into_iter().find(|s| s.name == "web-nocap")?;
        (s.state == ServiceState::Failed).then_some(s)
    })
    .unwrap_or_else(|| panic!("web-nocap did not fail: {}", init.console()));
    assert!(nocap.process.is_none(), "{nocap:?}");
    let log = std::fs::read_to_string(init.path("log/web-nocap.log")).unwrap_or_default();
    assert!(log.to_lowercase().contains("permission denied"), "{log}");
}

/// The host pid of init's child whose pid in init's namespace is `ns_pid`.
fn host_pid_of_child(init_pid: i32, ns_pid: u32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        };
        let ppid: i32 = field("PPid:")?.first()?.parse().ok()?;
        let nspid = field("NSpid:")?;
        (ppid == init_pid && nspid.last()?.parse::<u32>().ok()? == ns_pid).then_some(pid)
    })
}
