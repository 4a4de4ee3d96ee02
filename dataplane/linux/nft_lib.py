"""A small in-process binding to libnftables (no process per update).

`Nft().run(script)` hands a whole script to the library, which applies it as
one atomic transaction: all of it or none of it.  The library works in the
network namespace of the calling thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from dataplane.errors import DataplaneError, KernelUnavailable

_LIB_NAMES = ("libnftables.so.1", "libnftables.so")
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4
# Protocols, priorities, symbols (ICMP types...) and times as numbers.
NFT_CTX_OUTPUT_NUMERIC_ALL = (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)


def _load() -> ctypes.CDLL:
    found = ctypes.util.find_library("nftables")
    for name in ([found] if found else []) + list(_LIB_NAMES):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise KernelUnavailable("libnftables is not installed (Debian: apt-get install nftables)")


class Nft:
    """One libnftables context.  Not thread-safe: use it from one thread."""

    def __init__(self) -> None:
        lib = self._lib = _load()
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not self._ctx:
            raise KernelUnavailable("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)

    def run(self, script: str) -> str:
        """Apply `script` as one transaction; returns nft's output.  Raises
        DataplaneError (with nft's message) if the kernel refused it, in
        which case nothing of it was applied."""
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise DataplaneError(f"nft refused the transaction: {err.strip()[:2000]}")
        return out

    def run_json(self, command: str, *, numeric: bool = False) -> str:
        """Run a listing command with JSON output (`nft -j`; `numeric`: every
        value as a number, `nft -j -n`).  Raises DataplaneError if nft
        refused it (e.g. the table does not exist)."""
        flags = self._lib.nft_ctx_output_get_flags(self._ctx)
        extra = NFT_CTX_OUTPUT_NUMERIC_ALL if numeric else 0
        self._lib.nft_ctx_output_set_flags(self._ctx, flags | NFT_CTX_OUTPUT_JSON | extra)
        try:
            return self.run(command)
        finally:
            self._lib.nft_ctx_output_set_flags(self._ctx, flags)

    def close(self) -> None:
        """Free the context."""
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None
