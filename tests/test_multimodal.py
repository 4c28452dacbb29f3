"""Multimodal rows: file columns become fileData parts; local files and bytes are uploaded to
the staging location's files folder first (named by content); bad cells are refused before
anything is uploaded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import pdbatch


def _lines(fs, staging):
    [path] = [p for p in fs.find(staging) if "/input-" in p]
    return [json.loads(line) for line in fs.cat(path).splitlines()]


def test_gs_uris_local_files_and_bytes_round_trip(fs, staging, tmp_path):
    picture = tmp_path / "cat.PNG"
    picture.write_bytes(b"\x89PNG not really")
    tools = f"{staging}-data/generative-ai/image/gardening-tools.jpeg"
    fs.pipe(tools, b"jpeg")
    df = pd.DataFrame({
        "prompt": ["What is in this image?", "And this one?", "Only text."],
        "image": [tools, str(picture), None],
        "audio": [b"RIFF....WAVE", None, None],
    })
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  files={"image": None, "audio": "audio/wav"},
                                  files_root=tmp_path, keep_staging=True)
    assert (out["status"] == "ok").all()
    assert out["text"].tolist() == [f"echo: {p}" for p in df["prompt"]]

    uploaded = sorted(p for p in fs.find(f"{staging}/files"))
    assert len(uploaded) == 2 and uploaded[0].endswith(".png") != uploaded[1].endswith(".png")
    parts = [line["request"]["contents"][0]["parts"] for line in _lines(fs, staging)]
    assert parts[0][0] == {"text": "What is in this image?"}
    assert parts[0][1] == {"fileData": {"fileUri": tools, "mimeType": "image/jpeg"}}
    assert parts[0][2]["fileData"]["mimeType"] == "audio/wav"
    assert parts[1][1]["fileData"]["mimeType"] == "image/png"
    assert parts[1][1]["fileData"]["fileUri"].startswith(f"{staging}/files/")
    assert fs.cat(parts[1][1]["fileData"]["fileUri"]) == picture.read_bytes()
    assert parts[2] == [{"text": "Only text."}]


def test_uploaded_files_are_named_by_content_and_uploaded_once(fs, staging, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "b.jpg").write_bytes(b"jpeg")  # the same content under another name
    df = pd.DataFrame({"prompt": ["describe", "again"],
                       "image": [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  files={"image": None}, files_root=str(tmp_path))
    assert (out["status"] == "ok").all()
    [uploaded] = fs.find(f"{staging}/files")
    assert not [p for p in fs.find(staging) if "/input-" in p]  # staged inputs removed
    generation = fs.info(uploaded)["generation"]

    other = df.assign(prompt=["another", "question"])  # a new run sending the same file
    assert (other.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       files={"image": None}, files_root=[str(tmp_path)]
                                       )["status"] == "ok").all()
    assert fs.find(f"{staging}/files") == [uploaded]
    assert fs.info(uploaded)["generation"] == generation  # not uploaded again


def test_bad_file_cells_are_refused_before_anything_is_uploaded(staging, uploaded, tmp_path,
                                                                stack):
    (tmp_path / "notes.xyz").write_text("?")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "host.png").symlink_to("/etc/hostname")  # a link out of files_root
    absent = f"gs://{stack.bucket}/no/such/object.png"
    df = pd.DataFrame({"prompt": ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
                       "f": [str(tmp_path / "missing.png"), str(tmp_path / "notes.xyz"),
                             "https://example.com/cat.png", b"raw", 3, absent,
                             str(tmp_path / "folder.png"), str(tmp_path / "host.png"),
                             "/etc/hostname"]})
    with pytest.raises(pdbatch.InputError, match=r"row 0 \(index 0\): files column 'f': "):
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, files={"f": None},
                                files_root=tmp_path)
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, files={"f": None},
                                  files_root=tmp_path, on_invalid="skip", progress=False)
    expected = ["missing.png' is not a file", "cannot tell the MIME type of",
                "only gs:// URIs, local paths and bytes", "bytes need a MIME type",
                "a int is neither a gs:// URI", f"{absent} does not exist",
                "folder.png' is not a file", "host.png' is outside files_root",
                "'/etc/hostname' is outside files_root"]
    for status, words in zip(out["status"], expected, strict=True):
        assert status.startswith("skipped: files column 'f': ") and words in status
    with pytest.raises(pdbatch.InputError, match="'image/jpg!' is not a MIME type"):
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, files={"f": "image/jpg!"})
    with pytest.raises(pdbatch.InputError, match="files= is supported for Gemini models"):
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, files={"f": None},
                                model="claude-haiku-4-5")
    assert uploaded() == []


def test_rows_with_the_same_text_but_other_files_are_not_deduplicated(fs, staging):
    one, two = f"{staging}-data/one.png", f"{staging}-data/two.png"
    fs.pipe({one: b"1", two: b"2"})
    df = pd.DataFrame({"prompt": ["what is it?"] * 3, "image": [one, two, one]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  files={"image": None}, keep_staging=True)
    assert [line["pdbatch_row"] for line in _lines(fs, staging)] == [0, 1]
    assert out["text"].notna().all() and (out["status"] == "ok").all()
