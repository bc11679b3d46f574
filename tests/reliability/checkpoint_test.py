"""Half-written checkpoints are never restored.

What orbax 0.12.8 does on a local filesystem (first test, so an orbax
upgrade that changes it is noticed): a save goes to
`<step>.orbax-checkpoint-tmp*` and is renamed when complete, after
`commit_success.txt` is written into it. Temporary directories are never
listed as steps, but *any* directory named like a step is, with or without
the commit file. `Checkpointer` therefore sets uncommitted step directories
aside and has orbax delete stale temporary directories.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rlcs_jax import checkpoint as ckpt_lib

META = {"model": {"d_model": 4}}


def _state(v):
  return {"w": jnp.full((4,), float(v)), "step": jnp.asarray(v)}


def _half_written(directory, good_step, bad_step, tmp_step):
  """A copied step cut short (no commit file) and an unfinished orbax save."""
  bad = os.path.join(directory, str(bad_step))
  shutil.copytree(os.path.join(directory, str(good_step)), bad)
  os.remove(os.path.join(bad, ckpt_lib.COMMIT_FILE))
  shutil.rmtree(os.path.join(bad, "state"))
  tmp = os.path.join(directory, f"{tmp_step}.orbax-checkpoint-tmp-123")
  os.makedirs(os.path.join(tmp, "state"))
  with open(os.path.join(tmp, "state", "junk"), "w") as f:
    f.write("partial")
  return bad, tmp


def _saved(directory, steps):
  ckpt = ckpt_lib.Checkpointer(directory)
  for s in steps:
    ckpt.save(s, _state(s), {"iterator": s}, dict(META, step=s), force=True)
  ckpt.close()


def test_orbax_lists_uncommitted_step_dirs_but_not_tmp_dirs(tmp_path):
  directory = str(tmp_path / "ckpt")
  _saved(directory, [3, 6])
  assert os.path.exists(os.path.join(directory, "6", ckpt_lib.COMMIT_FILE))
  _half_written(directory, good_step=6, bad_step=9, tmp_step=7)
  raw = ocp.CheckpointManager(directory, item_names=("state", "data", "meta"))
  assert list(raw.all_steps()) == [3, 6, 9]  # 9 has no commit file.
  raw.close()


def test_half_written_steps_are_never_restored(tmp_path):
  directory = str(tmp_path / "ckpt")
  _saved(directory, [3, 6])
  bad, tmp = _half_written(directory, good_step=6, bad_step=9, tmp_step=7)
  ckpt = ckpt_lib.Checkpointer(directory)
  assert ckpt.latest_step() == 6 and ckpt.all_steps() == [3, 6]
  state, data, step = ckpt.restore(ckpt_lib.abstract_like(_state(0)), META)
  assert step == 6 and data == {"iterator": 6}
  np.testing.assert_array_equal(state["w"], np.full(4, 6.0))
  # Set aside for inspection, not deleted; the step number is free again.
  assert not os.path.exists(bad) and os.path.isdir(bad + ".incomplete")
  ckpt.save(9, _state(9), {"iterator": 9}, dict(META, step=9), force=True)
  ckpt.close()
  assert not os.path.exists(tmp)  # orbax removed the unfinished save.
  ckpt = ckpt_lib.Checkpointer(directory)
  assert ckpt.latest_step() == 9
  ckpt.close()


def test_replicated_arrays_are_saved_without_per_device_slices(tmp_path):
  """One process: no eager per-replica slicing (orbax's replica-parallel
  writes) when saving arrays replicated over the 8 devices, so a save
  compiles nothing; the arrays restore unchanged."""
  mesh = jax.make_mesh((8,), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  # Shapes no other test saves: a slice program compiled earlier in this
  # process would hide a per-replica slice here.
  state = {
      "w": jax.device_put(jnp.arange(24.0 * 17).reshape(24, 17), replicated),
      "b": jax.device_put(jnp.arange(40.0), replicated),
  }
  compiles = []

  def listener(event, secs, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(secs)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(1, state, {}, dict(META, step=1), force=True)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert compiles == []
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      state,
  )
  restored, _, step = ckpt.restore(abstract, dict(META, step=1))
  ckpt.close()
  assert step == 1
  for k in state:
    np.testing.assert_array_equal(restored[k], state[k])
    assert restored[k].sharding == replicated
