"""Textures handed from a worker to its encoder processes through shared memory, not the pipe.

Why: a 2048² texture is 12 MB. Sent in an ``EncodeTask`` it is pickled into a bytes object, written
through the pipe, read back into another and unpickled: four copies of every pixel, on the CPU cores a
GPU worker needs to keep its device fed. Here the worker copies each texture (and the photo, when a
preview needs it) once into a ``multiprocessing.shared_memory`` block and sends its name; the encoder
maps the block and encodes straight from it.

Ownership: the encoder unlinks each block when its task is done (``release``), whatever the
outcome. Blocks are registered with multiprocessing's resource tracker, which every process of the
service shares (spawned children inherit it), so blocks of an encoder that dies mid-task are
unlinked when the service stops rather than left in /dev/shm.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from face3d.service.workers.protocol import EncodeTask

MIN_SHARED_BYTES = 1 << 20  # smaller arrays cost less in the pipe than a block's set-up


@dataclass(frozen=True)
class SharedArray:
    """Where an array waits in shared memory: the block's name, and the array's shape and type."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def put(cls, array: np.ndarray) -> SharedArray:
        """Copy ``array`` into a new block (the one copy of its pixels) and describe it."""
        block = SharedMemory(create=True, size=max(array.nbytes, 1))
        try:
            np.ndarray(array.shape, array.dtype, buffer=block.buf)[...] = array
        except BaseException:
            block.close()
            block.unlink()
            raise
        block.close()  # the mapping, not the block: it lives until the encoder unlinks it
        return cls(block.name, tuple(array.shape), array.dtype.str)


_PLACEHOLDER = np.zeros((0, 0, 3), np.uint8)  # what a shared texture leaves in the pickled task


@dataclass
class SharedTask:
    """An EncodeTask whose large arrays wait in shared memory: ``textures[k]`` is face k's texture
    (None: it travels in the task), ``image`` the photo (None: in the task, or not sent)."""

    task: EncodeTask
    textures: list[SharedArray | None]
    image: SharedArray | None

    @classmethod
    def share(cls, task: EncodeTask) -> SharedTask:
        """Move the task's textures and photo of at least MIN_SHARED_BYTES into shared memory; the
        task sent holds placeholders (the worker's own Reconstruction is left as it was)."""
        textures: list[SharedArray | None] = []
        image: SharedArray | None = None
        try:
            for face in task.rec.faces:
                textures.append(_put_large(face.texture))
            image = None if task.image is None else _put_large(task.image)
        except BaseException:
            cls(task, textures, image).discard()  # the blocks made so far
            raise
        faces = [
            dataclasses.replace(face, texture=_PLACEHOLDER) if shared else face
            for face, shared in zip(task.rec.faces, textures, strict=True)
        ]
        light = dataclasses.replace(
            task,
            rec=dataclasses.replace(task.rec, faces=faces),
            image=None if image else task.image,
        )
        return cls(light, textures, image)

    def receive(self) -> tuple[EncodeTask, list[SharedMemory]]:
        """In the encoder: the task with its arrays mapped back in (views of the blocks), and the
        blocks, for ``release`` once the task is encoded and dropped."""
        mapped: list[SharedMemory] = []

        def view(shared: SharedArray) -> np.ndarray:
            block = SharedMemory(name=shared.name)
            mapped.append(block)
            return np.ndarray(shared.shape, np.dtype(shared.dtype), buffer=block.buf)

        task = self.task
        faces = [
            dataclasses.replace(face, texture=view(shared)) if shared else face
            for face, shared in zip(task.rec.faces, self.textures, strict=True)
        ]
        image = view(self.image) if self.image else task.image
        rec = dataclasses.replace(task.rec, faces=faces)
        return dataclasses.replace(task, rec=rec, image=image), mapped

    def discard(self) -> None:
        """Unlink the blocks of a task that was never sent (its encoder is gone)."""
        for shared in [*self.textures, self.image]:
            if shared is not None:
                _unlink(shared.name)


def release(blocks: list[SharedMemory]) -> None:
    """Unmap and unlink a received task's blocks (drop the task first, so no view pins a mapping)."""
    for block in blocks:
        with contextlib.suppress(BufferError):  # a view outlived the task: its mapping stays a while
            block.close()
        block.unlink()  # the name goes now either way


def _put_large(array: np.ndarray) -> SharedArray | None:
    """``array`` in a block of its own if it is large enough to pay for one, else None (it travels in
    the task)."""
    return SharedArray.put(array) if array.nbytes >= MIN_SHARED_BYTES else None


def _unlink(name: str) -> None:
    try:
        block = SharedMemory(name=name)
    except FileNotFoundError:
        return
    block.close()
    block.unlink()
