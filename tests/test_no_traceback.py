"""No input to any command ends in a traceback (issue 17, item 7).

One table of ``(argv, expected exit code)``: the fault cases of issue 17 and of the README's "Failure
behaviour" table, fed to every command, plus a few ordinary runs among them. Each row runs the CLI in this
process (``deepcascade.cli.main``; an exception escaping it is printed as a traceback), and must exit with its
code and print no traceback. ``{name}`` in an argument is a path from the ``world`` fixture. To cover a new
command or case, add a row.
"""

import os
import pickle
import shutil

import pytest
from PIL import Image

from deepcascade.fileio import folder_lock

E = 2  # a user error: one message, exit 2

CASES = [
    # --- the command line itself
    ((), E),
    (("no-such-command",), E),
    (("train",), E),  # a required argument missing
    (("--progress-every", "-1", "config"), E),
    # --- config: unknown key, wrong type, out of range, not a choice, sizes, files
    (("config", "--set", "data.imagesize=128"), E),
    (("config", "--set", "data.image_size=abc"), E),
    (("config", "--set", "deep.steps=0"), E),
    (("config", "--set", "backbone.name=resnet"), E),
    (("config", "--set", "data.image_size=100"), E),
    (("config", "--set", "data.image_size=256", "--set", "data.load_size=224"), E),
    (("config", "--set", "backbone.name=efficientnet_lite0", "--set", "data.image_size=128",
      "--set", "data.load_size=144"), E),  # the case
    (("config", "--set", "nonsense"), E),
    (("config", "--config", "{tmp}/missing.yaml"), E),
    (("config", "--config", "{bad_yaml}"), E),
    (("config", "--config", "{not_a_mapping}"), E),
    (("config", "--preset", "no-such-preset"), E),
    (("config",), 0),
    # --- train
    (("train", "{tmp}/missing.yaml", "--stage", "all"), E),
    (("train", "{cfg_missing_data}", "--stage", "all", "--run-dir", "{tmp}/r1"), E),
    (("train", "{cfg_corrupt_domain}", "--stage", "all", "--run-dir", "{tmp}/r2"), E),
    (("train", "{cfg}", "--stage", "invert", "--run-dir", "{run}"), E),  # checkpoints exist, no --resume
    (("train", "{cfg}", "--stage", "deep", "--run-dir", "{run}", "--set", "deep.steps=7"), E),  # other config
    (("train", "{cfg}", "--stage", "deep", "--run-dir", "{run}", "--resume", "{truncated_ckpt}"), E),
    (("train", "{cfg}", "--stage", "deep", "--run-dir", "{run}", "--resume", "{pickle_ckpt}"), E),
    (("train", "{cfg}", "--stage", "deep", "--run-dir", "{run}", "--resume", "{invert_ckpt}"), E),
    (("train", "{cfg}", "--stage", "deep", "--run-dir", "{run}", "--resume", "{tmp}/nothing.pt"), E),
    (("train", "{cfg}", "--stage", "all", "--run-dir", "{locked_run}"), E),  # in use by another process
    (("train", "{cfg}", "--stage", "all", "--run-dir", "{a_file}"), E),
    (("train", "{cfg}", "--stage", "cascade", "--level", "9", "--run-dir", "{tmp}/r3"), E),
    (("train", "{cfg}", "--stage", "all", "--run-dir", "{run}"), 0),  # finished: every stage skipped
    (("train", "{cfg}", "--stage", "all", "--dry-run"), 0),
    # --- translate
    (("translate", "--run", "{photos}", "--input", "{photos}", "--out", "{tmp}/t1"), E),  # not a run
    (("translate", "--run", "{run}", "--input", "{empty}", "--out", "{tmp}/t2"), E),
    (("translate", "--run", "{run}", "--input", "{tmp}/missing", "--out", "{tmp}/t3"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{photos}"), E),  # its own input (issue)
    (("translate", "--run", "{run}", "--input", "{photos}/a.png", "--out", "{photos}"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{a_file}"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{foreign_index}"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{locked_out}"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{tmp}/t4", "--batch-size", "0"), E),
    (("translate", "--run", "{run}", "--input", "{photos}", "--out", "{tmp}/t5", "--final-level", "3"), E),
    (("translate", "--run", "{run}", "--input", "{awkward}", "--out", "{tmp}/t6"), 0),  # tiny, gif, corrupt
    # --- features
    (("features", "--weights", "random", "--images", "{photos}", "--image-size", "100", "--out", "{tmp}/f.safetensors"), E),
    (("features", "--weights", "random", "--images", "{photos}", "--levels", "7", "--out", "{tmp}/f.safetensors"), E),
    (("features", "--weights", "random", "--images", "{photos}", "--out", "{tmp}/f.npy"), E),
    (("features", "--weights", "random", "--images", "{tmp}/missing", "--out", "{tmp}/f.safetensors"), E),
    (("features", "--weights", "{pickle_ckpt}", "--images", "{photos}", "--out", "{tmp}/f.safetensors"), E),
    (("features", "--weights", "imagenet", "--images", "{photos}", "--out", "{tmp}/f.safetensors"), E),  # offline
    (("features", "--weights", "random", "--images", "{empty}", "--out", "{tmp}/f.safetensors"), E),
    # --- prepare
    (("prepare", "synthetic", "--out", "{a_file}"), E),
    (("prepare", "synthetic", "--out", "{tmp}/p1", "--size", "16"), E),
    (("prepare", "synthetic", "--out", "{data}", "--n", "4", "--n-test", "3", "--size", "32", "--seed", "9"), E),
    (("prepare", "synthetic", "--out", "{locked_out}", "--n", "1"), E),
    (("prepare", "coco", "--annotations", "{tmp}/missing.json", "--images", "{photos}", "--categories",
      "zebra,giraffe", "--out", "{tmp}/p2"), E),
    (("prepare", "coco", "--annotations", "{bad_yaml}", "--images", "{photos}", "--categories", "zebra,giraffe",
      "--out", "{photos}/coco"), E),
    (("prepare", "cats-dogs", "--src", "{tmp}/missing", "--out", "{tmp}/p3"), E),
    (("prepare", "afhq", "--src", "{photos}", "--out", "{tmp}/p4"), E),
    (("prepare", "drit", "--src", "{photos}", "--out", "{photos}"), E),
    (("prepare", "folders", "--a", "{photos}", "--b", "{photos}", "--out", "{tmp}/p5"), E),
    (("prepare", "folders", "--a", "{data}/testA", "--b", "{data}/testB", "--out", "{data}"), E),
    # --- evaluate
    (("evaluate",), E),
    (("evaluate", "--fake", "{photos}"), E),
    (("evaluate", "--run", "{photos}", "--out", "{tmp}/e1"), E),
    (("evaluate", "--run", "{tmp}/missing"), E),
    (("evaluate", "--fake", "{photos}", "--real", "{data}/testB", "--out", "{photos}/report"), E),
    (("evaluate", "--fake", "{photos}", "--real", "{data}/testB", "--metrics", "bogus", "--out", "{tmp}/e2"), E),
    (("evaluate", "--fake", "{photos}", "--real", "{data}/testB", "--metrics", "kid", "--out", "{tmp}/e3"), E),
    (("evaluate", "--fake", "{empty}", "--real", "{data}/testB", "--out", "{tmp}/e4"), E),
    (("evaluate", "--run", "{run}", "--out", "{run}"), E),
    # --- synthesize
    (("synthesize", "--run", "{photos}", "--domain", "a", "--out", "{tmp}/s1"), E),
    (("synthesize", "--run", "{run}", "--domain", "a", "--out", "{tmp}/s2"), E),  # no synth stage trained
    (("synthesize", "--run", "{run}", "--domain", "a", "--n", "0", "--out", "{tmp}/s3"), E),
    (("synthesize", "--run", "{run}", "--domain", "a", "--out", "{a_file}"), E),
    # --- finetune
    (("finetune", "{tmp}/missing.yaml"), E),
    (("finetune", "{cfg}", "--run-dir", "{locked_run}"), E),
    (("finetune", "{cfg}", "--run-dir", "{a_file}"), E),
    (("finetune", "{cfg_missing_data}", "--run-dir", "{tmp}/ft1"), E),
    (("finetune", "{cfg}", "--run-dir", "{tmp}/ft2", "--set", "backbone.weights=imagenet"), E),  # offline
    (("finetune", "{cfg}", "--run-dir", "{tmp}/ft3", "--resume", "{truncated_ckpt}"), E),
    # --- demo
    (("demo", "--out", "{a_file}"), E),
]


@pytest.fixture(scope="module")
def world(tiny_run, module_tmp):
    """Paths the table names: a tiny finished run, the user's photos, and broken or awkward inputs."""
    root, cfg, run = tiny_run
    tmp = module_tmp("world")
    w = {"tmp": tmp, "run": run, "cfg": cfg, "data": root / "data"}
    src = sorted((root / "data" / "testA").glob("*.png"))
    w["photos"] = tmp / "photos"
    w["photos"].mkdir()
    for i, p in enumerate(src[:2]):
        shutil.copy(p, w["photos"] / f"{'ab'[i]}.png")
    w["empty"] = tmp / "empty"
    w["empty"].mkdir()
    w["awkward"] = tmp / "awkward"
    w["awkward"].mkdir()
    shutil.copy(src[0], w["awkward"] / "good.png")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(w["awkward"] / "tiny.png")
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(w["awkward"] / "anim.gif", save_all=True, append_images=frames[1:])
    (w["awkward"] / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (w["awkward"] / "empty.png").write_bytes(b"")
    w["a_file"] = tmp / "a_file.txt"
    w["a_file"].write_text("x")
    w["bad_yaml"] = tmp / "bad.yaml"
    w["bad_yaml"].write_text("data: {image_size: [\n")
    w["not_a_mapping"] = tmp / "list.yaml"
    w["not_a_mapping"].write_text("- 1\n- 2\n")
    w["cfg_missing_data"] = tmp / "missing_data.yaml"
    w["cfg_missing_data"].write_text(cfg.read_text().replace(str(root / "data"), str(tmp / "no_data")))
    corrupt = tmp / "corrupt_data"
    for sub in ("trainA", "trainB"):
        (corrupt / sub).mkdir(parents=True)
        (corrupt / sub / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    w["cfg_corrupt_domain"] = tmp / "corrupt.yaml"
    w["cfg_corrupt_domain"].write_text(cfg.read_text().replace(str(root / "data"), str(corrupt)))
    ckpts = sorted((run / "checkpoints").glob("deep-*.pt"))
    w["truncated_ckpt"] = tmp / "deep-0000001.pt"
    w["truncated_ckpt"].write_bytes(ckpts[-1].read_bytes()[:1000])
    w["pickle_ckpt"] = tmp / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    w["pickle_ckpt"].write_bytes(pickle.dumps({"step": Evil()}))
    w["invert_ckpt"] = sorted((run / "checkpoints").glob("invert*.pt"))[-1]
    w["foreign_index"] = tmp / "site"
    w["foreign_index"].mkdir()
    (w["foreign_index"] / "index.html").write_text("<html>mine</html>")
    w["locked_out"] = tmp / "locked_out"
    w["locked_run"] = tmp / "locked_run"
    return w


@pytest.mark.parametrize("argv, code", CASES, ids=[" ".join(a)[:60] or "(none)" for a, _ in CASES])
def test_no_input_ends_in_a_traceback(world, argv, code, dc, monkeypatch):
    monkeypatch.setenv("DEEPCASCADE_OFFLINE", "1")  # no download may rescue a missing-weights case
    monkeypatch.setenv("TORCH_HOME", str(world["tmp"] / "torch_home"))
    monkeypatch.delenv("DEEPCASCADE_VGG19_WEIGHTS", raising=False)
    monkeypatch.chdir(world["tmp"])
    args = [a.format(**world) for a in argv]
    with folder_lock(world["locked_out"], "output folder"), folder_lock(world["locked_run"], "run directory"):
        r = dc(*args)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    assert r.returncode == code, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    if code == E and argv:  # (no command at all prints the help)
        assert "error" in r.stderr.lower(), r.stderr  # one message saying what is wrong
    assert not (world["tmp"] / "pwned").exists()
