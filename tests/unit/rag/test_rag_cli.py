"""`register` wires ingest / eval-rag / bench-rag into an argparse tree like chatstack's."""

import argparse
import json

from chatstack.rag.bench import synthetic_chunks
from chatstack.rag.cli import register


def run(argv: list[str]) -> int:
    root = argparse.ArgumentParser()
    root.add_argument("--config")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(argv)
    return args.func(args)


def test_ingest_then_eval_from_the_command_line(tmp_path, onnx_path, capsys):
    config = tmp_path / "deploy.toml"
    config.write_text(f'[retrieval]\nmilvus_uri = "rag.db"\nembedder_onnx = "{onnx_path}"\n')
    corpus = tmp_path / "kb"
    corpus.mkdir()
    (corpus / "sets.md").write_text("# Sets\n\nA set holds unique items.\n")
    (corpus / "notes.bin").write_bytes(b"\x00\x01")
    assert run(["--config", str(config), "ingest", str(corpus), "--collection", "kb", "--tenant", "t1"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "notes.bin" in out and "1 file(s) ingested: 1 chunk(s) added" in out
    assert (tmp_path / "rag.db").exists()  # relative to the config file's folder
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"id": "q", "question": "What does a set hold?",
                              "evidence": [{"source": "kb/sets.md", "phrase": "unique items"}]}))
    assert run(["--config", str(config), "eval-rag", "--collection", "kb", "--tenant", "t1", "--qa", str(qa),
                "--k", "1"]) == 0
    assert "1   1.000" in capsys.readouterr().out


def test_synthetic_benchmark_chunks_are_distinct():
    chunks = synthetic_chunks(1200)
    assert len(chunks) == 1200 and len({c.chunk_id for c in chunks}) == 1200
    perturbed = chunks[-200:]  # past the ~950 real topic chunks
    assert len({c.text for c in perturbed}) == 200


def test_ingest_cuts_chunks_at_the_configured_size_unless_told_otherwise(tmp_path, onnx_path, capsys):
    corpus = tmp_path / "kb"
    corpus.mkdir()
    (corpus / "long.md").write_text("# Long\n\n" + " ".join(f"Sentence number {i} says a little." for i in range(60)) + "\n")
    added = {}
    for name, chunking, flags in (("small", "chunk_tokens = 32\nchunk_overlap_tokens = 8\n", []),
                                  ("default", "", []),
                                  ("flag", "chunk_tokens = 32\nchunk_overlap_tokens = 8\n", ["--max-tokens", "200"])):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[retrieval]\nmilvus_uri = "{name}.db"\nembedder_onnx = "{onnx_path}"\n{chunking}')
        assert run(["--config", str(config), "ingest", str(corpus), *flags]) == 0
        added[name] = int(capsys.readouterr().out.split("ingested: ", 1)[1].split(" chunk(s)", 1)[0])
    assert added["small"] > 3 * added["default"] and added["flag"] == added["default"]
