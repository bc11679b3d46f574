"""Experiments: sweep launcher, benchmarks and the Colab TPU notebook."""
