//! Path 5: cold start. (a) `<echo example> describe`, spawned again and
//! again: wall time from spawn to exit and peak RSS (from `wait4`), against
//! an empty Rust `main` (`noop`) measured the same way: what Spoke adds
//! over starting any Rust process. (b) `<echo example> serve` against a
//! real hub in this process: time from spawn until the hub lists the
//! instance as ready, against a raw tonic client in this process that
//! connects and sends a hand-written Register (no process start, no SDK).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use spoke_proto::v1::hub_client::HubClient;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Channel;

use crate::end_to_end::client;
use crate::hub_scale::{self, echo_manifest_json};
use crate::report::{Report, Target};
use crate::stats::median;
use crate::{Opts, binaries, driver};

const PATH: &str = "5 cold start";

/// How long one start may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(10);

/// How often the hub is asked whether the instance is ready.
const POLL: Duration = Duration::from_millis(1);

/// One run of a program to its exit: wall time (ms) and peak RSS (MiB).
#[expect(
    clippy::zombie_processes,
    reason = "reaped with libc::wait4, which also gives its rusage"
)]
fn run_once(program: &Path, args: &[&str]) -> (f64, f64) {
    let started = std::time::Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read the child's stdout");
    // Reap it here (not with Child::wait) to get its rusage.
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert!(
            r == -1 && err.kind() == std::io::ErrorKind::Interrupted,
            "wait4({pid}): {err}"
        );
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {args:?} failed (wait status {status})",
        program.display()
    );
    if !args.is_empty() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&out).expect("`describe` prints JSON");
        assert!(manifest.is_object(), "{manifest}");
    }
    // ru_maxrss is in KiB on Linux.
    (wall_ms, usage.ru_maxrss as f64 / 1024.0)
}

/// The peak RSS (MiB) of one run of `program`, of its own image only: the
/// child asks to be traced (PTRACE_TRACEME, just before exec) and its
/// VmHWM is read from /proc at its exit stop, before its memory goes.
/// (`wait4`'s ru_maxrss cannot tell this: Linux folds into it the peak RSS
/// of the address space the child had before exec, the spawning process's.)
/// `Err` when tracing is not allowed here.
fn traced_peak_rss(program: &Path, args: &[&str]) -> Result<f64, std::io::Error> {
    use std::os::unix::process::CommandExt as _;
    use std::ptr::null_mut;

    let mut command = Command::new(program);
    command
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: runs in the forked child before exec and makes one system
    // call, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::ptrace(
                libc::PTRACE_TRACEME,
                0,
                null_mut::<libc::c_void>(),
                null_mut::<libc::c_void>(),
            ) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("stdout");
    let drain = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let pid = child.id() as libc::pid_t;
    let exit_stop = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
    let (mut traced_exit, mut peak_kib) = (false, None);
    let status = loop {
        let mut status: libc::c_int = 0;
        // SAFETY: pid is our own child, traced by this thread.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::Interrupted,
                "waitpid({pid}): {err}"
            );
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            break status;
        }
        let mut deliver = 0;
        if status >> 8 == exit_stop {
            peak_kib = Some(vm_hwm_kib(pid));
        } else if libc::WSTOPSIG(status) == libc::SIGTRAP && !traced_exit {
            // The stop right after exec: ask for a stop at exit as well.
            let options = libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL;
            // SAFETY: pid is stopped and traced by this thread.
            let r = unsafe {
                libc::ptrace(
                    libc::PTRACE_SETOPTIONS,
                    pid,
                    null_mut::<libc::c_void>(),
                    options as usize as *mut libc::c_void,
                )
            };
            assert_ne!(
                r,
                -1,
                "PTRACE_SETOPTIONS: {}",
                std::io::Error::last_os_error()
            );
            traced_exit = true;
        } else {
            // Any other signal is the child's: pass it on.
            deliver = libc::WSTOPSIG(status);
        }
        // SAFETY: pid is stopped and traced by this thread.
        unsafe {
            libc::ptrace(
                libc::PTRACE_CONT,
                pid,
                null_mut::<libc::c_void>(),
                deliver as usize as *mut libc::c_void,
            );
        }
    };
    let out = drain.join().expect("the stdout reader");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} {args:?} failed under tracing (wait status {status})",
        program.display()
    );
    assert!(
        args.is_empty() || !out.is_empty(),
        "{} printed nothing",
        program.display()
    );
    let peak_kib = peak_kib.expect("the child stopped at its exit");
    Ok(peak_kib / 1024.0)
}

/// The peak RSS (MiB) of one run of `program args` to its exit: traced when
/// this machine allows it, else from `wait4` (which may count the spawning
/// process's own peak; see [`traced_peak_rss`]).
pub(crate) fn peak_rss(program: &Path, args: &[&str]) -> f64 {
    traced_peak_rss(program, args).unwrap_or_else(|_| run_once(program, args).1)
}

/// A process's VmHWM (peak resident set size) in KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// Waits until the hub lists `id` as a ready echo instance; when.
async fn until_ready(hub: &mut HubClient<Channel>, id: &str, since: Instant) -> Instant {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if hub_scale::ready(hub, "echo", Some(id)).await.1 {
            return Instant::now();
        }
        assert!(
            since.elapsed() < WAIT,
            "instance {id} was not ready within {WAIT:?}"
        );
    }
}

pub async fn run(opts: &Opts, report: &mut Report) {
    eprintln!("{PATH}");
    describe(opts, report).await;
    registered(opts, report).await;
}

/// (a) `echo describe` against `noop`.
async fn describe(opts: &Opts, report: &mut Report) {
    let runs: usize = if opts.quick { 5 } else { 30 };
    let echo = binaries::example("echo");
    let noop = binaries::bench_bin("noop");
    // Each run: (wall ms, wait4's ru_maxrss MiB, traced peak RSS MiB).
    let (echo_runs, noop_runs, traced) = tokio::task::spawn_blocking(move || {
        // Warm the page cache for both.
        for _ in 0..2 {
            run_once(&echo, &["describe"]);
            run_once(&noop, &[]);
        }
        let (mut echo_runs, mut noop_runs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            noop_runs.push(run_once(&noop, &[]));
            echo_runs.push(run_once(&echo, &["describe"]));
        }
        // Peak RSS in runs of their own: tracing costs time.
        let (mut echo_rss, mut noop_rss) = (Vec::new(), Vec::new());
        let mut traced = Ok(());
        for _ in 0..runs {
            match (
                traced_peak_rss(&noop, &[]),
                traced_peak_rss(&echo, &["describe"]),
            ) {
                (Ok(n), Ok(e)) => {
                    noop_rss.push(n);
                    echo_rss.push(e);
                }
                (Err(e), _) | (_, Err(e)) => {
                    traced = Err(e);
                    break;
                }
            }
        }
        (echo_runs, noop_runs, traced.map(|()| (echo_rss, noop_rss)))
    })
    .await
    .expect("the cold-start runs");
    let (echo_wall, echo_maxrss): (Vec<f64>, Vec<f64>) = echo_runs.into_iter().unzip();
    let (noop_wall, noop_maxrss): (Vec<f64>, Vec<f64>) = noop_runs.into_iter().unzip();
    let case = "echo describe";
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    report
        .add(PATH, case, "wall (median)", "ms", median(&echo_wall))
        .baseline(median(&noop_wall))
        .target(Target::AtMost { value: 5.0 })
        .note(format!(
            "spawn to exit (reaped with wait4), stdout drained through a pipe, stdin null; \
             median of {runs} (max {:.2} ms); baseline: an empty Rust main (`noop`) the same way",
            max(&echo_wall)
        ));
    let inflated = format!(
        "wait4's ru_maxrss, which Linux makes at least the spawning process's own peak RSS \
         (this harness's: {:.2} MiB), said {:.2} MiB for echo and {:.2} MiB for noop",
        vm_hwm_kib(std::process::id() as libc::pid_t) / 1024.0,
        median(&echo_maxrss),
        median(&noop_maxrss)
    );
    match traced {
        Ok((echo_rss, noop_rss)) => {
            report
                .add(PATH, case, "peak rss (median)", "MiB", median(&echo_rss))
                .baseline(median(&noop_rss))
                .target(Target::AtMost { value: 8.0 })
                .note(format!(
                    "VmHWM of the child's own image, read at its exit stop (ptrace), median of \
                     {runs}; baseline: `noop`; {inflated}"
                ));
        }
        Err(e) => {
            eprintln!("  warning: cannot trace children ({e}): peak RSS from wait4 instead");
            report
                .add(PATH, case, "peak rss (median)", "MiB", median(&echo_maxrss))
                .baseline(median(&noop_maxrss))
                .target(Target::AtMost { value: 8.0 })
                .note(format!(
                    "UPPER BOUND: tracing is not allowed here ({e}), so this is {inflated}"
                ));
        }
    }
}

/// Starts `echo serve` attaching to `url` as instance `id`.
fn spawn_serve(echo: &Path, url: &str, id: &str) -> std::process::Child {
    // A HOME of the benchmark's own: each id's instance key is made there
    // (part of a first start, so part of the figure), not in the user's.
    let home = crate::binaries::profile_dir().join("bench-home");
    let _ = std::fs::create_dir_all(&home);
    Command::new(echo)
        .arg("serve")
        .env("HOME", home)
        .env("SPOKE_HUB_URL", url)
        .env("SPOKE_INSTANCE_ID", id)
        .env("RUST_LOG", "error")
        .env_remove("SPOKE_DISPLAY_NAME")
        .env_remove("SPOKE_TAGS")
        .env_remove("SPOKE_TENANT")
        .env_remove("SPOKE_MAX_IN_FLIGHT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", echo.display()))
}

/// (b) `echo serve` from spawn to ready on a hub in this process, against
/// a raw tonic Register from this process.
async fn registered(opts: &Opts, report: &mut Report) {
    let runs: usize = if opts.quick { 3 } else { 30 };
    let echo = binaries::example("echo");
    let config = spoke_hub::HubConfig::new("127.0.0.1:0".parse().unwrap());
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let hub_task = tokio::spawn(spoke_hub::run_until(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = bound_tx.send(addr);
        },
    ));
    let addr = bound_rx.await.expect("the hub binds");
    let url = format!("http://{addr}");
    let mut hub = client(addr).await;
    let manifest = echo_manifest_json().await;

    let (mut spoke_ms, mut raw_ms) = (Vec::new(), Vec::new());
    // One warm-up of each, not counted.
    for i in 0..runs + 1 {
        let id = format!("cold-{i}");
        let started = Instant::now();
        let mut child = spawn_serve(&echo, &url, &id);
        let ready = tokio::time::timeout(WAIT * 2, until_ready(&mut hub, &id, started)).await;
        let _ = child.kill();
        let _ = child.wait();
        let ready = ready.expect("the echo connector registers in time");
        if i > 0 {
            spoke_ms.push((ready - started).as_secs_f64() * 1e3);
        }

        let id = format!("raw-{i}");
        let started = Instant::now();
        let sim = tokio::time::timeout(WAIT, hub_scale::attach(&url, &manifest, &id))
            .await
            .expect("a raw Register in time")
            .unwrap_or_else(|e| panic!("a raw Register: {e}"));
        let ready = until_ready(&mut hub, &id, started).await;
        drop(sim);
        if i > 0 {
            raw_ms.push((ready - started).as_secs_f64() * 1e3);
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(WAIT, hub_task).await;

    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    report
        .add(
            PATH,
            "echo serve",
            "start to ready (median)",
            "ms",
            median(&spoke_ms),
        )
        .baseline(median(&raw_ms))
        .target(Target::AtMost { value: 50.0 })
        .note(format!(
            "spawn of `echo serve` until the hub (in this process) lists the instance ready, \
             polled with ListConnectors every {} ms (so up to ~1 ms late); median of {runs} (max \
             {:.2} ms), each killed and reaped before the next; baseline: a raw tonic client in \
             this process connecting and sending a hand-written Register, polled the same way \
             (no process start, no SDK)",
            POLL.as_millis(),
            max(&spoke_ms)
        ));

    // The same start timed exactly, with no polling: until the Register
    // frame reaches a bare ConnectorHub server (the driver) in this process.
    let (driver_addr, mut arrivals) = driver::serve(Duration::from_secs(30)).await;
    let driver_url = format!("http://{driver_addr}");
    let mut register_ms = Vec::new();
    for i in 0..runs + 1 {
        let id = format!("drv-{i}");
        let started = Instant::now();
        let mut child = spawn_serve(&echo, &driver_url, &id);
        let attached = tokio::time::timeout(WAIT, arrivals.recv()).await;
        let _ = child.kill();
        let _ = child.wait();
        let attached = attached
            .expect("a Register in time")
            .expect("the driver runs");
        assert_eq!(attached.instance_id, id);
        if i > 0 {
            register_ms.push((attached.registered_at - started).as_secs_f64() * 1e3);
        }
    }
    report
        .add(
            PATH,
            "echo serve",
            "start to Register (median)",
            "ms",
            median(&register_ms),
        )
        .note(format!(
            "spawn of `echo serve` until its Register frame reaches a bare ConnectorHub server in \
             this process (benches' driver), timed exactly, no polling; median of {runs} (max \
             {:.2} ms)",
            max(&register_ms)
        ));
}
