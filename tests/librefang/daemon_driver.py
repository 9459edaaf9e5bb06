#!/usr/bin/env python3
"""Drives LibreFang's real daemon supervising Spoke's `echo_channel` example
as two sidecar channels, offline, for `tests/librefang_daemon.rs`.

Run it inside a fresh network namespace (it refuses to start otherwise):

    unshare --net --pid --mount-proc --fork --kill-child -- \\
        python3 daemon_driver.py --librefang PATH --echo-channel PATH --workdir DIR

(`--pid --mount-proc --kill-child`: this driver is PID 1 of its own PID
namespace, so nothing it started outlives it, even when it is killed.)

Channels:
  echo    works: after the daemon is up, `POST /api/agents/{id}/push` makes
          the daemon write a `send` to it; it answers with a `message` event
          ("echo: ping-42"). The daemon hands that message to its agent, whose
          reply (with no LLM configured: an empty streamed reply) is not
          echoed: the conversation is over. `max_echoes` (3 here) bounds it
          all the same, should echoes ever loop.
  broken  cannot start (ECHO_CHANNEL_MAX_ECHOES = "lots"): it writes one
          `error` frame and exits 2; the daemon gives up after one retry.

Prints ONE JSON object on stdout with everything observed; the Rust test
asserts on it. Exit 0 when the scenario ran (whatever was observed),
non-zero with a message on stderr when it could not run (not in a network
namespace, the daemon did not start, ...). Standard library only; every wait
is bounded; on every path the daemon is stopped (SIGTERM: it stops its
sidecars; SIGKILL to its process group after a grace).
"""

import argparse
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

HEALTH_LIMIT_S = 60.0      # daemon boot (about 1 s with the fast boot below)
CHANNELS_LIMIT_S = 30.0    # both channels in their expected states
COUNTERS_LIMIT_S = 20.0    # the echo conversation over after the push
QUIET_S = 1.5              # no counter change for this long: over
STOP_GRACE_S = 15.0        # SIGTERM, then SIGKILL
POLL_S = 0.1
LOG_TAIL_LINES = 80
REFUSED_VALUE = "lots"
MAX_ECHOES = 3
PUSH = {"channel": "echo", "recipient": "chat1", "message": "ping-42"}


class Failed(Exception):
    """The scenario could not run; the message goes to stderr."""


def now_ms(start):
    return int((time.monotonic() - start) * 1000)


# ------------------------------------------------------------ network namespace

def interfaces():
    """Interface names of this process's network namespace. (Not from
    /sys/class/net: after `unshare --net` that still shows the sysfs mount's,
    i.e. the host's, interfaces.)"""
    names = {name for _, name in socket.if_nameindex()}
    with open("/proc/self/net/dev") as f:
        for line in f.readlines()[2:]:
            if ":" in line:
                names.add(line.split(":", 1)[0].strip())
    return sorted(names)


def require_loopback_only_netns():
    names = interfaces()
    if names != ["lo"]:
        raise Failed(
            "refusing to start the daemon with network access: this process "
            f"sees the interfaces {names}, expected only ['lo']; run me as "
            "`unshare --net --pid --mount-proc --fork --kill-child -- python3 daemon_driver.py ...`")


def bring_lo_up():
    """`ip link set lo up` without iproute2: SIOCGIFFLAGS / SIOCSIFFLAGS."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ HTTP

def http(base, method, path, body=None, timeout=3.0):
    """(status, parsed JSON or text); status None when there was no answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def channel_rows(base):
    status, body = http(base, "GET", "/api/channels")
    if status != 200 or not isinstance(body, dict):
        return None
    keep = ("name", "supervised", "connected", "started_at", "last_message_at",
            "messages_received", "messages_sent", "last_error")
    return {r.get("name"): {k: r.get(k) for k in keep}
            for r in body.get("items", []) if isinstance(r, dict)}


# ---------------------------------------------------------------------- daemon

def toml_str(s):
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(s)


def write_config(home, port, echo_channel):
    config = f"""# written by tests/librefang/daemon_driver.py
api_listen = "127.0.0.1:{port}"
log_level = "info"

[registry]
auto_sync = false

[[sidecar_channels]]
name = "echo"
command = {toml_str(echo_channel)}
args = ["stdio"]
env = {{ ECHO_CHANNEL_PREFIX = "echo: ", SPOKE_ACCOUNT_ID = "echo", ECHO_CHANNEL_MAX_ECHOES = "{MAX_ECHOES}" }}

[[sidecar_channels]]
name = "broken"
command = {toml_str(echo_channel)}
args = ["stdio"]
env = {{ ECHO_CHANNEL_MAX_ECHOES = {toml_str(REFUSED_VALUE)} }}
restart_initial_backoff_ms = 100
restart_max_backoff_ms = 200
restart_max_retries = 1
"""
    path = os.path.join(home, "config.toml")
    with open(path, "w") as f:
        f.write(config)
    return config


def daemon_env(home, fake_home):
    env = {
        "HOME": fake_home,
        "LIBREFANG_HOME": home,
        "LIBREFANG_REGISTRY_OFFLINE": "1",
        "LIBREFANG_DASHBOARD_EMBEDDED_ONLY": "1",
        # Fast boot: with no python3 on PATH the daemon's ~27 channel-catalog
        # `python3 -m ... --describe` probes fail at once (about 1 s to healthy
        # instead of 4-7 s). Sidecar commands are absolute paths.
        "PATH": "/nonexistent",
        "NO_COLOR": "1",
    }
    for keep in ("LANG", "TMPDIR"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    return env


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(strip_ansi(text).splitlines()[-lines:])


def strip_ansi(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\x1b" and i + 1 < len(text) and text[i + 1] == "[":
            j = i + 2
            while j < len(text) and not text[j].isalpha():
                j += 1
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def stop_daemon(proc):
    """SIGTERM to the daemon's process group, SIGKILL after the grace.
    Returns (how, exit code, ms)."""
    start = time.monotonic()
    if proc.poll() is not None:
        return "already exited", proc.returncode, 0
    how = "SIGTERM"
    try:
        proc.send_signal(signal.SIGTERM)  # the daemon stops its sidecars itself
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        how = "SIGKILL after grace"
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    # Whatever is left of its group (a sidecar) goes too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return how, proc.returncode, now_ms(start)


def leftover_processes():
    """As PID 1 of a PID namespace (with its own /proc): every other process
    still running in it, after reaping the orphans it inherited. None when
    not PID 1 (the check needs the namespace)."""
    if os.getpid() != 1:
        return None
    for _ in range(1000):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    left = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == 1:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # exited meanwhile
        if state != "Z":
            left.append({"pid": int(entry), "state": state, "cmdline": cmd[:300]})
    return left


def wait_until(limit_s, probe, proc, what, log_path):
    """Calls probe() every POLL_S until it returns a truthy value; bounded in
    time and count; fails early when the daemon exits."""
    deadline = time.monotonic() + limit_s
    last = None
    for _ in range(int(limit_s / POLL_S) + 1):
        last = probe()
        if last:
            return last
        if proc.poll() is not None:
            raise Failed(f"the daemon exited ({proc.returncode}) while waiting for {what}\n"
                         f"daemon log tail:\n{log_tail(log_path)}")
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return None


# -------------------------------------------------------------------- scenario

def run(args, out):
    t0 = time.monotonic()
    require_loopback_only_netns()
    bring_lo_up()
    for path, what in ((args.librefang, "--librefang"), (args.echo_channel, "--echo-channel")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise Failed(f"{what} {path}: not an executable file")
    with open(args.librefang, "rb") as f:
        if f.read(4) != b"\x7fELF":
            raise Failed(f"--librefang {args.librefang}: not the daemon binary itself (a shim "
                         "script? it would not run with the daemon's empty PATH)")

    workdir = os.path.abspath(args.workdir)
    home = os.path.join(workdir, "librefang-home")
    fake_home = os.path.join(workdir, "home")
    os.makedirs(home, exist_ok=True)
    os.makedirs(fake_home, exist_ok=True)
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    log_path = os.path.join(workdir, "daemon.log")
    out.update(workdir=workdir, port=port, interfaces=interfaces(), max_echoes=MAX_ECHOES,
               config=write_config(home, port, os.path.abspath(args.echo_channel)))
    version = subprocess.run([args.librefang, "--version"], capture_output=True,
                             text=True, timeout=30, env=daemon_env(home, fake_home))
    out["librefang_version"] = (version.stdout or version.stderr).strip()

    timings = out["timings_ms"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [os.path.abspath(args.librefang), "start", "--foreground"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=daemon_env(home, fake_home), cwd=workdir, start_new_session=True)
    out["daemon_pid"] = proc.pid
    try:
        started = time.monotonic()

        def healthy():
            status, body = http(base, "GET", "/api/health", timeout=1.0)
            return body if status == 200 else None
        health = wait_until(HEALTH_LIMIT_S, healthy, proc, "/api/health", log_path)
        if health is None:
            raise Failed(f"the daemon was not healthy within {HEALTH_LIMIT_S:.0f} s\n"
                         f"daemon log tail:\n{log_tail(log_path)}")
        out["health"] = health
        timings["healthy"] = now_ms(started)

        # Both channels in their expected states: echo connected, broken with
        # an error and not connected.
        def settled():
            rows = channel_rows(base)
            if not rows:
                return None
            echo, broken = rows.get("echo") or {}, rows.get("broken") or {}
            if echo.get("connected") is True and broken.get("last_error") \
                    and broken.get("connected") is not True:
                return rows
            out["channels_last_seen"] = {k: rows.get(k) for k in ("echo", "broken")}
            return None
        rows = wait_until(CHANNELS_LIMIT_S, settled, proc, "the channels", log_path)
        timings["channels_settled"] = now_ms(started)
        out["channels_settled"] = rows is not None
        if rows is not None:
            out["channels_before_push"] = {k: rows.get(k) for k in ("echo", "broken")}

        status, agents = http(base, "GET", "/api/agents")
        items = agents.get("items") if isinstance(agents, dict) else agents
        if status != 200 or not isinstance(items, list) or not items:
            raise Failed(f"GET /api/agents: {status} {agents!r}")
        agent_id = items[0].get("id")
        out["agent_id"] = agent_id

        push_started = time.monotonic()
        status, body = http(base, "POST", f"/api/agents/{agent_id}/push", PUSH, timeout=10)
        out["push"] = {"request": PUSH, "status": status, "response": body}

        # The conversation is over when the echo's error (max_echoes) shows,
        # or when its counters have not moved for QUIET_S after the first echo.
        seen = {"key": None, "since": time.monotonic()}

        def over():
            rows = channel_rows(base) or {}
            echo = rows.get("echo") or {}
            received = echo.get("messages_received") or 0
            if received >= 1 and "first_echo" not in out:
                out["first_echo"] = echo
                timings["push_to_first_echo"] = now_ms(push_started)
            key = (received, echo.get("messages_sent"), echo.get("last_error"))
            if key != seen["key"]:
                seen.update(key=key, since=time.monotonic())
            if received >= 1 and (echo.get("last_error")
                                  or time.monotonic() - seen["since"] >= QUIET_S):
                return True
            return None
        out["echo_conversation_over"] = bool(
            wait_until(COUNTERS_LIMIT_S, over, proc, "the echo", log_path))
        timings["push_to_over"] = now_ms(push_started)
        time.sleep(0.3)  # anything still in flight lands in the final rows
        rows = channel_rows(base) or {}
        out["channels_final"] = {k: rows.get(k) for k in ("echo", "broken")}

        # Best effort, informative only: the agent's turns (one per message
        # handed to it). With no LLM the daemon keeps no message text (the
        # sessions stay empty), and its log has no text either.
        status, events = http(base, "GET", f"/api/agents/{agent_id}/events")
        turns = events.get("events") if isinstance(events, dict) else None
        out["agent_turns"] = len(turns) if isinstance(turns, list) else None
        log_text = strip_ansi(log_tail(log_path, 100000))
        out["daemon_log_lines"] = {
            needle: [line[-400:] for line in log_text.splitlines() if needle in line][:8]
            for needle in ("adapter=echo", "adapter=broken")}
    finally:
        how, code, ms = stop_daemon(proc)
        out["daemon_stop"] = {"how": how, "exit_code": code}
        out["leftover_processes"] = leftover_processes()
        out["daemon_log_tail"] = log_tail(log_path)
        timings["stop"] = ms
        timings["total"] = now_ms(t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--librefang", required=True, help="the `librefang` daemon binary")
    parser.add_argument("--echo-channel", required=True, help="the built `echo_channel` example")
    parser.add_argument("--workdir", required=True, help="a private directory for this run")
    args = parser.parse_args()
    out = {"timings_ms": {}}
    try:
        run(args, out)
    except Failed as e:
        print(f"daemon_driver: {e}", file=sys.stderr)
        print(json.dumps(out), flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - report anything, after cleanup
        import traceback
        traceback.print_exc()
        print(f"daemon_driver: could not run the scenario: {type(e).__name__}: {e}", file=sys.stderr)
        print(json.dumps(out), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
