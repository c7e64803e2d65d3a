"""world/heldout_sets.py: the crowded sets hold 13-16 objects, the H.264 sets are the lossy ones, the training
world is untouched, and configs name the sets."""
import numpy as np
import pytest

from score_jax.world import generator, heldout_sets


@pytest.mark.parametrize("qtype", generator.STATIC_QUESTION_TYPES + ("appear_color", "change_color"))
def test_crowded_static_and_event_scenes_hold_13_to_16_objects(qtype):
  base = generator.WorldConfig()
  crowded = heldout_sets.world_of("crowded", base)
  for i in range(20):
    objects, question, _, _ = generator.build_scene(crowded, np.random.default_rng(i), qtype)
    assert 13 <= len(objects) <= 16, len(objects)
    assert question.startswith(generator.TEMPLATES[qtype].split("{")[0])
    plain, _, _, _ = generator.build_scene(base, np.random.default_rng(i), qtype)
    assert 4 <= len(plain) <= 7


def test_set_names_decide_scenes_and_lossiness():
  base = generator.WorldConfig()
  assert heldout_sets.world_of("clean", base) is base and heldout_sets.world_of("h264", base) is base
  assert heldout_sets.world_of("crowded_h264", base) == heldout_sets.world_of("crowded", base) != base
  assert [heldout_sets.is_lossy(s) for s in heldout_sets.HELDOUT_SETS] == [False, True, False, True]
  with pytest.raises(ValueError, match="crowdy"):
    heldout_sets.world_of("crowdy", base)


def test_configs_accept_every_set_name():
  from score_jax import config_checks
  from score_jax.testing.smoke import experiment_config, override
  config = override(experiment_config("smoke"), **{"eval.sets": heldout_sets.HELDOUT_SETS})
  assert config_checks.check_eval_config(config) == "world"


def test_policy_training_world_takes_the_distractor_range_and_rejects_bad_ones():
  from score_jax import config_checks, train
  from score_jax.testing.smoke import experiment_config, override
  config = experiment_config("smoke")
  assert train.training_world(config) == train.WORLD
  crowded = override(config, **{"data.world_distractors": (12, 15)})
  assert train.training_world(crowded) == heldout_sets.world_of("crowded", train.WORLD)
  assert len(train.train_source(crowded, "pseudo", llm=None)[0]["frames"]) == train.WORLD.frames
  for bad in [(12,), (2, 6), (6, 3), (12, 16)]:
    with pytest.raises(ValueError, match="config.data.world_distractors"):
      config_checks.validate_train_config(override(config, **{"data.world_distractors": bad}))
