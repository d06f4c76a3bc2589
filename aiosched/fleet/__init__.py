"""Several devices behind one front: a :class:`Fleet` of schedulers, one per device.

::

    async with Fleet(["cuda:0", "cuda:1"], lanes=2) as fleet:   # or Fleet.sim(8)
        fleet.register("resnet50", model, max_batch_size=8, input_shape=(3, 224, 224))
        await fleet.ready()
        y = await fleet.infer("resnet50", x, deadline=0.05)

A fleet has the user API of :class:`~aiosched.Scheduler` (``async with``,
``register``, ``ready``, ``infer``, ``snapshot``, ``aclose``) and is built by
composition: each device gets a whole, ordinary ``Scheduler`` with its own
backend, lanes, policy and predictor. Devices differ (another GPU model,
another clock speed, another neighbour), so each learns its own latencies;
and the dispatcher, the policy and the predictor, which hold the subtle
guarantees (every request resolved exactly once, earliest deadline first,
early rejection), stay exactly as they are tested, with one device's state
each. What is new is only what lies between devices:

- **routing** (:mod:`.routing`): a request goes to the replica with the
  earliest predicted completion that meets its deadline, else to the
  least-loaded one, whose admission then decides. Once a device has admitted
  a request it keeps it: nothing is moved between devices or reordered.
- **placement** (:mod:`.rebalance`): each model starts on ``replicas``
  devices (default: all of them, which loses nothing while the load is
  unknown), and a periodic rebalance grows the replicas of a model whose
  devices run hot onto the least-loaded devices and shrinks those of one
  spread wider than its load needs.
- **statistics** (:mod:`.snapshot`): every device's snapshot, and totals.

The pieces: :mod:`.devices` (backends from names), :mod:`.config` (settings),
:mod:`.core` (the Fleet), :mod:`.replicas` (adding, releasing, losing and
unregistering a model's replicas).
"""

from __future__ import annotations

from .core import Fleet
from .rebalance import Move
from .snapshot import FleetSnapshot

__all__ = ["Fleet", "FleetSnapshot", "Move"]
