"""How a failed external tool is reported: its exit status or the signal that killed it.

Why: a tool that dies often leaves no output at all (a YoWASP tool killed by the
out-of-memory killer, a simulator that crashes), and "yosys failed" alone does
not tell a user whether to fix the design, free memory or re-run `make setup`.
Every place GRACE runs yosys, nextpnr, a packer, a simulator or the programmer
reports through here, so each failure reads the same way: one line with what
failed, how (status or signal), where, its last words and what to do; then the
tail of its output. Standard library only, so every layer may import it.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Lines of a failed tool's output kept in the message (after its first line).
TAIL_LINES = 20
_TAIL_CHARS = 3000


class ToolFailed(RuntimeError):
    """An external tool exited non-zero, was killed by a signal, or could not start."""

    def __init__(self, message: str, returncode: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode  # None: it never started
        self.output = output

    def __reduce__(self) -> tuple[type[ToolFailed], tuple[str, int | None, str]]:
        # Board builds run in worker processes; the attributes must survive pickling.
        return (type(self), (str(self), self.returncode, self.output))


def _signal_name(number: int) -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def describe_exit(returncode: int) -> str:
    """'exited with status 3' or 'was killed by signal SIGKILL', as a subprocess reports it."""
    if returncode < 0:
        name = _signal_name(-returncode)
        return f"was killed by signal {name or -returncode}"
    text = f"exited with status {returncode}"
    # A shell (Amaranth's build script) reports a program killed by signal N as 128 + N.
    name = _signal_name(returncode - 128) if 128 < returncode < 128 + 65 else None
    if name:
        text += f" (128 + {returncode - 128}: how a shell reports a program killed by {name})"
    return text


def _killed_by(returncode: int) -> str | None:
    if returncode < 0:
        return _signal_name(-returncode)
    if 128 < returncode < 128 + 65:
        return _signal_name(returncode - 128)
    return None


def default_advice(returncode: int, advice: str | None = None) -> str:
    """What a user can do: about the signal if one killed the tool, else `advice` if given."""
    killer = _killed_by(returncode)
    if killer == "SIGKILL":
        return (
            "something killed it from outside, most often the out-of-memory killer: "
            "free memory or run fewer jobs at once (pytest -n 1), then retry"
        )
    if killer in ("SIGINT", "SIGTERM", "SIGHUP"):
        return "it was interrupted; run it again"
    if killer is not None:
        return "it crashed; run `make setup` (re-checks the tools) and retry"
    return advice or "run the same command by hand in that directory to see all of its output"


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last `lines` non-blank lines of `text`, at most a few thousand characters."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-_TAIL_CHARS:]


def failure_message(
    tool: str,
    returncode: int,
    *,
    where: str | Path | None = None,
    output: str = "",
    captured: bool = True,
    log: str | Path | None = None,
    advice: str | None = None,
) -> str:
    """One line saying what failed, how, where and what to do; then its output's tail.

    `advice` is what to do when the tool exited with a status; a signal brings its own.

    The first line stands on its own (the CLI prints only that line), so it carries
    the tool's last line of output; the lines after it give the tail for logs and tests.
    """
    last = tail(output, 1)
    if last:
        said = f"its last output: {last.strip()[:300]!r}"
    elif captured:
        said = "it printed nothing"
    else:
        said = "its output is above"
    parts = [f"{tool} {describe_exit(returncode)}"]
    if where is not None:
        parts.append(f"in {where}")
    line = " ".join(parts) + f"; {said}"
    if log is not None:
        line += f"; log {log}"
    line += f"; {default_advice(returncode, advice)}"
    rest = tail(output)
    if rest and "\n" in rest:
        line += f"\nlast lines of {tool}'s output:\n{rest}"
    return line


def run_tool(
    command: Sequence[str],
    *,
    cwd: str | Path | None = None,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    log: str | Path | None = None,
    advice: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `command`; on failure raise `ToolFailed` naming its exit status or signal.

    `name` is what the message calls the tool (default: the command's first word);
    with `capture`, stdout and stderr are returned and their tail goes into the
    message; without, the tool writes to the terminal (a programmer's progress).
    """
    tool = name or Path(command[0]).name
    where = cwd if cwd is not None else Path.cwd()
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=None if env is None else dict(env),
            capture_output=capture,
            text=True,
            errors="replace",
            check=False,
        )
    except FileNotFoundError:
        raise ToolFailed(f"{tool} not found (looked for {command[0]}); run `make setup`") from None
    except PermissionError as exc:
        raise ToolFailed(f"{tool} could not start ({exc}); run `make setup`") from None
    if done.returncode != 0:
        output = (done.stdout or "") + (done.stderr or "")
        message = failure_message(
            tool,
            done.returncode,
            where=where,
            output=output,
            captured=capture,
            log=log,
            advice=advice,
        )
        raise ToolFailed(message, done.returncode, output)
    return done
