"""import_stimuli on good input and on each bad one."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from annotation.models import Stimulus
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db


def image_bytes(fmt="PNG", size=(40, 30), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def bomb_png(width=30000, height=30000) -> bytes:
    """A tiny PNG whose header claims 900 megapixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_stimuli", *[str(a) for a in args], stdout=out)
    return out.getvalue()


@pytest.fixture
def study():
    return StudyFactory(slug="imp", scale="continuous")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(image_bytes("PNG", color=(1, 2, 3)))
    (root / "b.jpg").write_bytes(image_bytes("JPEG", color=(200, 20, 30)))
    (root / "sub" / "c.webp").write_bytes(image_bytes("WEBP", color=(5, 200, 5)))
    (root / ".DS_Store").write_bytes(b"junk")
    return root


def test_folder_with_metadata(study, folder, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "filename,generator,task,prompt,seed\n"
        'a.png,SDXL,text-to-image,"a cat, sitting",42\n'
        "b.jpg,CoCosNet,image-translation,,7\n"
        "missing.png,X,Y,,1\n"
    )
    out = run("imp", folder, "--metadata", meta)
    assert "3 imported, 0 skipped, 0 rejected" in out
    assert "missing.png" in out  # warned about, not fatal
    a = Stimulus.objects.get(original_name="a.png")
    assert (a.generator, a.task, a.prompt, a.metadata) == (
        "SDXL",
        "text-to-image",
        "a cat, sitting",
        {"seed": 42},
    )
    assert (a.width, a.height, a.role) == (40, 30, "test")
    assert len(a.sha256) == 64 and a.image.read()[:4] == b"\x89PNG"
    assert Stimulus.objects.get(original_name="sub/c.webp").width == 40


def test_duplicates_are_skipped(study, folder):
    run("imp", folder)
    (folder / "copy-of-a.png").write_bytes((folder / "a.png").read_bytes())
    out = run("imp", folder)
    assert "0 imported, 4 skipped, 0 rejected" in out
    assert "duplicate of a.png" in out
    assert Stimulus.objects.count() == 3


def test_zip_import(study, tmp_path):
    archive = tmp_path / "stimuli.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/x.png", image_bytes(color=(9, 9, 9)))
        zf.writestr("set/y.jpg", image_bytes("JPEG", color=(99, 9, 9)))
        zf.writestr("__MACOSX/set/._x.png", b"resource fork")
    out = run("imp", archive, "--role", "training")
    assert "2 imported" in out
    assert set(Stimulus.objects.values_list("role", flat=True)) == {"training"}


@pytest.mark.parametrize(
    "name, payload, reason",
    [
        ("truncated.png", image_bytes(size=(200, 200))[:-60], "truncated or corrupt"),
        ("text.png", b"this is not an image at all\n", "not an image"),
        ("bomb.png", bomb_png(), "decompression bomb"),
        ("empty.png", b"", "empty file"),
        ("pic.gif", None, "unsupported format GIF"),
    ],
)
def test_bad_files_are_rejected_with_reason(study, tmp_path, name, payload, reason):
    if payload is None:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "GIF")
        payload = buffer.getvalue()
    root = tmp_path / "bad"
    root.mkdir()
    (root / name).write_bytes(payload)
    out = run("imp", root)
    assert "0 imported, 0 skipped, 1 rejected" in out
    assert reason in out
    assert Stimulus.objects.count() == 0


def test_byte_size_limit(study, tmp_path, settings):
    settings.MAX_IMAGE_BYTES = 2000
    root = tmp_path / "big"
    root.mkdir()
    (root / "big.png").write_bytes(image_bytes(size=(400, 400), color=(1, 1, 1)) + b"\0" * 3000)
    out = run("imp", root)
    assert "file too large" in out and Stimulus.objects.count() == 0


@pytest.mark.parametrize("entry", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/x.png"])
def test_zip_slip_entries_refused(study, tmp_path, entry):
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good.png", image_bytes(color=(50, 50, 50)))
        info = zipfile.ZipInfo(entry)
        zf.writestr(info, image_bytes(color=(60, 60, 60)))
    out = run("imp", archive)
    assert "unsafe path in archive" in out
    assert list(Stimulus.objects.values_list("original_name", flat=True)) == ["good.png"]
    assert not (tmp_path / "evil.png").exists()


def test_broken_zip_imports_nothing(study, tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(CommandError, match="broken or unreadable zip"):
        run("imp", archive)
    assert Stimulus.objects.count() == 0


@pytest.mark.parametrize(
    "csv_text, line, column",
    [
        ("name_of_file,generator\na.png,X\n", 1, "filename"),
        ("filename,generator\na.png,X\nb.jpg,Y,extra\n", 3, "-"),
        ("filename,expected_low,expected_high\na.png,10,abc\n", 2, "expected_high"),
        ("filename,expected_low,expected_high\na.png,80,20\n", 2, "expected_high"),
        ("filename,expected_low,expected_high\na.png,10,120\n", 2, "expected_high"),
        ("filename,role\na.png,teacher\n", 2, "role"),
        ("filename,generator\na.png,X\na.png,Y\n", 3, "filename"),
        ("filename,generator\n,X\n", 2, "filename"),
        ("", 1, "-"),
    ],
)
def test_malformed_csv_imports_nothing(study, folder, tmp_path, csv_text, line, column):
    meta = tmp_path / "meta.csv"
    meta.write_text(csv_text)
    with pytest.raises(CommandError) as info:
        run("imp", folder, "--metadata", meta)
    assert f"line {line}, column {column!r}" in str(info.value)
    assert "nothing imported" in str(info.value)
    assert Stimulus.objects.count() == 0


def test_every_bad_row_is_told_at_once(study, folder, tmp_path):
    """Three bad rows: one upload says all three, not one per try."""
    from annotation.importing import MAX_ROW_ERRORS, MetadataErrors, read_metadata_csv

    meta = tmp_path / "meta.csv"
    meta.write_text(
        "filename,role,expected_low,expected_high\n"
        "a.png,teacher,,\n"
        "b.jpg,gold,80,20\n"
        "c.png,test,,\n"
        "d.png,gold,10,abc\n"
    )
    with pytest.raises(CommandError) as info:
        run("imp", folder, "--metadata", meta)
    told = str(info.value)
    assert "3 rows refused" in told
    for where in ("line 2, column 'role'", "line 3, column 'expected_high'", "line 5"):
        assert where in told, told
    assert Stimulus.objects.count() == 0
    many = "filename,role\n" + "".join(f"f{i}.png,teacher\n" for i in range(MAX_ROW_ERRORS + 5))
    with pytest.raises(MetadataErrors) as capped:
        read_metadata_csv(many.encode())
    assert len(capped.value.errors) == MAX_ROW_ERRORS and "and 5 more" in str(capped.value)
    assert (capped.value.line, capped.value.column) == (2, "role")


def test_non_utf8_csv(study, folder, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_bytes(b"filename,prompt\na.png,ok\nb.jpg,caf\xe9\n")
    with pytest.raises(CommandError, match="line 3.*not valid UTF-8"):
        run("imp", folder, "--metadata", meta)
    assert Stimulus.objects.count() == 0


def test_gold_roles_from_csv_need_ranges(study, folder, tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "filename,role,expected_low,expected_high\n"
        "a.png,gold,70,100\n"
        "b.jpg,gold,,\n"
        "sub/c.webp,training,0,30\n"
    )
    out = run("imp", folder, "--metadata", meta)
    assert "2 imported, 0 skipped, 1 rejected" in out
    assert "gold items need expected_low and expected_high" in out
    gold = Stimulus.objects.get(original_name="a.png")
    assert (gold.role, gold.expected_low, gold.expected_high) == ("gold", 70, 100)
    assert Stimulus.objects.get(original_name="sub/c.webp").role == "training"


def test_unknown_study_and_missing_source(study, tmp_path):
    with pytest.raises(CommandError, match="no study with slug"):
        run("nope", tmp_path)
    with pytest.raises(CommandError, match="no such file or folder"):
        run("imp", tmp_path / "absent")


def test_an_over_long_prompt_refuses_the_csv_naming_line_and_column(study, folder, tmp_path):
    """Prompts and extra columns are bounded (MAX_PROMPT_CHARS, checked in the database
    too): the CSV is refused before any image is imported."""
    from annotation.models import MAX_PROMPT_CHARS

    meta = tmp_path / "meta.csv"
    meta.write_text(
        "filename,prompt,note\n"
        f"a.png,{'p' * MAX_PROMPT_CHARS},ok\n"
        f"b.jpg,short,{'n' * (MAX_PROMPT_CHARS + 1)}\n"
    )
    with pytest.raises(CommandError, match=r"line 3.*note.*longer than 4,000 characters"):
        run("imp", folder, "--metadata", meta)
    assert Stimulus.objects.count() == 0
