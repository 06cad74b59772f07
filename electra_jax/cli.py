"""What every command-line tool does around its main: one-line errors and meaningful exit codes.

    if __name__ == "__main__":
        define_flags()
        cli.run(main)

A failure the user can act on (a bad config value, a missing or corrupt file, a full disk, a diverged run)
ends with one line on stderr, `TOOL: error: WHAT HAPPENED; WHAT TO DO`, and exit status 1. The full traceback
is printed too with `--verbosity=1` or `ELECTRA_JAX_TRACEBACK=1`. Any other exception is a bug in
electra_jax and keeps Python's traceback, so that it can be reported.

Exit statuses: 0 done; 1 an error (the line says which); 2 bad command-line usage (absl's own);
EXIT_PREEMPTED (42) stopped by SIGTERM or a TPU preemption notice after saving a checkpoint, so a scheduler
should run the same command again; EXIT_INTERRUPTED (130) stopped by Ctrl-C / SIGINT after saving a
checkpoint, which launchers do not resubmit.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

TRACEBACK_ENV = "ELECTRA_JAX_TRACEBACK"
EXIT_ERROR = 1
EXIT_PREEMPTED = 42
EXIT_INTERRUPTED = 130
# Expected failures: what the user did or what the machine did, never a bug in electra_jax.
USER_ERRORS = (ValueError, OSError, FloatingPointError)
MAX_MESSAGE_CHARS = 1000

# Advice for operating-system errors that reach the top without a message of our own.
_OS_ADVICE = {
    errno.ENOSPC: "free space on that disk or point the output flag (--workdir, --output_dir) at one with room",
    errno.EDQUOT: "free space within your disk quota or write somewhere else",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "the filesystem is read-only; write somewhere else",
    errno.EEXIST: "a file is in the way; remove it or choose another path",
    errno.ENOTDIR: "a file stands where a folder is expected; choose another path",
}


def show_tracebacks() -> bool:
    """True with ELECTRA_JAX_TRACEBACK=1 or absl's --verbosity >= 1."""
    if os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    from absl import logging

    return logging.get_verbosity() >= 1


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line (runs of whitespace collapsed), cut to `limit` characters."""
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a `raise ... from` / `during handling` chain."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def describe_os_error(error: OSError) -> str:
    """'No space left on device (/path); free space on that disk ...' for an OSError with an errno."""
    what = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    advice = _OS_ADVICE.get(error.errno)
    return f"{what}{where}" + (f"; {advice}" if advice else "")


def error_message(error: BaseException) -> str:
    """The one line printed for an expected failure."""
    if isinstance(error, OSError) and error.errno is not None and type(error).__str__ is OSError.__str__:
        return one_line(describe_os_error(error))
    return one_line(str(error) or type(error).__name__)


def guarded(main: Callable[..., Any], *args: Any, prog: str | None = None) -> Any:
    """Calls main(*args); an expected failure becomes `prog: error: ...` on stderr and exit status 1."""
    prog = prog or os.path.basename(sys.argv[0] or "electra_jax")
    try:
        return main(*args)
    except USER_ERRORS as error:
        if show_tracebacks():
            traceback.print_exc()
        print(f"{prog}: error: {error_message(error)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ERROR)


def run(main: Callable[[Sequence[str]], Any]) -> None:
    """absl's app.run(main) with one-line errors (see the module docstring)."""
    from absl import app

    prog = _prog_name()
    app.run(lambda argv: guarded(main, argv, prog=prog))


def _prog_name() -> str:
    """`pretrain` for `python -m electra_jax.pretrain`, `convert` for the package electra_jax.convert, else the
    script's name."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name:
        parts = [part for part in spec.name.split(".") if part != "__main__"]
        return parts[-1]
    return os.path.basename(sys.argv[0] or "electra_jax")
