"""benchmarks/compare_paths.py renders a saved sweep (--from-json) on any machine: the Markdown
table from known numbers, and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from synthetic import synthetic_result

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_paths.py"

pytestmark = pytest.mark.skipif(not SCRIPT.is_file(), reason="benchmarks/ is not beside the tests")


def _sweep() -> dict[str, Any]:
    runs = []
    for model in ("cnn", "mlp"):
        for batch, scale in ((1, 1.0), (8, 1.5), (32, 3.0)):
            parity = {
                "passed": not (model == "mlp" and batch == 32),
                "outputs": [{"max_abs_error": 2.5e-7 * batch}],
            }
            runs.append(
                {
                    "model": model,
                    "precision": "fp32",
                    "batch": batch,
                    "parity": None if model == "cnn" and batch == 8 else parity,
                    "bench": synthetic_result(scale).to_json(),
                }
            )
    return {"runs": runs, "parity_skipped": None}


def _run(*arguments: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}import runpy, sys; sys.argv = [{str(SCRIPT)!r}, *{list(arguments)!r}]; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_renders_a_saved_sweep(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    saved = tmp_path / "sweep.json"
    saved.write_text(json.dumps(_sweep()))
    result = _run("--from-json", str(saved), "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "out" / "compare_paths.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 2 + 6
    # model | precision | batch | parity | GPU | floor + GPU | numpy | bound | reference | ratios
    assert (
        "| cnn | fp32 | 1 | ok (2.5e-07) | 10.0 | 30.0 | 33.0 | 16.5 | 99.0 | 3.00x | 1.10x |"
        in lines
    )
    assert "| cnn | fp32 | 8 | not checked | 15.0 | 45.0 | 49.5 |" in table
    assert "| mlp | fp32 | 32 | MISMATCH (8.0e-06) |" in table
    image = (tmp_path / "out" / "compare_paths.png").read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 10_000


def test_without_matplotlib_the_table_is_written_and_the_error_says_what_to_install(
    tmp_path: Path,
) -> None:
    saved = tmp_path / "sweep.json"
    saved.write_text(json.dumps(_sweep()))
    result = _run(
        "--from-json",
        str(saved),
        "--output",
        str(tmp_path),
        prelude="import sys; sys.modules['matplotlib'] = None; ",
    )
    assert result.returncode == 1
    assert "pip install 'trtfast[plot]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "compare_paths.md").is_file()
    assert not (tmp_path / "compare_paths.png").exists()


@pytest.mark.parametrize("content", ["{}", '{"runs": [{"model": "cnn"}]}', "not json"])
def test_a_malformed_result_is_refused(tmp_path: Path, content: str) -> None:
    saved = tmp_path / "broken.json"
    saved.write_text(content)
    result = _run("--from-json", str(saved), "--output", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("compare_paths: ") and "Traceback" not in result.stderr


def test_measuring_needs_tensorrt(tmp_path: Path) -> None:
    from trtfast import doctor

    reason = doctor.unavailable_reason()
    if reason is None:
        pytest.skip("checks a machine where TensorRT cannot run engines")
    result = _run("--output", str(tmp_path))
    assert result.returncode == 3
    assert reason in result.stderr and "Traceback" not in result.stderr
