"""Driving ``rpcnet_call`` wrappers across an asynchronous call."""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence

from ..calls import CallInfo

log = logging.getLogger("rpcnet.plugins")


def start_wrappers(wrappers: Sequence[Callable[..., Generator[None, None, None]]], info: CallInfo) -> list[Generator[None, None, None]]:
    """Run each wrapper up to its ``yield``; a failing wrapper is logged and skipped."""
    started = []
    for wrapper in wrappers:
        try:
            generator = wrapper(call=info)
            next(generator)
        except Exception:
            log.exception("rpcnet_call wrapper %r failed at call start", wrapper)
            continue
        started.append(generator)
    return started


def end_wrappers(generators: list[Generator[None, None, None]], info: CallInfo) -> None:
    """Resume each wrapper after its ``yield``, innermost first."""
    for generator in reversed(generators):
        try:
            next(generator)
        except StopIteration:
            continue
        except Exception:
            log.exception("rpcnet_call wrapper failed at call end (%s)", info.method)
        else:
            log.error("rpcnet_call wrapper %r yielded more than once", generator)
            generator.close()


