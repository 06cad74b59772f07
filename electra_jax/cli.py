"""What every command-line tool does around its main: one-line errors and meaningful exit codes.

    if __name__ == "__main__":
        define_flags()
        cli.run(main)

A failure the user can act on (a bad config value, a missing or corrupt file, a full disk, a diverged run)
ends with one line on stderr, `TOOL: error: WHAT HAPPENED; WHAT TO DO`, and exit status 1. The full traceback
is printed too with `--verbosity=1` or `ELECTRA_JAX_TRACEBACK=1`. Any other exception is a bug in
electra_jax and keeps Python's traceback, so that it can be reported.

Exit statuses: 0 done; 1 an error (the line says which); 2 bad command-line usage (a bad flag value, an
unknown --config size or field, a missing required flag: one line too, from `parse_flags`);
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


def did_you_mean(given: Sequence[str], choices: Sequence[str]) -> str:
    """" (did you mean 'to_hf'?)" for a mistyped command among `given`, else ""."""
    import difflib

    for word in given:
        close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return ""


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
    app.run(lambda argv: guarded(main, argv, prog=prog), flags_parser=lambda argv: parse_flags(argv, prog))


def parse_flags(argv: Sequence[str], prog: str) -> list[str]:
    """absl's flag parsing, with a bad --config (an unknown size, a field that does not exist, no --config at
    all) reported in one line and exit status 2, instead of ml_collections' traceback."""
    from absl import flags

    try:
        rest = flags.FLAGS(list(argv))
        unreadable = _unreadable_config_file(argv)
        if unreadable is None:
            return rest
        message = unreadable
    except (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError) as error:
        if show_tracebacks():
            traceback.print_exc()
        # An unreadable --config file surfaces at the first --config.* override, as that override's error (an
        # OSError with ml_collections' traceback in it): name the file instead.
        message = _missing_config_file(argv) or _unreadable_config_file(argv) or flag_error_message(error, argv)
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    print(f"{prog}: pass --helpshort to see the flags", file=sys.stderr, flush=True)
    sys.exit(2)


def _missing_config_file(argv: Sequence[str]) -> str | None:
    """The message for a --config path that does not exist, else None."""
    from absl import flags

    value = _config_value(argv)
    path = value.split(":", 1)[0] if value else ""
    if not path or "://" in path or os.path.exists(path) or "config" not in flags.FLAGS:
        return None
    return (f"--config={value}: cannot read the config file: there is no file {path} (relative paths start at "
            f"{os.getcwd()}) (--config: {flags.FLAGS['config'].help})")


def _unreadable_config_file(argv: Sequence[str]) -> str | None:
    """The message for a --config file that could not be read (ml_collections defers that error to the first use
    of the config, with a garbled message), else None."""
    from absl import flags

    try:
        if "config" not in flags.FLAGS or type(flags.FLAGS["config"].value).__name__ != "_ErrorConfig":
            return None
    except Exception:  # noqa: BLE001 - the flag could not even be read: not this case
        return None
    missing = _missing_config_file(argv)
    if missing:
        return missing
    what = str(root_cause(object.__getattribute__(flags.FLAGS["config"].value, "_error")))
    return (f"--config={_config_value(argv) or ''}: cannot read the config file: {what} (--config: "
            f"{flags.FLAGS['config'].help})")


def flag_error_message(error: BaseException, argv: Sequence[str]) -> str:
    """What went wrong with the command line, without the tracebacks ml_collections puts in its messages."""
    from absl import flags

    inner = root_cause(error)
    if isinstance(inner, (KeyError, AttributeError)) and not isinstance(error, flags.Error):
        return _unknown_field_message(inner, argv)
    text = str(error)
    if "Traceback (most recent call last)" in text:  # `flag --config=X: Error whilst parsing ...` + a traceback
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        flag = lines[0].split(": Error whilst", 1)[0].removeprefix("flag ")
        last = re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", lines[-1])
        text = f"{flag}: {last}"
    if "before a value for --config was specified" in text:
        text += "; put --config=PATH:ARG before the --config.* overrides"
    if "must have a value other than None" in text:
        name = re.search(r"--(\w+)", text)
        help_text = flags.FLAGS[name.group(1)].help if name and name.group(1) in flags.FLAGS else ""
        text += f" ({help_text})" if help_text else ""
    return text


def _unknown_field_message(error: BaseException, argv: Sequence[str]) -> str:
    """`--config.train.batchsize=8: config.train has no field 'batchsize' (did you mean 'batch_size'?) ...`."""
    import difflib

    key = str(error.args[0]).split("\n")[0].strip("'\"") if error.args else ""
    override = next((a for a in argv if a.startswith("--config.") and f".{key}" in a.split("=", 1)[0]), None)
    if override is None:
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    path = override.split("=", 1)[0].removeprefix("--config.").split(".")
    section_path = path[:path.index(key)] if key in path else path[:-1]
    config = _load_config_flag(argv)
    section = config
    for part in section_path:
        section = section.get(part) if hasattr(section, "get") else None
    where = ".".join(["config", *section_path])
    message = f"{override}: {where} has no field {key!r}"
    if hasattr(section, "keys"):
        fields = sorted(section.keys())
        close = difflib.get_close_matches(key, fields, n=1)
        elsewhere = [f"config.{name}.{key}" for name in sorted(config.keys())
                     if hasattr(config[name], "keys") and key in config[name]] if config is not None else []
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif elsewhere:
            message += f" (it is {elsewhere[0]})"
        message += f"; the fields of {where}: {', '.join(fields)}"
    return message


def _config_value(argv: Sequence[str]) -> str | None:
    """What --config=VALUE (or --config VALUE, which absl accepts too) gives on the command line; None without one."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _load_config_flag(argv: Sequence[str]):
    """The config that --config names (flag parsing stopped before loading it), or None if it cannot be loaded."""
    from electra_jax import config as config_lib

    value = _config_value(argv)
    try:
        return config_lib.load(value) if value else None
    except Exception:  # noqa: BLE001  (only for a better message; the error being reported stays the same)
        return None


def _prog_name() -> str:
    """`pretrain` for `python -m electra_jax.pretrain`, `convert` for the package electra_jax.convert, else the
    script's name."""
    main_module = sys.modules.get("__main__")
    spec = getattr(main_module, "__spec__", None)
    if spec is not None and spec.name:
        parts = [part for part in spec.name.split(".") if part != "__main__"]
        return parts[-1]
    return os.path.basename(sys.argv[0] or "electra_jax")
