"""``deepcascade serve``: a local gradio page to translate images with a run, and sample its deepVAEs.

:class:`ServeSession` holds the run's networks and does the work (plain Python, testable without a browser);
:func:`build_app` lays it out as a gradio page. Uploads and results live in a temporary folder of the session,
removed when the process ends; nothing is written into the run directory (with ``optimize``, only
torch.compile's cache in ``RUN/cache/compiled``). Every request's failure (a corrupt, huge or non-image
upload) becomes a message in the page and one log line, never a traceback.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import torch
from PIL import Image

from ..data.images import list_images, load_image
from ..data.transforms import to_pil
from ..errors import UserError

log = logging.getLogger("deepcascade")

MAX_IMAGES = 16  # per request: the queue serves everyone in turn
MAX_BYTES = 25 * 1024 * 1024  # per upload
MAX_PIXELS = 40_000_000  # per upload, read from the header before decoding
MAX_PICKS = 200  # test images listed per domain
MAX_FIGURES = 40
#: images per compiled call with --optimize: a request's images go one at a time through one graph per direction
#: (most requests hold one image; a larger batch would be padded, and each batch size is another compilation)
OPTIMIZE_BATCH = 1
EXTRA_HINT = "pip install 'deepcascade[serve]'"


def import_gradio():
    """gradio, or a UserError saying how to install it (its telemetry off: the page is local)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError:
        raise UserError(f"gradio is not installed: {EXTRA_HINT}") from None
    return gradio


def _one_line(e: BaseException) -> str:
    return (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0][:200]


class ServeSession:
    """A run opened for the page: translation both ways, deepVAE sampling where trained, evaluation figures."""

    def __init__(self, run_dir: str | Path, device: str = "auto", eval_dir: str | Path | None = None,
                 precision: str | None = None, optimize: bool = False):
        from ..inference.translator import Translator

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise UserError(f"--run not found: {run_dir}")
        self.eval_dir = Path(eval_dir) if eval_dir else self.run_dir / "eval"
        if eval_dir and not (self.eval_dir / "metrics.json").is_file():
            raise UserError(f"--eval {eval_dir} holds no metrics.json; give the folder `deepcascade evaluate` wrote")
        self.translator = Translator.from_run(run_dir, device=device, precision=precision, optimize=optimize)
        self.image_size = self.translator.image_size
        if self.translator.fast is not None:
            self._compile()
        self.synth_domains, self.synthesizer = self._synthesis()
        self.work = Path(tempfile.mkdtemp(prefix="deepcascade-serve-"))
        atexit.register(shutil.rmtree, self.work, True)
        cfg = self.translator.trained.cfg.data
        self.picks = {f"{name}/{p.name}": p for name, folder in (("testA", cfg.test_a), ("testB", cfg.test_b))
                      if folder and Path(folder).is_dir() for p in list_images(folder)[:MAX_PICKS]}

    def _compile(self):
        """Compile what a request runs (both directions, with levels) before the page is served."""
        fast = self.translator.fast
        fast.batch_size = OPTIMIZE_BATCH
        if fast.disabled:
            return
        log.info("serve: compiling the fast path for a2b and b2a before serving (a minute or more on a CPU the "
                 "first time, seconds once cached)")
        x = torch.zeros(OPTIMIZE_BATCH, 3, self.image_size, self.image_size)
        for direction in ("a2b", "b2a"):
            self.translator.translate_tensor(x, direction, return_levels=True)

    def _synthesis(self):
        from ..inference.synthesizer import Synthesizer

        synth = Synthesizer(self.translator.trained, "fp32")
        domains = []
        for d in ("a", "b"):
            try:
                synth.model(d)
                domains.append(d)
            except (UserError, FileNotFoundError, KeyError):
                continue
        return domains, (synth if domains else None)

    def describe(self) -> str:
        t = self.translator
        return (f"run **{t.trained.cfg.name}** ({self.run_dir.resolve()}): backbone {t.trained.backbone.name}, "
                f"{self.image_size} px, final level {t.final_level}, on {t.device}, {t.precision}"
                f"{', compiled' if t.fast is not None and not t.fast.disabled else ''}")

    # ------------------------------------------------------------------------------------------ translate
    def _open(self, path: Path) -> Image.Image:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"too large ({size / 1e6:.0f} MB; at most {MAX_BYTES / 1e6:.0f} MB)")
        with Image.open(path) as probe:
            w, h = probe.size
        if w * h > MAX_PIXELS:
            raise ValueError(f"too large ({w}x{h} pixels; at most {MAX_PIXELS / 1e6:.0f} megapixels)")
        return load_image(path, max_side=4 * self.image_size)

    def translate(self, uploads, picks, direction: str):
        """Translate uploaded files (paths) and picked test images (names of :attr:`picks`).

        Returns (gallery items [(image path, caption)], downloadable result paths, message in Markdown)."""
        if direction not in ("a2b", "b2a"):
            return [], [], f"unknown direction {direction!r}"
        sources = [(Path(p).name, Path(p)) for p in (uploads or [])]
        sources += [(name, self.picks[name]) for name in (picks or []) if name in self.picks]
        if not sources:
            return [], [], "Upload an image or pick one of the run's test images."
        notes = []
        if len(sources) > MAX_IMAGES:
            notes.append(f"{len(sources)} images given; translated the first {MAX_IMAGES}.")
            sources = sources[:MAX_IMAGES]
        names, batch = [], []
        for name, path in sources:
            try:
                batch.append(self.translator.preprocess(self._open(path)))
                names.append(name)
            except Exception as e:  # the page says why; the log gets one line
                reason = str(e) if isinstance(e, ValueError) and "too large" in str(e) else _one_line(e)
                reason = reason.replace(str(path), name)  # uploads live under a temporary name
                notes.append(f"**{name}**: not translated, {reason}")
                log.warning("serve: %s not translated: %s", name, reason)
        if not batch:
            return [], [], "\n\n".join(notes)
        try:
            x = torch.stack(batch)
            result, levels = self.translator.translate_tensor(x, direction, return_levels=True)
        except Exception as e:
            log.warning("serve: translation failed: %s", _one_line(e))
            return [], [], "\n\n".join(notes + [f"translation failed: {_one_line(e)}"])
        folder = self.work / uuid.uuid4().hex
        folder.mkdir()
        gallery, files = [], []
        order = sorted(levels, reverse=True)
        caption = f"{direction} translation, then source | " + " | ".join(f"I_{l}(level {l})" for l in order)
        gap = torch.ones(3, self.image_size, max(4, self.image_size // 8))
        for j, name in enumerate(names):
            stem = Path(name).stem
            out, row = folder / f"{stem}_{direction}.png", folder / f"{stem}_{direction}_levels.png"
            to_pil(result[j]).save(out)
            # the translation, a white gap, then the per-level strip: one picture per image
            to_pil(torch.cat([result[j], gap, x[j]] + [levels[l][j] for l in order], dim=2)).save(row)
            gallery.append((str(row), f"{name}: {caption}"))
            files.append(str(out))
        notes.insert(0, f"Translated {len(names)} image(s) {direction}.")
        return gallery, files, "\n\n".join(notes)

    # ------------------------------------------------------------------------------------------ synthesize
    def synthesize(self, domain: str, seed, count):
        """``count`` deepVAE samples of ``domain`` for ``seed``: (gallery items, message)."""
        if self.synthesizer is None or domain not in self.synth_domains:
            return [], f"no deepVAE of domain {str(domain).upper()} in this run"
        try:
            seed, count = int(seed), int(count)
            if not 1 <= count <= MAX_IMAGES:
                raise ValueError(f"count must be 1..{MAX_IMAGES}, got {count}")
            images = self.synthesizer.sample(count, domain, seed=seed)
        except Exception as e:
            log.warning("serve: synthesis failed: %s", _one_line(e))
            return [], f"synthesis failed: {_one_line(e)}"
        folder = self.work / uuid.uuid4().hex
        folder.mkdir()
        items = []
        for i, im in enumerate(images):
            path = folder / f"{domain}_seed{seed}_{i:03d}.png"
            im.save(path)
            items.append((str(path), f"{domain.upper()} #{i} (seed {seed})"))
        return items, f"{count} sample(s) of domain {domain.upper()}, seed {seed}."

    # ------------------------------------------------------------------------------------------ evaluation
    def evaluation(self):
        """The run's ``evaluate`` report (:attr:`eval_dir`, default ``RUN/eval``): (summary lines in Markdown,
        figure paths, without the translations and caches it scored); None when there is none."""
        from ..evaluation.report import summary_lines

        folder = self.eval_dir
        metrics = folder / "metrics.json"
        if not metrics.is_file():
            return None
        try:
            lines = summary_lines(json.loads(metrics.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError, TypeError) as e:
            lines = [f"cannot read {metrics}: {_one_line(e)}"]
        figures = [p for p in sorted(folder.rglob("*.png"))
                   if not {"cache", "translations"} & set(p.relative_to(folder).parts)]
        return "\n".join(f"- `{line}`" for line in lines), [str(p) for p in figures[:MAX_FIGURES]]


#: wide pictures (translation | strip) at their own aspect ratio rather than in gradio's square thumbnails
CSS = "#translations .thumbnail-item { aspect-ratio: auto !important; height: auto !important; }"


def build_app(session: ServeSession, concurrency: int = 1):
    """The gradio page of ``session``; requests queue, ``concurrency`` computed at a time."""
    gr = import_gradio()
    styled = "css" not in inspect.signature(gr.Blocks.launch).parameters  # gradio 5 styles the Blocks
    with gr.Blocks(title="deepcascade", analytics_enabled=False, **({"css": CSS} if styled else {})) as app:
        gr.Markdown(f"## deepcascade: cross-domain cascaded translation\n{session.describe()}")
        with gr.Tab("Translate"):
            with gr.Row():
                with gr.Column(scale=1):
                    uploads = gr.File(label="images", file_count="multiple", type="filepath",
                                      file_types=["image"])
                    picks = gr.Dropdown(choices=list(session.picks), multiselect=True, value=[],
                                        label="or the run's test images")
                    direction = gr.Radio(["a2b", "b2a"], value="a2b", label="direction")
                    go = gr.Button("Translate", variant="primary")
                with gr.Column(scale=2):
                    message = gr.Markdown()
                    gallery = gr.Gallery(label="translation | source, I_5, ..., I_final", columns=1,
                                         object_fit="contain", height="auto", elem_id="translations")
                    downloads = gr.File(label="download", file_count="multiple", interactive=False)
            go.click(session.translate, [uploads, picks, direction], [gallery, downloads, message],
                     api_name="translate")
        if session.synth_domains:
            with gr.Tab("Synthesize"):
                with gr.Row():
                    domain = gr.Radio(session.synth_domains, value=session.synth_domains[0], label="domain")
                    seed = gr.Number(value=0, precision=0, label="seed")
                    count = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="count")
                sample = gr.Button("Sample", variant="primary")
                synth_message = gr.Markdown()
                samples = gr.Gallery(label="deepVAE samples", columns=4, height="auto")
                sample.click(session.synthesize, [domain, seed, count], [samples, synth_message],
                             api_name="synthesize")
        report = session.evaluation()
        if report is not None:
            with gr.Tab("Evaluation"):
                gr.Markdown(f"`deepcascade evaluate` report in {session.eval_dir}:\n\n{report[0]}")
                if report[1]:
                    gr.Gallery(value=report[1], label="figures", columns=3, height="auto")
    app.queue(default_concurrency_limit=concurrency, max_size=64)
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860) -> str:
    """Start the server in a background thread; returns its URL (``app.close()`` stops it)."""
    style = {"css": CSS} if "css" in inspect.signature(app.launch).parameters else {}  # gradio 6 styles here
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                               show_error=False, max_file_size=MAX_BYTES, ssr_mode=False, **style)
    except OSError as e:
        log.debug("launch failed: %s", _one_line(e))
        raise UserError(f"cannot listen on {host}:{port} (the port is in use, or {host} is not an address of this "
                        f"machine); choose another --port or --host") from None
    return url
