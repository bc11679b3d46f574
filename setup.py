"""rlcs_jax: RL for creative writing (RLCS + RLMR) in JAX/Flax."""

import setuptools

# Pinned to versions that install and run together on CPU (see README).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    "grain==0.2.18",
    "sentencepiece==0.2.3",
    "ml-collections==1.1.0",
    "chex==0.1.92",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "tensorboardX==2.6.5",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "gguf==0.19.0",
    "safetensors==0.8.0",
    # tfds imports it without declaring it when TensorFlow is absent.
    "importlib_resources==7.1.0",
]

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        # `make test` runs the suite in two worker processes (one per core).
        "pytest-xdist==3.8.0",
        "execnet==2.1.2",
        # The workers share one compilation cache; JAX locks it with filelock.
        "filelock==4.3.2",
        "hypothesis==6.170.15",
        "pyink==26.5.1",
        # Test-only peers for numerical equivalence with Hugging Face.
        "torch==2.13.0",
        "transformers==5.23.0",
        "nbclient==0.11.0",
        "nbformat==5.11.1",
        "ipykernel==7.4.0",
    ],
    "bench": [
        "torch==2.13.0",
        "transformers==5.23.0",
        "trl==1.16.0",
    ],
}

setuptools.setup(
    name="rlcs_jax",
    version="0.1.0",
    description=__doc__,
    packages=setuptools.find_packages(include=["rlcs_jax", "rlcs_jax.*"]),
    package_data={"rlcs_jax": ["data/assets/*.jsonl"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
