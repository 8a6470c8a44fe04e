#!/usr/bin/env python3
"""FAKE OCI runtime: a test double for crun, used by the runtime unit tests.

It runs the bundle's process.args directly on the host (no namespaces, no
cgroups), with crun's command-line shape and just enough behaviour:
create (the process waits on a fifo until start; --console-socket gets a pty
master over SCM_RIGHTS), start, run --detach (create and start at once), kill, pause/resume (SIGSTOP/SIGCONT), delete,
state, and exec --process (runs and waits). State lives under
$FAKE_CRUN_STATE (or --root=DIR).
"""
import array
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import termios

state_root = os.environ.get("FAKE_CRUN_STATE", "/tmp/fake-crun-state")
log_file = None
args = sys.argv[1:]
while args and args[0].startswith("--"):
    if args[0].startswith("--root="):
        state_root = args[0][len("--root="):]
    if args[0].startswith("--log=file:"):
        log_file = args[0][len("--log=file:"):]
    args = args[1:]


def fail(message):
    # crun logs its errors to --log (as "level: msg" or JSON), else to stderr.
    if log_file:
        with open(log_file, "a") as f:
            f.write(json.dumps({"msg": message, "level": "error"}) + "\n")
    else:
        sys.stderr.write(message + "\n")
    sys.exit(1)
if not args:
    sys.exit(2)
command, args = args[0], args[1:]


def options(args, with_value):
    opts, rest = {}, []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            opts[k] = v
        elif a.startswith("-"):
            k = a.lstrip("-")
            if k in with_value:
                opts[k] = args[i + 1]
                i += 1
            else:
                opts[k] = True
        else:
            rest.append(a)
        i += 1
    return opts, rest


def state_dir(cid):
    return os.path.join(state_root, cid)


def load(cid):
    try:
        with open(os.path.join(state_dir(cid), "state.json")) as f:
            return json.load(f)
    except OSError:
        sys.stderr.write("container `%s` does not exist\n" % cid)
        sys.exit(1)


def save(cid, st):
    with open(os.path.join(state_dir(cid), "state.json"), "w") as f:
        json.dump(st, f)


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def send_master(path):
    master, slave = os.openpty()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))])
    s.close()
    os.close(master)
    return slave


def become_process(proc, slave):
    if slave is not None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
    env = dict(e.split("=", 1) for e in proc.get("env", []))
    cwd = proc.get("cwd", "/")
    os.chdir(cwd if os.path.isdir(cwd) else "/")
    os.execvpe(proc["args"][0], proc["args"], env)


def signum(text):
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name))


if command in ("create", "run"):
    # run: only `run --detach` (create and start in one, as berth's shim uses it).
    opts, rest = options(args, {"bundle", "pid-file", "console-socket", "b"})
    if command == "run" and "detach" not in opts and "d" not in opts:
        fail("fake crun: run without --detach is not faked")
    cid = rest[0]
    bundle = opts.get("bundle", opts.get("b", "."))
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    env = dict(e.split("=", 1) for e in spec["process"].get("env", []))
    exe = spec["process"]["args"][0]
    if shutil.which(exe, path=env.get("PATH", "")) is None:
        # crun checks this at create time and fails the create.
        fail("executable file `%s` not found in $PATH: No such file or directory" % exe)
    os.makedirs(state_dir(cid))
    fifo = os.path.join(state_dir(cid), "exec.fifo")
    if command == "create":
        os.mkfifo(fifo)
    slave = send_master(opts["console-socket"]) if "console-socket" in opts else None
    pid = os.fork()
    if pid == 0:
        if command == "create":
            fd = os.open(fifo, os.O_RDONLY)
            os.read(fd, 1)
            os.close(fd)
        try:
            become_process(spec["process"], slave)
        except OSError as e:
            sys.stderr.write("exec failed: %s\n" % e)
            os._exit(127)
    if slave is not None:
        os.close(slave)
    with open(opts["pid-file"], "w") as f:
        f.write(str(pid))
    save(cid, {"pid": pid, "status": "created" if command == "create" else "running", "bundle": bundle})
    sys.exit(0)

if command == "start":
    cid = args[-1]
    st = load(cid)
    fd = os.open(os.path.join(state_dir(cid), "exec.fifo"), os.O_WRONLY)
    os.write(fd, b"1")
    os.close(fd)
    st["status"] = "running"
    save(cid, st)
    sys.exit(0)

if command == "kill":
    opts, rest = options(args, set())
    cid = rest[0]
    sig = signum(rest[1]) if len(rest) > 1 else signal.SIGTERM
    st = load(cid)
    if not alive(st["pid"]):
        sys.stderr.write("container not running\n")
        sys.exit(1)
    os.kill(st["pid"], sig)
    sys.exit(0)

if command in ("pause", "resume"):
    cid = args[-1]
    st = load(cid)
    os.kill(st["pid"], signal.SIGSTOP if command == "pause" else signal.SIGCONT)
    st["status"] = "paused" if command == "pause" else "running"
    save(cid, st)
    sys.exit(0)

if command == "delete":
    opts, rest = options(args, set())
    cid = rest[0]
    if not os.path.isdir(state_dir(cid)):
        sys.exit(0 if ("force" in opts or "f" in opts) else 1)
    st = load(cid)
    if alive(st["pid"]):
        if "force" in opts or "f" in opts:
            os.kill(st["pid"], signal.SIGKILL)
        else:
            sys.stderr.write("container is running\n")
            sys.exit(1)
    shutil.rmtree(state_dir(cid))
    sys.exit(0)

if command == "state":
    cid = args[-1]
    st = load(cid)
    print(json.dumps({"id": cid, "pid": st["pid"],
                      "status": st["status"] if alive(st["pid"]) else "stopped"}))
    sys.exit(0)

if command == "exec":
    opts, rest = options(args, {"process", "p", "console-socket", "pid-file"})
    cid = rest[0]
    load(cid)
    with open(opts.get("process", opts.get("p"))) as f:
        proc = json.load(f)
    slave = send_master(opts["console-socket"]) if "console-socket" in opts else None
    pid = os.fork()
    if pid == 0:
        try:
            become_process(proc, slave)
        except OSError as e:
            sys.stderr.write("exec failed: %s\n" % e)
            os._exit(127)
    if slave is not None:
        os.close(slave)
    if "pid-file" in opts:
        with open(opts["pid-file"], "w") as f:
            f.write(str(pid))
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))

sys.stderr.write("fake crun: unknown command %s\n" % command)
sys.exit(2)
