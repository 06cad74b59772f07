"""Quiet orbax: one line per failed checkpoint read or write instead of pages of background-thread tracebacks.

`quiet_orbax_logs` drops orbax's INFO chatter and shortens its errors to one line (the caller reports the failure
with the fix); the asyncio "exception was never retrieved" records and the unraisable 'Event loop is closed'
errors that follow one failed orbax read or write are dropped, as is the "coroutine ... was never awaited" warning
of the reads it left unscheduled. `failure_cause` names the cause of a failure in
one line (and its errno: disk full is told apart). With ELECTRA_JAX_TRACEBACK=1 or --verbosity=1 everything
keeps its traceback.
"""

from __future__ import annotations

import logging as pylogging
import os
import re
import sys
import warnings


def _in_orbax(filename: str | None) -> bool:
    """Whether a source file belongs to the orbax package."""
    return f"{os.sep}orbax{os.sep}" in (filename or "")


class QuietOrbax(pylogging.Filter):
    """Drops orbax's INFO chatter; its errors keep one line (the caller reports the failure with the fix).

    With ELECTRA_JAX_TRACEBACK=1 or --verbosity=1 the errors keep their tracebacks. The last error line is
    remembered: an async save that fails inside orbax's threads may surface only as a missing step folder.
    """

    last_error: str | None = None

    def filter(self, record: pylogging.LogRecord) -> bool:
        from electra_jax import cli

        if record.name == "asyncio":  # orbax's abandoned tasks after a failed read or write: "never retrieved"
            return cli.show_tracebacks() or "never retrieved" not in record.getMessage() or not _from_orbax(record)
        if not _in_orbax(record.pathname):
            return True
        if record.levelno < pylogging.WARNING:
            return False
        if record.levelno >= pylogging.ERROR:
            message = cli.one_line(record.getMessage(), 300)
            QuietOrbax.last_error = message
            if not cli.show_tracebacks():
                record.msg, record.args, record.exc_info, record.exc_text = message, None, None, None
        return True


# Words of orbax's storage layer (tensorstore, its OCDBT database) in the text of a future it abandoned: such a
# future's exception comes from tensorstore's C++ and carries no orbax frame.
_STORAGE_WORDS = ("orbax", "tensorstore", "OCDBT database")


def _from_orbax(record: pylogging.LogRecord) -> bool:
    """Whether an asyncio record is about an orbax task or a tensorstore read it started: named in its text or in
    its exception's traceback."""
    if any(word in record.getMessage() for word in _STORAGE_WORDS):
        return True
    tb = record.exc_info[2] if record.exc_info else None
    while tb is not None:
        if _in_orbax(tb.tb_frame.f_code.co_filename):
            return True
        tb = tb.tb_next
    return False


def _drop_closed_loop_noise(previous_hook):
    """sys.unraisablehook ignoring the aftermath of one failed orbax read or write ('Event loop is closed', abandoned
    read coroutines: hundreds of tracebacks for one truncated file); the failure itself is reported on its own."""

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and _in_orbax(code.co_filename):
            return
        previous_hook(unraisable)

    hook.electra_jax_quiet = True
    return hook


# orbax's array reads that one failed read leaves unscheduled: when collected (at any later moment, e.g. during
# the next compile) Python warns "coroutine ... was never awaited" (seen for real: CI 2026-12-08, a truncated
# checkpoint). The warning names the coroutine only, so it is matched by orbax's name for it.
_ABANDONED_READS = r"coroutine '(\S+\.)?_read_array_index_and_device_put' was never awaited"


def quiet_orbax_logs() -> None:
    from electra_jax import cli

    for name in ("absl", "asyncio"):
        logger = pylogging.getLogger(name)
        if not any(isinstance(f, QuietOrbax) for f in logger.filters):
            logger.addFilter(QuietOrbax())
    if not getattr(sys.unraisablehook, "electra_jax_quiet", False):
        sys.unraisablehook = _drop_closed_loop_noise(sys.unraisablehook)
    if not cli.show_tracebacks() and not any(
            f[0] == "ignore" and getattr(f[1], "pattern", None) == _ABANDONED_READS for f in warnings.filters):
        warnings.filterwarnings("ignore", message=_ABANDONED_READS, category=RuntimeWarning)


def failure_cause(error: BaseException | None) -> tuple[str, int | None]:
    """(one-line cause, errno or None) of a failed orbax/tensorstore read or write."""
    from electra_jax import cli

    if error is None:
        return (QuietOrbax.last_error or "the save did not complete"), None
    root = cli.root_cause(error)
    if isinstance(root, OSError) and root.errno is not None:
        return f"{root.strerror}" + (f" ({root.filename})" if root.filename else ""), root.errno
    text = str(root) or type(root).__name__
    # tensorstore: '... Error writing local file "PATH": ... No space left on device [os_error_code='28']'
    code = re.search(r"os_error_code='?(\d+)", text)
    if code:
        file = re.search(r'local file "([^"]+)"', text)
        return os.strerror(int(code.group(1))) + (f" ({file.group(1)})" if file else ""), int(code.group(1))
    return cli.one_line(text.split("See full TensorStore details")[0], 300), None
