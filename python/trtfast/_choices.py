"""The values build options take, apart from the modules that use them: the command line lists
them without importing onnx, which building and preparing need."""

from __future__ import annotations

from typing import Literal

Precision = Literal["fp32", "fp16", "bf16", "int8", "fp8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "int8", "fp8")

PrepareMode = Literal["auto", "always", "never"]
PREPARE_MODES: tuple[PrepareMode, ...] = ("auto", "always", "never")

HARDWARE_COMPATIBILITY = ("ampere_plus", "same_compute_capability")
