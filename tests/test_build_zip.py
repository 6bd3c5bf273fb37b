"""The zip writer and model.py rendering, without TensorFlow (fast)."""

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from leafsub.builder import render, zipwrite
from leafsub.profiles import load_profile

FIXED = (1980, 1, 1, 0, 0, 0)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def make_tree(root, seed=0):
    import random

    rnd = random.Random(seed)
    os.makedirs(os.path.join(root, "m", "variables"))
    os.makedirs(os.path.join(root, "m", "assets"))  # empty folder: must survive
    with open(os.path.join(root, "model.py"), "w") as f:
        f.write("print('hello')\n" * 500)
    with open(os.path.join(root, "metadata"), "w"):
        pass
    with open(os.path.join(root, "m", "variables", "data.bin"), "wb") as f:
        f.write(bytes(rnd.getrandbits(8) for _ in range(300_000)))  # incompressible
    with open(os.path.join(root, "m", "saved_model.pb"), "wb") as f:
        f.write(b"layer conv2d kernel bias " * 20_000)
    return root


def write(tmp_path, name, root, **kw):
    out = tmp_path / name
    stats, digest = zipwrite.write_zip_atomic(out, zipwrite.entries_from_tree(root), **kw)
    assert digest == sha(out)
    return out, stats


def check_roundtrip(zip_path, root):
    with zipfile.ZipFile(zip_path) as z:
        assert z.testzip() is None
        names = z.namelist()
        assert names == sorted(names, key=lambda n: n.encode())
        for info in z.infolist():
            assert info.date_time == FIXED
            assert info.create_system == 3
            if info.is_dir():
                assert info.external_attr >> 16 == 0o40755
                assert os.path.isdir(os.path.join(root, info.filename))
            else:
                assert info.external_attr >> 16 == 0o100644
                with open(os.path.join(root, info.filename), "rb") as f:
                    assert z.read(info) == f.read(), info.filename
        on_disk = set()
        for folder, dirs, files in os.walk(root):
            rel = os.path.relpath(folder, root).replace(os.sep, "/")
            if rel != ".":
                on_disk.add(rel + "/")
            on_disk |= {(name if rel == "." else rel + "/" + name) for name in files}
        assert set(names) == on_disk
    if shutil.which("unzip"):
        proc = subprocess.run(["unzip", "-tq", str(zip_path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("policy", ["auto", "deflate", "store"])
def test_roundtrip_and_fixed_metadata(tmp_path, policy):
    root = make_tree(str(tmp_path / "src"))
    out, stats = write(tmp_path, "a.zip", root, compression=policy)
    check_roundtrip(out, root)
    with zipfile.ZipFile(out) as z:
        methods = {i.filename: i.compress_type for i in z.infolist() if not i.is_dir()}
    if policy == "store":
        assert set(methods.values()) == {zipfile.ZIP_STORED}
    elif policy == "deflate":
        assert methods["model.py"] == methods["m/variables/data.bin"] == zipfile.ZIP_DEFLATED
    else:  # auto: text deflated, random bytes stored, the empty file stored
        assert methods["model.py"] == zipfile.ZIP_DEFLATED
        assert methods["m/saved_model.pb"] == zipfile.ZIP_DEFLATED
        assert methods["m/variables/data.bin"] == zipfile.ZIP_STORED
        assert methods["metadata"] == zipfile.ZIP_STORED
    assert not stats.zip64


def test_same_content_same_bytes_whatever_mtime_mode_or_threads(tmp_path):
    root = make_tree(str(tmp_path / "src"))
    first, _ = write(tmp_path, "1.zip", root, compression="deflate", workers=1)
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            os.utime(path, (1_700_000_000, 1_700_000_000))
            os.chmod(path, 0o600)
    second, _ = write(tmp_path, "2.zip", root, compression="deflate", workers=2)
    assert sha(first) == sha(second)
    with open(os.path.join(root, "model.py"), "a") as f:
        f.write("#")
    third, _ = write(tmp_path, "3.zip", root, compression="deflate")
    assert sha(third) != sha(first)


def test_large_files_are_deflated_piecewise_into_one_valid_stream(tmp_path, monkeypatch):
    # Small pieces so that a modest file spans many of them (each with its own
    # dictionary and sync flush), compressed on 1 and on 4 threads.
    monkeypatch.setattr(zipwrite, "PIECE", 4096)
    monkeypatch.setattr(zipwrite, "SMALL_FILE", 8192)
    root = str(tmp_path / "src")
    os.makedirs(root)
    text = b"".join(b"line %d of a weights-like file\n" % (i % 977) for i in range(40_000))
    with open(os.path.join(root, "big.txt"), "wb") as f:
        f.write(text)
    with open(os.path.join(root, "random.bin"), "wb") as f:
        f.write(os.urandom(64 * 1024))
    one, _ = write(tmp_path, "w1.zip", root, compression="auto", workers=1)
    four, _ = write(tmp_path, "w4.zip", root, compression="auto", workers=4)
    assert sha(one) == sha(four)
    check_roundtrip(one, root)
    with zipfile.ZipFile(one) as z:
        big = z.getinfo("big.txt")
        assert big.compress_type == zipfile.ZIP_DEFLATED and big.file_size > 40 * 4096
        assert big.compress_size < big.file_size / 5
        assert z.getinfo("random.bin").compress_type == zipfile.ZIP_STORED  # sampled: not worth it


def test_zip64_records_are_readable(tmp_path, monkeypatch):
    root = make_tree(str(tmp_path / "src"))
    forced, stats = write(tmp_path, "forced.zip", root, compression="auto", force_zip64=True)
    assert stats.zip64
    check_roundtrip(forced, root)
    # Pretend the 4 GiB limit is 100 kB: sizes and offsets beyond it go to ZIP64 fields.
    monkeypatch.setattr(zipwrite, "ZIP64_LIMIT", 100_000)
    small_limit, stats = write(tmp_path, "limit.zip", root, compression="store")
    assert stats.zip64
    check_roundtrip(small_limit, root)
    with open(small_limit, "rb") as f:
        data = f.read()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # ZIP64 end records


def test_more_than_65535_entries(tmp_path):
    entries = [zipwrite.bytes_entry("f%05d" % i, b"%d" % i) for i in range(66_000)]
    out = tmp_path / "many.zip"
    stats, _ = zipwrite.write_zip_atomic(out, entries, compression="store")
    assert stats.entries == 66_000 and stats.zip64
    with zipfile.ZipFile(out) as z:
        assert len(z.infolist()) == 66_000
        assert z.read("f65999") == b"65999"


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    root = make_tree(str(tmp_path / "src"))
    out = tmp_path / "sub.zip"
    out.write_bytes(b"old")

    def refuse(tmp, stats):
        assert os.path.exists(tmp) and stats.size > 0
        raise RuntimeError("too big")

    with pytest.raises(RuntimeError):
        zipwrite.write_zip_atomic(out, zipwrite.entries_from_tree(root), verify=refuse)
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["src", "sub.zip"]


def test_memory_does_not_grow_with_file_size(tmp_path):
    """Peak RSS while zipping 512 MB (sparse) stays within a few pieces of the baseline."""
    script = textwrap.dedent("""
        import os, resource, sys
        from leafsub.builder import zipwrite
        path, out, policy = sys.argv[1:4]
        with open(path, "wb") as f:
            f.truncate(512 * 1024 * 1024)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        zipwrite.write_zip_atomic(out, [zipwrite.file_entry("w.bin", path)], compression=policy)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((peak - base) // 1024)
    """)
    for policy in ("store", "deflate"):
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "w.bin"),
                               str(tmp_path / "w.zip"), policy], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        growth_mb = int(proc.stdout.strip())
        print("zipping 512 MB with %s: peak RSS grew by %d MB" % (policy, growth_mb))
        assert growth_mb < 64
        os.unlink(tmp_path / "w.zip")


# --------------------------------------------------------------------------- model.py

MEMBERS = [
    {"dir": "SubmissionModel1", "name": "resnet", "input_size": [96, 96], "output": "probabilities",
     "preprocess": {"mode": "caffe", "resize_method": "bilinear", "scale": None, "offset": None}},
    {"dir": "SubmissionModel2", "name": "effnet", "input_size": [380, 380], "output": "logits",
     "preprocess": {"mode": "none", "resize_method": "bicubic", "scale": None, "offset": None}},
]


def imported_modules(text):
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", ["an2dl-2021", "an2dl-2022", "an2dl-2023", "an2dl-2024",
                                  "generic"])
def test_model_py_for_every_builtin_profile(name):
    profile = load_profile(name)
    text = render.render_model_py(profile, MEMBERS, ["identity", "hflip"], "weighted", [0.7, 0.3],
                                  16)
    assert "class TensorFlowOps(Ops):" in text and "def view_hflip(" in text
    assert imported_modules(text) <= {"numpy", "tensorflow", "os", "importlib", "sys"}
    assert "keras" not in imported_modules(text)
    tree = ast.parse(text)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    iface = profile["interface"]
    cls = classes[iface["class_name"]]
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = [a.arg for a in init.args.args]
    assert args == (["self", "path"] if iface["constructor"] == "path" else ["self"])
    assert any(isinstance(n, ast.FunctionDef) and n.name == iface["method"] for n in cls.body)
    config = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", None) == "CONFIG")
    config = ast.literal_eval(config.value)
    assert config["members"] == MEMBERS and config["weights"] == [0.7, 0.3]
    assert config["tta"] == ["identity", "hflip"] and config["chunk_size"] == 16
    assert ("tf.convert_to_tensor(labels)" in text) == (profile["output"]["container"] == "tensor")
    h, w = profile["input"]["shape"][:2]
    told = " ".join(text.split())  # the docstring is wrapped
    assert "380x380 (resized from %dx%d, bicubic)" % (h, w) in told  # told to the student
    # A student reads it: leafsub's own lines stay readable.
    ours = text[:text.index("# PART 2: leafsub's runtime")]
    assert max(len(line) for line in ours.splitlines()) <= 100


def test_model_py_converts_unusual_platform_inputs_and_loads_a_user_combiner():
    profile = load_profile("generic")
    profile["input"]["channel_order"] = "BGR"
    profile["input"]["range"] = [0, 1]
    text = render.render_model_py(profile, MEMBERS, ["identity"], "mycombine:vote2", None, 8)
    assert "x = x[..., ::-1]" in text and "(255.0 / 1.0)" in text
    assert "_combine_method(folder)" in text and "mycombine.py" in text
    plain = render.render_model_py(load_profile("generic"), MEMBERS, ["identity"], "mean", None, 8)
    assert "_as_rgb_0_255" not in plain and "_combine_method" not in plain


def test_a_build_member_renders_the_model_py_of_its_config_entry():
    # The build hands render its Members; model.py must be the one its CONFIG dicts give.
    from leafsub.builder.configuration import Member

    members = [Member(index=i, run_dir="/runs/%s" % m["name"], given="runs/%s" % m["name"],
                      name=m["name"], dir=m["dir"], card={"name": m["name"]},
                      preprocess=dict(m["preprocess"]), preprocess_source="card (declared)",
                      input_size=list(m["input_size"]), input_shape=None, output=m["output"],
                      label="member %d" % i) for i, m in enumerate(MEMBERS, start=1)]
    profile = load_profile("an2dl-2022")
    args = (["identity", "hflip"], "weighted", [0.7, 0.3], 16)
    assert render.config_dict(profile, members, *args)["members"] == MEMBERS
    assert render.render_model_py(profile, members, *args) == render.render_model_py(
        profile, MEMBERS, *args)


def test_py_literal_round_trips():
    value = {"a": [1, 2.5, None, True], "b": {"c": "quote \" and \\ and é"}, "d": []}
    assert ast.literal_eval(render.py_literal(value)) == value
