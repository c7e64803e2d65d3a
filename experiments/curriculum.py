"""SCORE on the embedded default: static pseudo-videos first, then dynamic videos.

    python -m score_jax.train --config=experiments/curriculum.py
    python -m score_jax.train --config=experiments/curriculum.py --config.workdir=/tmp/run --config.rl.group_size=4

Runs on a 2-core CPU in minutes: the embedded tiny LLaVA-OneVision (built on first use if no copy is
cached) is the frozen LLM; the policy keeps 10% of the 128 visual tokens of each 8-frame video.
"""
import ml_collections

from score_jax.compress import surprise
from score_jax.models import answer_reading, attention
from score_jax.world.lossy_video import LossySettings


def get_config():
  c = ml_collections.ConfigDict()
  c.method = "score"
  c.workdir = "workdirs/curriculum"
  c.seed = 0
  c.batch_size = 8
  # Comma-separated stages "data:steps"; data is "pseudo" (static pseudo-videos), "video", "jsonl" (real
  # videos, data.train_file) or "images" (pseudo-videos of real images, data.image_file).
  c.curriculum = "pseudo:1500,video:3700"

  c.model = ml_collections.ConfigDict()
  c.model.kind = "embedded"          # "embedded" or "hf" (a local Hugging Face LLaVA-OneVision folder)
  c.model.checkpoint = ""            # folder for kind="hf"; for "embedded", "" = the default cache
  c.model.dtype = "float32"
  c.model.mesh = (-1, 1, 1)          # (data, fsdp, tensor); -1 fills the devices
  # How the frozen LLM's choice is read (score_jax/models/prompt.py): "letter" (the lmms-eval prompt, what
  # real LLaVA-OneVision checkpoints use) or "option_word" (cloze: options scored by their own token's
  # likelihood). The embedded model reads the answer at 0.99 but maps it to a letter at 0.34 (BUILD_NOTES.md).
  c.model.answer_format = "option_word"
  # How eval reads the answer (score_jax/models/answer_reading.py): "logits" (argmax over the shown options' answer
  # tokens; RL always reads logits), "option_likelihood" (each option's whole text), "generate" (greedy decoding
  # with a KV cache, then the benchmark's lmms-eval answer parser); max_new_tokens bounds "generate".
  c.model.answer_reading = answer_reading.DEFAULT_READING
  c.model.max_new_tokens = answer_reading.DEFAULT_MAX_NEW_TOKENS
  # Attention kernels (score_jax/models/attention.py): "auto" = cuDNN flash attention on GPU in bfloat16, splash
  # attention on TPU, XLA otherwise; "xla" forces XLA's dense-mask path everywhere.
  c.model.attention = attention.DEFAULT_IMPLEMENTATION

  c.policy = ml_collections.ConfigDict()
  c.policy.hidden = 64
  c.policy.num_layers = 1
  c.policy.num_heads = 4
  c.policy.use_residual = True
  c.policy.use_surprise_scalar = True
  c.policy.use_surprise_memory = True  # + running max of the surprise at each position (BUILD_NOTES.md)
  c.policy.first_frame = "zero"      # residual of frame 0: "zero" | "self" | "mean"

  c.rl = ml_collections.ConfigDict()
  c.rl.ratio = 0.1
  c.rl.group_size = 8
  # "gumbel_topk" (exactly k) | adaptive, rl.ratio the cap: "sized_topk" (a count head picks one of
  # rl.count_levels per video, experiments/curriculum_adaptive.py) | "bernoulli" (keep/drop, at most k)
  c.rl.sampler = "gumbel_topk"
  c.rl.count_levels = ()             # sized_topk: retention levels (each <= rl.ratio)
  c.rl.count_explore = 0.2           # sized_topk: uniform share of the rollouts' level draws
  c.rl.budget = 0.0                  # adaptive: target mean retention (0: rl.ratio)
  c.rl.comp_reward = "sparsity"      # "sparsity" (1 - kept) | "budget_hinge" | "budget_abs" (rl/rewards.py)
  c.rl.logprob = "plackett_luce"     # plackett_luce | cheap_set | bernoulli | per_token | sized_plackett_luce
  c.rl.advantage = "split"           # "split" | "grpo" | "keep_drop" | "pos_neg"
  c.rl.task_reward = "correct+margin"  # "correct" | "margin" | "correct+margin" (BUILD_NOTES.md)
  c.rl.comp_weight = 0.5
  c.rl.budget_control = "none"       # adaptive: "lagrange" (kept <= rl.budget) | "lagrange_two_sided" (kept = budget)
  c.rl.budget_lr = 0.05
  c.rl.eps_low = 0.2
  c.rl.eps_high = 0.2
  c.rl.kl_coef = 0.0
  c.rl.entropy_coef = 0.0            # bonus on the entropy of softmax(keep logits)
  c.rl.ppo_epochs = 2
  c.rl.position_mode = "original"    # "original" | "repacked"

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3
  c.optim.warmup_steps = 20
  c.optim.weight_decay = 0.0
  c.optim.grad_clip = 1.0

  c.data = ml_collections.ConfigDict()
  c.data.train_size = 100_000
  c.data.pseudo_video_mode = "slideshow"
  c.data.num_threads = 2             # grain reader threads
  # Real videos (JSONL, score_jax/data/jsonl_format.py): the "jsonl" curriculum stage reads train_file,
  # config.eval.source="jsonl" reads eval_file; `python -m score_jax.cache` fills cache_dir/{train,eval}.
  c.data.train_file = ""
  c.data.eval_file = ""
  c.data.image_file = ""             # image QA JSONL (score_jax/data/image_qa_format.py) for "images:N" stages
  c.data.cache_dir = ""
  c.data.cache_batch_size = 4        # videos per vision-tower call while building the cache
  c.data.decode_threads = 2          # PyAV decoding threads while building the cache
  c.data.strict = False              # True: a bad sample is an error instead of a skipped warning
  # H.264 round trip of generated videos (score_jax/world/lossy_video.py): per video a crf and an encoded size
  # are drawn from these; `lossy_fraction` of the stage-2 ("video") training videos are encoded (0.5: the
  # h264 set at 96% of its full-token accuracy at 10% instead of 93% with 0, clean unchanged; BUILD_NOTES),
  # and the "h264" held-out set encodes every held-out video.
  c.data.lossy_crf = LossySettings.crf
  c.data.lossy_sizes = LossySettings.sizes
  c.data.lossy_fraction = 0.5
  # Distractors per generated training video, (lo, hi): () = the world's own 3-6. (12, 15) trains the policy on
  # the scenes of the "crowded" held-out set (world/heldout_sets.py); the frozen model is never retrained on them.
  c.data.world_distractors = ()

  c.checkpoint_every = 50
  c.keep_checkpoints = 2
  c.log_every = 10
  c.crash_after_step = -1            # testing: exit abruptly right after this step's checkpoint
  # JAX's persistent compilation cache (score_jax/compilation_cache.py): a folder, "" = off.
  c.compilation_cache_dir = ""

  # SCORE's adaptive inference (inference only, so `score_jax.eval --config.score_eval.tail=...` applies it to any
  # trained SCORE policy): tail > 0 keeps per video the fewest top tokens that leave at most that much of the
  # softmax(keep logits) probability outside (selection.tail_count; benchmarks/calibrate_tail.py finds the tail of
  # a mean retention on training videos), under the cap (0: rl.ratio) and at least the floor (0: one token);
  # tail = 0: the sampler's own rule. dedup > 0 (ours, not the paper's; both modes): tokens at places still since
  # frame 0 (surprise.still_places at that cosine) only after every other token (train_step.ranking_key); 0: the
  # policy's ranking alone. +2.2 points at 10% on H.264 over 3 seeds (BUILD_NOTES.md, fourteenth session).
  c.score_eval = ml_collections.ConfigDict()
  c.score_eval.tail = 0.0
  c.score_eval.cap = 0.0
  c.score_eval.floor = 0.0
  c.score_eval.dedup = surprise.STILL_COSINE

  c.eval = ml_collections.ConfigDict()
  c.eval.source = "world"  # or "jsonl": config.data.eval_file (feature cache when built)
  c.eval.samples = 1024
  c.eval.start = 0                   # first held-out index: --config.eval.start=1024 draws a disjoint set
  c.eval.sets = ("clean", "h264")    # world held-out sets: as generated, and through H.264 (data.lossy_*)
  c.eval.batch_size = 32
  c.eval.ratios = (1.0, 0.25, 0.1)
  c.eval.methods = ("policy", "uniform_pool", "random", "residual", "oracle")
  c.eval.random_seeds = 3
  c.eval.at_end = True
  return c
