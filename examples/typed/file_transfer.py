"""File transfer: upload (client streaming) and download (server streaming) of real files, checked by SHA-256.

    python examples/typed/file_transfer.py [FILE]      # default: a 1 MiB file of random bytes
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, Protocol

import attrs

from rpcnet import RpcClient, RpcConfig, RpcServer, Service, ServiceError, StatusCode, rpcmethod
from rpcnet.errors import NotFoundError

CHUNK = 64 * 1024


@attrs.frozen
class Chunk:
    name: str
    data: bytes


@attrs.frozen
class Stored:
    name: str
    size: int
    sha256: str


@attrs.frozen
class Fetch:
    name: str


@attrs.define
class NoSuchFile(ServiceError, NotFoundError):
    code: ClassVar[StatusCode] = StatusCode.NOT_FOUND
    message_template: ClassVar[str] = "no file named {name!r}"
    name: str


class Files(Service, Protocol):
    async def upload(self, chunks: AsyncIterator[Chunk]) -> Stored:
        """Store the chunks as one file (every chunk names it); answer its size and SHA-256."""
        ...

    @rpcmethod(idempotent=True, errors=[NoSuchFile])
    def download(self, request: Fetch) -> AsyncIterator[Chunk]: ...


class FileStore(Files):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / Path(name).name  # no directories: names stay inside root

    async def upload(self, chunks: AsyncIterator[Chunk]) -> Stored:
        digest, size, name = hashlib.sha256(), 0, ""
        handle = None
        try:
            async for chunk in chunks:
                if handle is None:
                    name = chunk.name
                    handle = self._path(name).open("wb")
                handle.write(chunk.data)
                digest.update(chunk.data)
                size += len(chunk.data)
        finally:
            if handle is not None:
                handle.close()
        return Stored(name, size, digest.hexdigest())

    async def download(self, request: Fetch) -> AsyncIterator[Chunk]:
        path = self._path(request.name)
        if not path.is_file():
            raise NoSuchFile(name=request.name)
        with path.open("rb") as handle:
            while data := handle.read(CHUNK):
                yield Chunk(request.name, data)


async def read_chunks(path: Path) -> AsyncIterator[Chunk]:
    with path.open("rb") as handle:
        while data := handle.read(CHUNK):
            yield Chunk(path.name, data)


async def transfer(source: Path, workdir: Path) -> list[str]:
    config = RpcConfig(transport="memory")
    server = RpcServer(config)
    (workdir / "server").mkdir()
    server.add_service(FileStore(workdir / "server"))
    address = await server.start(("files", 0))
    try:
        async with RpcClient(address, config) as client:
            files = Files.client(client, timeout=60.0)
            stored = await files.upload(read_chunks(source))
            local = hashlib.sha256(source.read_bytes()).hexdigest()
            copy = workdir / f"downloaded-{source.name}"
            digest = hashlib.sha256()
            with copy.open("wb") as handle:
                async for chunk in files.download(Fetch(source.name)):
                    handle.write(chunk.data)
                    digest.update(chunk.data)
            out = [
                f"uploaded {stored.name}: {stored.size} bytes, sha256 {stored.sha256[:16]}... "
                f"({'matches' if stored.sha256 == local else 'DIFFERS from'} the local file)",
                f"downloaded {copy.stat().st_size} bytes, sha256 {'matches' if digest.hexdigest() == local else 'DIFFERS'}",
            ]
            try:
                async for _ in files.download(Fetch("missing.bin")):
                    pass
            except NoSuchFile as error:
                out.append(f"missing.bin -> {type(error).__name__}(name={error.name!r})")
            return out
    finally:
        await server.stop()


async def main(source: Path | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        if source is None:
            source = workdir / "random.bin"
            source.write_bytes(os.urandom(1024 * 1024))
        return await transfer(source, workdir)


if __name__ == "__main__":
    print("\n".join(asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))))
