"""Load Hugging Face checkpoints (config.json + *.safetensors) straight into sharded JAX parameters.

The load is driven by *our* parameter tree: for every leaf, a small rename table gives the HF tensor
name, the layout is converted (Linear [out, in] -> Dense [in, out]; Conv [O, I, kh, kw] -> [kh, kw, I, O];
per-layer tensors stacked on a leading `layers` axis), and `jax.make_array_from_callback` asks each
device only for its own shard, read from a memory map. No device ever holds a whole parameter that
is meant to be sharded.

Checkpoints saved by different transformers versions name the same tensors differently
(`vision_tower.vision_model.*` vs `vision_tower.*`, `language_model.model.*` vs
`model.language_model.*`); each component lists its candidate prefixes and the first one present wins.

Every tensor of the checkpoint must be read by some parameter, or be on a documented list of tensors
the models here do not use (`VISION_UNUSED`, `TEXT_UNUSED`, `SIGLIP_TEXT_TOWER`); anything else is a
`CheckpointError` naming the leftovers. A config.json that says fewer layers than the files hold thus
fails instead of silently dropping weights.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models import sharding as shd
from score_jax.models.attention import DEFAULT_IMPLEMENTATION
from score_jax.models.configs import ConfigError, LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.qwen2 import Qwen2
from score_jax.models.safetensors_io import CheckpointError, SafetensorsFolder
from score_jax.models.siglip import SiglipVisionTower

# (our module path regex, HF module path template); "{i}" is the layer index of stacked layers.
TEXT_RENAMES = (
    (r"^layers/(.+)$", r"layers.{i}.\1"),
    (r"^(embed_tokens|norm|lm_head)$", r"\1"),
)
VISION_RENAMES = (
    (r"^(patch_embedding|position_embedding)$", r"embeddings.\1"),
    (r"^layers/(q_proj|k_proj|v_proj|out_proj)$", r"encoder.layers.{i}.self_attn.\1"),
    (r"^layers/(fc1|fc2)$", r"encoder.layers.{i}.mlp.\1"),
    (r"^layers/(layer_norm[12])$", r"encoder.layers.{i}.\1"),
    (r"^post_layernorm$", r"post_layernorm"),
)
PROJECTOR_RENAMES = ((r"^(linear_[12])$", r"\1"),)
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}

# Checkpoint tensors no parameter reads, by design: (regex on the name after the component's prefix, why).
VISION_UNUSED = (
    (r"^post_layernorm\.", "SigLIP's final LayerNorm: LLaVA-OneVision reads the encoder's "
     "hidden_states[vision_feature_layer], taken before it (read only with use_post_layernorm=True)"),
    (r"^head\.", "SigLIP's attention-pooling head (vision_use_head): one pooled vector per image for the "
     "contrastive loss; the visual tokens here are the per-patch features"),
)
TEXT_UNUSED = (
    (r"(^|\.)rotary_emb\.inv_freq$", "RoPE inverse frequencies, a buffer some exporters save; recomputed "
     "from rope_theta"),
)
# Whole-name regexes for the other half of a full SigLIP (SiglipModel) checkpoint: load_siglip_vision
# reads the vision tower only.
SIGLIP_TEXT_TOWER = (
    (r"^text_model\.", "SigLIP's text tower"),
    (r"^logit_(scale|bias)$", "SigLIP's contrastive-loss temperature and bias"),
)


@dataclasses.dataclass(frozen=True)
class Component:
  """One sub-tree of our params and where its tensors live in an HF checkpoint."""
  our_prefix: str               # "" or e.g. "language_model"
  hf_prefixes: tuple[str, ...]  # candidates, first present wins
  renames: tuple
  probe: str                    # an HF name (after the prefix) that must exist for a prefix to match
  unused: tuple = ()            # (regex, why) of its tensors that no parameter reads
  config_section: str | None = None  # config.json section whose num_hidden_layers may exceed the
                                     # layers we load (vision_feature_layer < -1); None: must match
  has_lm_head: bool = False     # owns the (loose) lm_head tensor


LLAVA_COMPONENTS = (
    Component("vision_tower", ("vision_tower.vision_model.", "model.vision_tower.vision_model.",
                               "vision_tower.", "model.vision_tower."), VISION_RENAMES,
              "embeddings.patch_embedding.weight", VISION_UNUSED, "vision_config"),
    Component("multi_modal_projector", ("multi_modal_projector.", "model.multi_modal_projector."),
              PROJECTOR_RENAMES, "linear_1.weight"),
    Component("language_model", ("language_model.model.", "model.language_model.", "model."),
              TEXT_RENAMES, "embed_tokens.weight", TEXT_UNUSED, has_lm_head=True),
)
QWEN2_COMPONENTS = (Component("", ("model.", ""), TEXT_RENAMES, "embed_tokens.weight", TEXT_UNUSED,
                              has_lm_head=True),)
SIGLIP_COMPONENTS = (Component("", ("vision_model.", "vision_tower.vision_model.", ""), VISION_RENAMES,
                               "embeddings.patch_embedding.weight", VISION_UNUSED, "vision_config"),)
LM_HEAD_PREFIXES = ("", "language_model.", "model.")
NEWLINE_NAMES = ("image_newline", "model.image_newline")


@dataclasses.dataclass(frozen=True)
class TensorSource:
  name: str                    # HF name, with "{i}" for stacked layers
  transform: str               # "linear", "conv" or "none"
  stacked: bool
  component: str | None = None  # our prefix of the component it belongs to (None: image_newline)

  def names(self, shape: tuple[int, ...]) -> list[str]:
    """The checkpoint tensors read for our parameter of `shape`."""
    return [self.name.format(i=i) for i in range(shape[0])] if self.stacked else [self.name]


def parse_config(folder: str, parse):
  """`parse(config_dict)`, with errors prefixed by the config file they came from."""
  try:
    return parse(read_config(folder))
  except ConfigError as e:
    raise ConfigError(f"{os.path.join(folder, 'config.json')}: {e}") from None


def read_config(folder: str) -> dict:
  path = os.path.join(folder, "config.json")
  if not os.path.isdir(folder):
    raise CheckpointError(f"Checkpoint folder {folder!r} does not exist.")
  if not os.path.exists(path):
    raise CheckpointError(f"{path} is missing: a Hugging Face checkpoint folder needs config.json.")
  with open(path) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{path} is not valid JSON ({e}).") from e


def _resolve_prefix(ckpt: SafetensorsFolder, comp: Component) -> str:
  for p in comp.hf_prefixes:
    if p + comp.probe in ckpt:
      return p
  raise CheckpointError(
      f"Checkpoint {ckpt.folder!r} has no tensor {comp.probe!r} under any of the prefixes "
      f"{list(comp.hf_prefixes)} (for our '{comp.our_prefix or 'model'}'); is it the right architecture?")


@dataclasses.dataclass(frozen=True)
class NameScheme:
  """Where each component lives in one checkpoint: resolved prefixes plus the two loose tensors."""
  prefixes: dict          # our component prefix -> HF prefix
  lm_head_prefix: str = ""
  newline_name: str = "image_newline"


def resolve_scheme(ckpt: SafetensorsFolder, components: Sequence[Component]) -> NameScheme:
  lm_head = next((p for p in LM_HEAD_PREFIXES if p + "lm_head.weight" in ckpt), LM_HEAD_PREFIXES[0])
  newline = next((n for n in NEWLINE_NAMES if n in ckpt), NEWLINE_NAMES[0])
  return NameScheme({c.our_prefix: _resolve_prefix(ckpt, c) for c in components}, lm_head, newline)


def tensor_source(path: str, components: Sequence[Component], scheme: NameScheme) -> TensorSource:
  """HF tensor name and layout conversion for our parameter at `path`."""
  if path == "image_newline":
    return TensorSource(scheme.newline_name, "none", False)
  module, leaf = path.rsplit("/", 1)
  for comp in components:
    rest = module
    if comp.our_prefix:
      if not module.startswith(comp.our_prefix + "/"):
        continue
      rest = module[len(comp.our_prefix) + 1:]
    for pattern, template in comp.renames:
      m = re.match(pattern, rest)
      if not m:
        continue
      hf_module = m.expand(template).replace("/", ".")
      prefix = scheme.lm_head_prefix if hf_module == "lm_head" else scheme.prefixes[comp.our_prefix]
      transform = "none"
      if leaf == "kernel":
        transform = "conv" if "patch_embedding" in hf_module else "linear"
      return TensorSource(prefix + hf_module + "." + LEAF_NAMES[leaf], transform, "{i}" in hf_module,
                          comp.our_prefix)
  raise CheckpointError(f"No checkpoint name mapping for our parameter {path!r}.")


def _convert(x: np.ndarray, transform: str) -> np.ndarray:
  if transform == "linear":
    return x.T
  if transform == "conv":
    return x.transpose(2, 3, 1, 0)
  return x


def _reader(ckpt: SafetensorsFolder, src: TensorSource, shape: tuple[int, ...], dtype, path: str
            ) -> Callable:
  """Validates shapes up front and returns the `make_array_from_callback` shard reader."""
  names = src.names(shape)
  want = shape[1:] if src.stacked else shape
  for name in names:
    if name not in ckpt:
      raise CheckpointError(f"Tensor {name!r} (for our {path!r}) is missing from {ckpt.folder!r}.")
    got = _convert(np.empty(ckpt.shape(name), np.uint8), src.transform).shape
    if got != tuple(want):
      raise CheckpointError(f"{ckpt.file_of(name)}: tensor {name!r} has shape {ckpt.shape(name)}; "
                            f"our {path!r} needs {tuple(want)} after layout conversion.")

  def read(index):
    if src.stacked:
      layers = range(*index[0].indices(shape[0]))
      parts = [_convert(ckpt.get(names[i]), src.transform)[index[1:]] for i in layers]
      out = np.stack(parts) if parts else np.zeros((0,) + want, dtype)
    else:
      out = _convert(ckpt.get(names[0]), src.transform)[index]
    return np.asarray(out, dtype=dtype)
  return read


def _raw_config(folder: str) -> dict:
  return read_config(folder) if os.path.exists(os.path.join(folder, "config.json")) else {}


def _skipped_layers(ckpt: SafetensorsFolder, components: Sequence[Component], plan: dict) -> set[str]:
  """Tensors of the layers config.json has but we do not run (those after `vision_feature_layer`)."""
  by_prefix = {c.our_prefix: c for c in components}
  raw, out = None, set()
  for src, shape in plan.values():
    comp = by_prefix.get(src.component)
    if not src.stacked or comp is None or comp.config_section is None:
      continue
    raw = _raw_config(ckpt.folder) if raw is None else raw
    n = raw.get(comp.config_section, raw).get("num_hidden_layers")
    if isinstance(n, int):
      out.update(src.name.format(i=i) for i in range(shape[0], n))
  return out


def _same_tensor(ckpt: SafetensorsFolder, a: str, b: str, rows: int = 4096) -> bool:
  x, y = ckpt.get(a), ckpt.get(b)
  if x.shape != y.shape:
    return False
  return all(np.array_equal(x[i:i + rows], y[i:i + rows]) for i in range(0, max(len(x), 1), rows))


def _tied_lm_head_ok(ckpt: SafetensorsFolder, name: str, comp: Component, scheme: NameScheme) -> bool:
  """An lm_head saved next to tied embeddings is a copy; a different one is an error."""
  embed = scheme.prefixes[comp.our_prefix] + "embed_tokens.weight"
  if not _same_tensor(ckpt, name, embed):
    raise CheckpointError(
        f"{ckpt.file_of(name)}: config.json ties the output layer to the input embedding "
        f"(tie_word_embeddings), but tensor {name!r} differs from {embed!r}; fix tie_word_embeddings "
        f"in {os.path.join(ckpt.folder, 'config.json')} or remove the tensor.")
  return True


def _unread_ok(name: str, ckpt: SafetensorsFolder, components: Sequence[Component], scheme: NameScheme,
               used: set, unused: Sequence) -> bool:
  """Whether a tensor no parameter read is expected: part of a component we do not load, a copy of
  tied embeddings, or on an allow-list."""
  if name == scheme.lm_head_prefix + "lm_head.weight":
    comp = next((c for c in components if c.has_lm_head), None)
    if comp is not None:
      return comp.our_prefix not in used or _tied_lm_head_ok(ckpt, name, comp, scheme)
  owners = [c for c in components if name.startswith(scheme.prefixes[c.our_prefix])]
  if owners:
    comp = max(owners, key=lambda c: len(scheme.prefixes[c.our_prefix]))
    rest = name[len(scheme.prefixes[comp.our_prefix]):]
    return comp.our_prefix not in used or any(re.search(r, rest) for r, _ in comp.unused)
  return any(re.search(r, name) for r, _ in unused)


def check_all_read(ckpt: SafetensorsFolder, components: Sequence[Component], scheme: NameScheme,
                   plan: dict, unused: Sequence = ()) -> None:
  """Raises CheckpointError if a checkpoint tensor is read by no parameter and not expected unread.

  `plan` maps each of our parameter paths to (TensorSource, shape); components no parameter maps to
  (a partial load, e.g. the vision side alone) are not checked."""
  read = {n for src, shape in plan.values() for n in src.names(shape)}
  read |= _skipped_layers(ckpt, components, plan)
  used = {src.component for src, _ in plan.values()}
  left = sorted(n for n in ckpt.keys() if n not in read and not _unread_ok(n, ckpt, components, scheme,
                                                                           used, unused))
  if left:
    more = f" and {len(left) - 5} more" if len(left) > 5 else ""
    raise CheckpointError(
        f"Checkpoint {ckpt.folder!r} holds {len(left)} tensor(s) that no parameter reads: "
        f"{', '.join(map(repr, left[:5]))}{more}. Does its config.json describe these weights "
        f"(num_hidden_layers, tie_word_embeddings, architecture)? Loading would silently drop them.")


def load_params(folder_or_ckpt, abstract_params, components: Sequence[Component], mesh=None,
                dtype=None, rules=shd.PARAM_LOGICAL_AXES, logical_to_mesh=shd.LOGICAL_TO_MESH,
                unused: Sequence = ()):
  """Fills `abstract_params` (a ShapeDtypeStruct tree) from the checkpoint, placed on `mesh`.

  Every checkpoint tensor must be read (see `check_all_read`); `unused`: (regex, why) of whole
  tensor names outside `components` that may stay unread (another model's tower)."""
  ckpt = folder_or_ckpt if isinstance(folder_or_ckpt, SafetensorsFolder) else SafetensorsFolder(
      folder_or_ckpt)
  scheme = resolve_scheme(ckpt, components)
  if mesh is None:
    mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  shardings = shd.param_shardings(abstract_params, mesh, rules, logical_to_mesh)
  plan = {}

  def prepare(path, leaf):
    p = shd.path_str(path)
    src = tensor_source(p, components, scheme)
    plan[p] = (src, leaf.shape)
    return _reader(ckpt, src, leaf.shape, np.dtype(dtype or leaf.dtype), p)
  readers = jax.tree_util.tree_map_with_path(prepare, abstract_params)
  check_all_read(ckpt, components, scheme, plan, unused)
  return jax.tree_util.tree_map(lambda leaf, sharding, read: jax.make_array_from_callback(
      leaf.shape, sharding, read), abstract_params, shardings, readers)


def abstract_params(module: nn.Module, *init_args, method=None):
  """Parameter shapes of `module` without allocating anything."""
  def init(rng):
    return module.init(rng, *init_args, method=method)["params"]
  return jax.eval_shape(init, jax.random.key(0))


def llava_dummy_inputs(cfg: LlavaOnevisionConfig):
  v = cfg.vision
  return (jnp.zeros((1, 1, v.image_size, v.image_size, v.num_channels)), jnp.zeros((1, 1), jnp.int32))


def load_llava_onevision(folder: str, mesh=None, dtype=None, attention: str = DEFAULT_IMPLEMENTATION):
  """(config, module, params) from a Hugging Face LLaVA-OneVision checkpoint folder; `attention`: the
  module's attention implementation (`score_jax.models.attention.IMPLEMENTATIONS`)."""
  cfg = parse_config(folder, LlavaOnevisionConfig.from_hf)
  dt = jnp.dtype(dtype) if dtype is not None else jnp.float32
  module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt, attention=attention)
  shapes = abstract_params(module, *llava_dummy_inputs(cfg), method=LlavaOnevision.init_all)
  return cfg, module, load_params(folder, shapes, LLAVA_COMPONENTS, mesh, dt)


def load_qwen2(folder: str, mesh=None, dtype=None, attention: str = DEFAULT_IMPLEMENTATION):
  """(config, module, params) from a Hugging Face Qwen2 (Qwen2ForCausalLM) checkpoint folder."""
  def parse(raw):
    if raw.get("model_type") != "qwen2":
      raise ConfigError(f"model_type {raw.get('model_type')!r} is not 'qwen2'.")
    return Qwen2Config.from_hf(raw)
  cfg = parse_config(folder, parse)
  dt = jnp.dtype(dtype) if dtype is not None else jnp.float32
  module = Qwen2(cfg, dtype=dt, param_dtype=dt, attention=attention)

  def touch(m, ids):
    h = m(m.embed(ids), jnp.zeros(ids.shape, jnp.int32))
    return m.logits(h)
  shapes = abstract_params(module, jnp.zeros((1, 1), jnp.int32), method=touch)
  return cfg, module, load_params(folder, shapes, QWEN2_COMPONENTS, mesh, dt)


def load_siglip_vision(folder: str, mesh=None, dtype=None, use_post_layernorm: bool = True):
  """(config, module, params) from a Hugging Face SigLIP vision checkpoint folder."""
  def parse(raw):
    vd = raw.get("vision_config", raw) if raw.get("model_type") == "siglip" else raw
    if vd.get("model_type", "siglip_vision_model") != "siglip_vision_model":
      raise ConfigError(f"model_type {vd.get('model_type')!r} is not a SigLIP vision model.")
    return SiglipVisionConfig.from_hf(vd)
  cfg = parse_config(folder, parse)
  dt = jnp.dtype(dtype) if dtype is not None else jnp.float32
  module = SiglipVisionTower(cfg, use_post_layernorm=use_post_layernorm, dtype=dt, param_dtype=dt)
  shapes = abstract_params(module, jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.num_channels)))
  return cfg, module, load_params(folder, shapes, SIGLIP_COMPONENTS, mesh, dt, unused=SIGLIP_TEXT_TOWER)
