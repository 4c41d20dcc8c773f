"""Run the command-line tool in child processes fast: fork them from one process that imported it.

Importing torch takes about 5 s on the CI machine, so a test that starts the tool
as `python musical_valence_predictor.py` thirty times spends minutes importing.
Here one server process (this file, run as a script) imports the tool once and
forks a child per run. Each child is a real process: its own stdout and stderr
files, its own exit status, killable with any signal. It runs exactly what the
entry file's `__main__` runs, `sys.exit(main(argv))`, and an exception that
escapes main() prints Python's usual "Traceback ..." and exits 1, as it would.

A child can carry a hook that pauses it at a chosen moment of saving a bundle,
so that a test can kill it exactly there (see HOOKS).
"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
PAUSED = "paused"  # the file a hooked child creates in its work directory when it pauses


@dataclass
class Finished:
    """How a child run ended: its exit status (negative: killed by that signal) and output."""
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Child:
    """A child run in progress."""
    pid: int
    workdir: Path

    def output(self):
        """Return what the child has printed to stdout so far."""
        path = self.workdir / "stdout"
        return path.read_text(errors="replace") if path.exists() else ""

    def paused(self):
        """Say whether a hooked child has reached its pause."""
        return (self.workdir / PAUSED).exists()


class CliServer:
    """The test side: ask the server to fork runs of the tool, wait for them, signal them."""

    def __init__(self):
        # One torch thread: the data are tiny, and on a busy 2-core machine more threads
        # make an epoch of 200 rows take 0.4 s instead of 5 ms.
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, __file__], cwd=PROJ_ROOT, text=True, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the CLI server did not start: {ready!r}")

    def _ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, args, workdir, hook=None):
        """Fork a run of the tool with `args`; its output goes to files in `workdir`."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        reply = self._ask({"op": "start", "args": [str(a) for a in args], "workdir": str(workdir), "hook": hook})
        return Child(pid=reply["pid"], workdir=workdir)

    def wait(self, child, timeout=60):
        """Wait for a child to end (killing it after `timeout` s); return how it ended."""
        status = self._ask({"op": "wait", "pid": child.pid, "timeout": timeout})["status"]
        return Finished(status, child.output(), (child.workdir / "stderr").read_text(errors="replace"))

    def run(self, args, workdir, timeout=60):
        """Run the tool to the end; return how it ended."""
        return self.wait(self.start(args, workdir), timeout)

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


_shared = None


def shared_server():
    """Return the one server of this test session, starting it on first use."""
    global _shared
    if _shared is None or _shared.process.poll() is not None:
        import atexit

        _shared = CliServer()
        atexit.register(_shared.close)
    return _shared


def wait_until(predicate, timeout=30, interval=0.005):
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)


# ---- the server side (runs in its own process) ------------------------------------------

def _pause(workdir):
    (Path(workdir) / PAUSED).touch()
    time.sleep(3600)  # until the test kills us


def _hook(name, workdir):
    """Patch this child so that it pauses at one moment of saving the regression bundle."""
    from safetensors.numpy import save as as_bytes

    from valence.model import bundlefile

    real_replace = os.replace

    def is_bundle(target):
        return str(target).endswith("regression.safetensors")

    def half_written_save(tensors, target, metadata=None):
        content = as_bytes(tensors, metadata=metadata)
        with open(target, "wb") as out:
            out.write(content[: len(content) // 2])
            out.flush()
        _pause(workdir)

    def replace(source, target, *args, **kwargs):
        if name == "before-replace" and is_bundle(target):
            _pause(workdir)
        real_replace(source, target, *args, **kwargs)
        if name == "after-replace" and is_bundle(target):
            _pause(workdir)

    if name == "mid-write":
        bundlefile.save_file = half_written_save
    elif name in ("before-replace", "after-replace"):
        os.replace = replace
    else:
        raise ValueError(f"unknown hook {name!r}")


def _child(request):
    """Run the tool in this forked child as its __main__ would; never return."""
    code = 1
    try:
        workdir = Path(request["workdir"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(workdir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(workdir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if request["hook"]:
            _hook(request["hook"], workdir)
        import musical_valence_predictor as cli

        sys.argv = ["musical_valence_predictor.py", *request["args"]]
        sys.exit(cli.main(request["args"]))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    except BaseException:  # what the interpreter does with an exception nobody caught
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.005)


def serve():
    """Import the tool once, then fork a child per request read from stdin."""
    sys.path.insert(0, str(PROJ_ROOT))
    import musical_valence_predictor  # noqa: F401  the costly imports, done once
    import torch._dynamo  # noqa: F401  what the first optimizer imports (1.3 s)
    import sklearn.metrics  # noqa: F401  what computing the test figures imports (0.7 s)
    import valence.training.commands  # noqa: F401
    import valence.model.predict_file  # noqa: F401

    print("ready", flush=True)
    running = set()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            running.add(pid)
            reply = {"pid": pid}
        else:
            running.discard(request["pid"])
            reply = {"status": _wait(request["pid"], request["timeout"])}
        print(json.dumps(reply), flush=True)
    for pid in running:  # the tests are over: no child outlives them
        _wait(pid, 0)


if __name__ == "__main__":
    serve()
