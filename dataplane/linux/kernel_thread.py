"""One thread that does all of the dataplane's kernel work.

Network namespaces are per thread: the thread may enter another namespace
(`netns`, a path such as /run/netns/node-1) before it opens its netlink
socket and nftables context, while the rest of the agent, its connection to
typha included, stays where it is.  Every call runs on this thread, in order.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from dataplane.errors import KernelUnavailable

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at `path`.
    Raises KernelUnavailable if that is not possible."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise KernelUnavailable(f"network namespace {path}: {exc.strerror}") from exc
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise KernelUnavailable(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class KernelThread:
    """Runs callables on one thread (in `netns`, if given); `call` waits for
    the result and re-raises the callable's exception."""

    def __init__(self, netns: str | None = None, name: str = "dataplane") -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._stopped = False
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(netns, started), name=name)
        self._thread.daemon = True
        self._thread.start()
        started.result()  # raises KernelUnavailable if the namespace could not be entered

    def _run(self, netns: str | None, started: Future[None]) -> None:
        try:
            if netns:
                enter_netns(netns)
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
        self._stopped = True
        # Calls queued behind the stop (another thread's) fail instead of
        # waiting forever.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(KernelUnavailable("the dataplane thread has stopped"))

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the kernel thread and return its result."""
        if self._stopped:
            raise KernelUnavailable("the dataplane thread has stopped")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def close(self) -> None:
        """Stop the thread after the calls already queued."""
        self._jobs.put(None)
        self._thread.join(10)
