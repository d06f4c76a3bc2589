"""The devices of a fleet: backends made from names, checked to belong together.

A fleet's devices are given as a list: backend objects, or names. ``"sim"``
is a simulated device (each with its own seed, so that their noise differs),
``"cpu"`` the host's cores, ``"cuda"`` or ``"cuda:N"`` one GPU (the cuda
backend takes it as its ``device=``). Every device gets its own backend, and
so its own lanes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backends import make_backend
from ..backends.base import Backend
from ..errors import InvalidConfig

__all__ = ["make_devices"]


def make_devices(
    devices: Sequence[str | Backend], lanes: int | None, seed: int = 0
) -> tuple[list[Backend], list[str]]:
    """The backends for ``devices`` and a label for each (``"sim:0"``, ``"cuda:1"``).

    Raises :class:`InvalidConfig` for an empty list, an unknown name, a device
    given twice, or devices that keep different clocks (a simulated device's
    time is the event loop's, a real one's the wall clock: one fleet cannot
    compare completion times across both).
    """
    if isinstance(devices, str | Backend) or not isinstance(devices, Sequence):
        raise InvalidConfig(f"devices must be a list of backends or device names, got {devices!r}")
    if not devices:
        raise InvalidConfig("a fleet needs at least one device")
    backends: list[Backend] = []
    labels: list[str] = []
    seen: set[int | str] = set()
    for i, device in enumerate(devices):
        if isinstance(device, Backend):
            key: int | str = id(device)
            backend = make_backend(device, lanes)
            label = f"{backend.name}:{i}"
        elif isinstance(device, str):
            kind, _, index = device.partition(":")
            if kind == "sim" and not index:
                backend = make_backend("sim", lanes, seed=seed + i)
                key, label = f"sim:{i}", f"sim:{i}"
            elif kind == "cpu" and not index:
                backend = make_backend("cpu", lanes)
                key, label = f"cpu:{i}", f"cpu:{i}"
            elif kind == "cuda":
                backend = make_backend("cuda", lanes, device=device)
                key = label = device if index else "cuda"
            else:
                raise InvalidConfig(
                    f"unknown device {device!r}; give 'sim', 'cpu', 'cuda' or 'cuda:N', "
                    "or a Backend object"
                )
        else:
            raise InvalidConfig(f"a device is a name or a Backend, got {device!r}")
        if key in seen:
            raise InvalidConfig(f"device {device!r} is given twice: each device runs once")
        seen.add(key)
        backends.append(backend)
        labels.append(label)
    if len({b.owns_clock for b in backends}) > 1:
        raise InvalidConfig(
            "a fleet's devices must share one clock: do not mix simulated and real devices"
        )
    return backends, labels
