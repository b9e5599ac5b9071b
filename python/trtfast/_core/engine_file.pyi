"""
trtfast's engine container. Use trtfast.engine_file, not this module.
"""
from __future__ import annotations
import typing
import typing_extensions
__all__: list[str] = ['FORMAT_VERSION', 'crc32', 'encode_header', 'parse', 'read', 'read_info', 'sha256']
def crc32(data: typing_extensions.Buffer, crc: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
    """
    CRC-32 as zlib computes it.
    """
def encode_header(plan: typing_extensions.Buffer, *, tensorrt_version: str, edition: str, gpu_name: str, compute_capability_major: typing.SupportsInt | typing.SupportsIndex, compute_capability_minor: typing.SupportsInt | typing.SupportsIndex, host_code: bool, model_sha256: str, metadata_json: str) -> bytes:
    """
    The header that goes in front of `plan`; computes the plan's size, CRC-32 and SHA-256.
    """
def parse(data: typing_extensions.Buffer, name: str, check_plan: bool) -> dict[str, typing.Any]:
    """
    Identify and check an engine held in memory; the dict gives plan_offset and plan_size.
    """
def read(fd: typing.SupportsInt | typing.SupportsIndex, name: str) -> tuple[dict[str, typing.Any], bytes]:
    """
    The header and the checked plan of an open engine file.
    """
def read_info(fd: typing.SupportsInt | typing.SupportsIndex, name: str, check_plan: bool) -> dict[str, typing.Any]:
    """
    Identify and check the engine in an open file; check_plan also streams the plan's CRC-32.
    """
def sha256(data: typing_extensions.Buffer) -> str:
    """
    SHA-256 as lowercase hex.
    """
FORMAT_VERSION: int = 1
