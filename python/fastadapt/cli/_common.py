"""What every command shares: user errors and the argument types."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import textwrap
from typing import Any, Callable, Iterator, List, NoReturn, Optional

__all__ = ["UserError", "user_input", "user_error", "Parser", "int_at_least", "float_above", "positive_int",
           "seed_arg", "optimizer_names", "optimizer_arg", "default_lr", "default_lrs_text"]


class UserError(Exception):
    """Bad input from the person at the command line (an argument, a data
    file, an output path): ``main`` prints it as one line and exits 2."""


@contextlib.contextmanager
def user_input() -> Iterator[None]:
    """Errors the library raises while it checks or reads what the user gave
    are user errors. Wrap only checking and loading, never training or
    measuring: an error there is a bug and keeps its traceback."""
    try:
        yield
    except (ValueError, TypeError, OSError) as err:
        raise user_error(err) from err


def user_error(err: Exception) -> UserError:
    if isinstance(err, OSError) and err.strerror:  # the file and the OS's reason, not "[Errno 2] ..."
        return UserError(f"{err.filename}: {err.strerror}" if err.filename else err.strerror)
    return UserError(str(err))


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help text between words only: optimizer names such as
    dadapt-adagrad must not break at their hyphen."""

    def _split_lines(self, text: str, width: int) -> List[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like the commands' own errors
    (argparse prints the whole usage first), and help text wrapped between
    words only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def float_above(minimum: float, inclusive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum:g}, "
                                             f"got {text}")
        return value

    return parse


positive_int = int_at_least(1)
seed_arg = int_at_least(0)


# ---- optimizers: every list the commands show comes from the registry ----------

def optimizer_names() -> List[str]:
    """The registered optimizer names (``fastadapt.optim.OPTIMIZERS``), sorted."""
    from ..optim import OPTIMIZERS

    return sorted(OPTIMIZERS)


def optimizer_arg(text: str) -> str:
    """``--optimizer NAME``: a registered name, case-insensitive (as ``fa.make_optimizer``)."""
    name = text.lower()
    if name not in optimizer_names():
        raise argparse.ArgumentTypeError(f"unknown optimizer {text!r}; expected one of "
                                         f"{', '.join(optimizer_names())}")
    return name


def default_lr(name: str) -> Optional[float]:
    """The ``lr`` default of the optimizer registered as ``name``, read from its
    constructor's signature (None if its ``lr`` has no default)."""
    from ..optim import OPTIMIZERS

    parameter = inspect.signature(OPTIMIZERS[name].__init__).parameters.get("lr")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return float(parameter.default)


def default_lrs_text() -> str:
    """``adadelta 1, adafactor 0.01, ...``: each optimizer's default lr, for help texts."""
    return ", ".join(f"{name} {lr:g}" for name in optimizer_names() if (lr := default_lr(name)) is not None)
