"""`python -m engine` as a user runs it: exit codes, JSON contract, files it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.legal import DISCLAIMER_EN, DISCLAIMER_RU

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["PYTHONPATH"] = str(REPO)
    # The random test model's zero-shot child scores are noise (a fresh draw per process):
    # these tests check the CLI contract, test_child_filter_cli.py checks the filter.
    env["ENGINE_CHILD_FILTER"] = "off"
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture()
def indexed(photo_dir: Path, tmp_path: Path, tiny_clip_config: Path) -> Path:
    index = tmp_path / "idx"
    result = run_cli("index", photo_dir, "--index", index, "--model",
                     f"open_clip:{tiny_clip_config}:random")
    assert result.returncode == 0, result.stderr
    assert "6 photos (6 added" in result.stdout
    return index


def test_search_json_contract(indexed: Path) -> None:
    result = run_cli("search", "--index", indexed, "a red photo", "-k", "4", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert {"query", "blocked", "message", "results"} <= set(payload)  # additive keys allowed
    assert payload["withheld"] == 0 and "child=off" in payload["filter_version"]
    assert payload["query"] == "a red photo" and payload["blocked"] is False
    assert payload["message"] is None and len(payload["results"]) == 4
    assert all(set(r) == {"photo", "score"} for r in payload["results"])
    scores = [r["score"] for r in payload["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {r["photo"] for r in payload["results"]} <= {
        "red.jpg", "green.png", "blue.webp", "trips/yellow.jpg", "trips/grey.JPG",
        "trips/white.jpeg"}


def test_queries_file_keeps_order_and_refuses(indexed: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("a green field\nтри девочки играют\n\nthe grey wall\na little boy\n",
                       encoding="utf-8")
    sheet = tmp_path / "sheet.html"
    result = run_cli("search", "--index", indexed, "--queries", queries, "--json", "-k", "2",
                     "--html", sheet)
    assert result.returncode == 0, result.stderr
    payloads = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["query"] for p in payloads] == ["a green field", "три девочки играют",
                                              "the grey wall", "a little boy"]
    assert [p["blocked"] for p in payloads] == [False, True, False, True]
    assert payloads[1]["message"] == DISCLAIMER_RU and payloads[3]["message"] == DISCLAIMER_EN
    assert payloads[1]["results"] == [] and len(payloads[2]["results"]) == 2
    page = sheet.read_text(encoding="utf-8")
    assert "a green field" in page and DISCLAIMER_EN in page and page.count("<img") == 4


def test_human_output(indexed: Path) -> None:
    result = run_cli("search", "--index", indexed, "blue sky", "-k", "2")
    assert result.returncode == 0 and " 1. " in result.stdout and " 2. " in result.stdout


@pytest.mark.parametrize("query, message", [("", "empty"), ("   ", "empty"),
                                            ("x" * 1001, "1000")])
def test_bad_queries_exit_2(indexed: Path, query: str, message: str) -> None:
    result = run_cli("search", "--index", indexed, query)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_missing_things_exit_2(tmp_path: Path, indexed: Path) -> None:
    missing_index = run_cli("search", "--index", tmp_path / "nope", "a dog")
    assert missing_index.returncode == 2 and "does not exist" in missing_index.stderr
    missing_photos = run_cli("index", tmp_path / "no-photos", "--index", tmp_path / "i2")
    assert missing_photos.returncode == 2 and "does not exist" in missing_photos.stderr
    assert len(missing_photos.stderr.strip().splitlines()) == 1
    wrong_model = run_cli("search", "--index", indexed, "a dog", "--model", "dual:/nowhere")
    assert wrong_model.returncode == 2 and "/nowhere" in wrong_model.stderr


def test_corrupt_photo_is_listed_and_run_succeeds(photo_dir: Path, tmp_path: Path,
                                                  tiny_clip_config: Path) -> None:
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run_cli("index", photo_dir, "--index", tmp_path / "idx", "--model",
                     f"open_clip:{tiny_clip_config}:random")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable file(s):" in result.stdout and "broken.jpg" in result.stdout
    again = run_cli("index", photo_dir, "--index", tmp_path / "idx")  # the index's own model
    assert again.returncode == 0 and "0 added, 0 updated, 0 removed, 6 unchanged" in again.stdout


def test_backends_answer_alike_without_re_embedding(photo_dir: Path, tmp_path: Path,
                                                    tiny_clip_spec: str) -> None:
    """`index --backend hnsw` builds the graph from the stored vectors; `search --backend`
    switches how they are searched, with the same answers on a small collection."""
    index = tmp_path / "idx"
    built = run_cli("index", photo_dir, "--index", index, "--model", tiny_clip_spec,
                    "--backend", "hnsw")
    assert built.returncode == 0, built.stderr
    assert "hnsw backend in sync" in built.stdout and (index / "hnsw" / "state.json").is_file()
    embeddings = sorted(p.stat().st_mtime_ns for p in index.glob("gen-*/embeddings.npy"))
    answers = {}
    for backend in ("exact", "hnsw", "milvus"):
        result = run_cli("search", "--index", index, "a red photo", "-k", "4", "--json",
                         "--backend", backend)
        assert result.returncode == 0, result.stderr
        answers[backend] = [r["photo"] for r in json.loads(result.stdout)["results"]]
    assert answers["hnsw"] == answers["exact"] == answers["milvus"]
    assert len(answers["exact"]) == 4
    # Switching backends wrote no new generation: nothing was re-embedded.
    assert sorted(p.stat().st_mtime_ns for p in index.glob("gen-*/embeddings.npy")) == embeddings
    bad = run_cli("search", "--index", index, "a red photo", "--backend", "annoy")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
