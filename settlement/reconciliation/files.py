"""Bank statement files, kept in the database.

Any number of web and worker processes on any number of hosts share only the database and the
broker, so an uploaded statement is not kept on the disk of the host that took it: the upload
is written as it is read, in pieces of ``CHUNK`` bytes (``ReconFileChunk`` rows), in the same
transaction as its batch, and a worker or an export on any host reads it back as a stream, one
piece at a time. No process holds a whole file (up to ``RECON_UPLOAD_MAX_MB``) in memory.

The same table serves SQLite, the embedded default of a first run. On PostgreSQL the pieces
are written with a binary ``COPY`` and read back in binary, so their bytes cross the
connection as they are, and the server compresses them with LZ4 where it can (migration 0010).
"""

from __future__ import annotations

import hashlib
import io
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from uuid import UUID

from django.db import connection

from .models import ReconBatch, ReconFileChunk

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from psycopg import Copy

CHUNK = 2**20  # bytes of a file per row


class StatementFileTooLarge(Exception):
    """The upload passed the size limit it was written under."""


class StatementFileLost(Exception):
    """A batch's stored file is not whole: a piece is missing, or the pieces do not add up to
    the size recorded with the batch."""


class StatementFileWriter:
    """Store a batch's file as it is read: counted, hashed and written a piece at a time.

    Use it as a context manager inside the upload's transaction, and call :meth:`close` after
    the last byte; the transaction keeps the pieces or forgets them with the rest of the
    upload. On PostgreSQL the pieces go into one ``COPY`` that stays open while the upload is
    read: the server stores a piece while the next one is read and checked.
    """

    def __init__(self, batch_id: UUID, *, limit: int) -> None:
        self.batch_id = batch_id
        self.limit = limit
        self.size = 0
        self.pieces = 0
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self._copying: ExitStack | None = None
        self._copy: Copy | None = None

    def __enter__(self) -> StatementFileWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._copying is not None:  # ended with an error: the COPY is abandoned
            copying, self._copying, self._copy = self._copying, None, None
            copying.__exit__(*exc_info)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise StatementFileTooLarge
        self._digest.update(data)
        self._pending += data
        while len(self._pending) >= CHUNK:
            self._store(bytes(self._pending[:CHUNK]))
            del self._pending[:CHUNK]

    def close(self) -> None:
        """Store the rest; the file is then whole in the database (for this transaction)."""
        if self._pending:
            self._store(bytes(self._pending))
            self._pending.clear()
        if self._copying is not None:
            copying, self._copying, self._copy = self._copying, None, None
            copying.close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def _store(self, data: bytes) -> None:
        if connection.vendor == "postgresql":
            if self._copy is None:
                self._copying = ExitStack()
                cursor = self._copying.enter_context(connection.cursor())
                self._copy = self._copying.enter_context(
                    cursor.cursor.copy(
                        "COPY settlement_reconfilechunk (batch_id, seq, data)"
                        " FROM STDIN (FORMAT binary)"
                    )
                )
                self._copy.set_types(["uuid", "int4", "bytea"])
            self._copy.write_row((self.batch_id, self.pieces, data))
        else:
            ReconFileChunk.objects.create(batch_id=self.batch_id, seq=self.pieces, data=data)
        self.pieces += 1


class _Tee(io.RawIOBase):
    """The upload as it is read, every byte passed on to a writer on the way."""

    def __init__(self, stream: IO[bytes], writer: StatementFileWriter) -> None:
        super().__init__()
        self._stream = stream
        self._writer = writer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target):  # whole reads: a short one is not the end of the file
            data = self._stream.read(len(target) - filled)
            if not data:
                break
            self._writer.write(data)
            target[filled : filled + len(data)] = data
            filled += len(data)
        return filled


def statement_file_tee(stream: IO[bytes], writer: StatementFileWriter) -> io.BufferedReader:
    """Return ``stream`` to be read through, storing what is read with ``writer``."""
    return io.BufferedReader(_Tee(stream, writer), buffer_size=1 << 20)


class _Pieces(io.RawIOBase):
    """A stored file read back a piece at a time."""

    def __init__(self, batch_id: UUID, size: int) -> None:
        super().__init__()
        self._batch_id = batch_id
        self._size = size
        self._seq = 0
        self._read = 0
        self._piece = memoryview(b"")
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._at == len(self._piece):
            if self._read == self._size:
                return 0
            self._piece, self._at = memoryview(self._fetch()), 0
            self._seq += 1
        count = min(len(self._piece) - self._at, memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[:count] = self._piece[self._at : self._at + count]
        self._at += count
        self._read += count
        if self._read > self._size:
            raise StatementFileLost(f"the stored file of batch {self._batch_id} is too long")
        return count

    def _fetch(self) -> bytes:
        data: bytes | memoryview | None
        if connection.vendor == "postgresql":
            # In binary: as text every byte would travel as two hexadecimal digits.
            with (
                connection.cursor() as cursor,
                cursor.cursor.copy(
                    "COPY (SELECT data FROM settlement_reconfilechunk"
                    " WHERE batch_id = %s AND seq = %s) TO STDOUT (FORMAT binary)",
                    (self._batch_id, self._seq),
                ) as copy,
            ):
                copy.set_types(["bytea"])
                data = None
                for (piece,) in copy.rows():  # one row; read to the end of the COPY all the same
                    data = piece
        else:
            data = (
                ReconFileChunk.objects.filter(batch_id=self._batch_id, seq=self._seq)
                .values_list("data", flat=True)
                .first()
            )
        if not data:
            raise StatementFileLost(
                f"the stored file of batch {self._batch_id} has no piece {self._seq} "
                f"({self._read} of {self._size} bytes read)"
            )
        return bytes(data)


def statement_file_open(batch: ReconBatch) -> BinaryIO:
    """Return the batch's statement file, read from the database as it goes."""
    return statement_file_read(batch.pk, batch.file_size)


def statement_file_read(batch_id: UUID, size: int) -> BinaryIO:
    """Return the file of ``size`` bytes stored for ``batch_id``, read as it goes."""
    return io.BufferedReader(_Pieces(batch_id, size), buffer_size=1 << 20)
