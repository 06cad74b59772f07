"""One of two processes in test_multihost.py's partial-read-failure checks (jax.distributed on localhost, gloo).

argv: PORT PROCESS_ID CHECKPOINT_DIR MODE. Both processes save steps 1 and 2 of a small array sharded over
both hosts' devices; then, with MODE "latest" or "direct", process 1 alone fails to read step 2's arrays (an
OSError raised inside orbax's array read, as a bad disk or a storage error on one host would), and both call
restore_latest ("latest"), or restore(2) ("direct", as finetune does). "none" injects nothing. Prints one
RESULT line of JSON: the step restored and this host's shards, or the error's type and message.
"""

import json
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np

port, pid, directory, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)

import orbax.checkpoint as ocp  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from electra_jax.checkpoints import Checkpointer  # noqa: E402

sharding = NamedSharding(Mesh(np.array(jax.devices()), ("d",)), P("d"))


def values(step: int) -> np.ndarray:
    return np.arange(32, dtype=np.float32).reshape(8, 4) + 100 * step


checkpointer = Checkpointer(directory, async_save=False)
for step in (1, 2):
    array = jax.make_array_from_callback((8, 4), sharding, lambda index, step=step: values(step)[index])
    checkpointer.save(step, {"w": array}, data_states={0: {"pos": step}, 1: {"pos": step}},
                      config=ml_collections.ConfigDict({"step": step}))
    checkpointer.wait_until_finished()

if mode != "none" and pid == 1:
    read = ocp.type_handlers.ArrayHandler.deserialize

    async def failing_on_step_2(self, infos, args=None):
        if any(Path(str(info.parent_dir)).parent.name == "2" for info in infos):
            raise OSError(5, "injected read error on host 1")
        return await read(self, infos, args)

    ocp.type_handlers.ArrayHandler.deserialize = failing_on_step_2

abstract = {"w": jax.ShapeDtypeStruct((8, 4), np.float32, sharding=sharding)}
try:
    if mode == "direct":
        step, (state, data, _) = 2, checkpointer.restore(2, abstract)
    else:
        step, state, data, _ = checkpointer.restore_latest(abstract)
    result = {"step": step, "data": data, "steps_left": checkpointer.all_steps(),
              "shards": [[list(s.index[0].indices(8)), np.asarray(s.data).tolist()]
                         for s in state["w"].addressable_shards]}
except Exception as error:  # reported to the test, which checks every host's outcome
    result = {"error": type(error).__name__, "message": str(error)}
print("RESULT " + json.dumps({"pid": pid, **result}), flush=True)
checkpointer.close()
