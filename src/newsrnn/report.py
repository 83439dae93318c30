"""Stage ``report``: one static HTML page comparing every candidate, readable offline.

It reads only what the pipeline wrote (``metrics/*.json``, ``plots/<arch>/confusion.csv``,
``artifacts/champion.json``), so its numbers are those of ``dvc metrics show``. No script, no
CDN: the scatter is inline SVG, the styles are inline. Every number sits in a cell tagged with
``data-arch`` and ``data-key`` (the metrics key), which is how the browser test checks it.
The page is also attached to the champion's MLflow run (artifact ``report/index.html``).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any

from newsrnn.config import CLASS_NAMES, Config
from newsrnn.fileio import read_metrics, write_text

# (metrics key, column title, digits)
COLUMNS = (
    ("val_accuracy", "val acc", 4), ("test_accuracy", "test acc", 4), ("macro_f1", "test macro-F1", 4),
    *((f"f1:{c}", f"F1 {c}", 4) for c in CLASS_NAMES),
    ("train_seconds", "train s", 1), ("latency_p50_ms", "latency p50 ms", 2), ("latency_p99_ms", "p99 ms", 2),
    ("throughput_per_s", "batch texts/s", 0), ("model_size_mb", "size MB", 2),
)


def fmt(value: Any, digits: int) -> str:
    """A number as the page shows it (``-`` when it was not measured)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{float(value):,.{digits}f}" if digits == 0 else f"{float(value):.{digits}f}"


def cell_value(m: dict[str, Any], key: str) -> Any:
    """The value of a column for one candidate's metrics."""
    if key.startswith("f1:"):
        return m.get("per_class", {}).get(key[3:], {}).get("f1")
    return m.get(key)


def load_candidates(cfg: Config, metrics_dir: str | Path = "metrics",
                    plots_dir: str | Path = "plots") -> list[dict[str, Any]]:
    """Every evaluated candidate's metrics (skipped ensembles left out), with its test confusion matrix."""
    names = [*cfg.models, *(["ensemble"] if cfg.ensemble else [])]
    out = []
    for name in names:
        p = Path(metrics_dir) / f"{name}.json"
        if not p.exists():
            continue
        m = read_metrics(p)
        if m.get("skipped"):
            continue
        cm_path = Path(plots_dir) / name / "confusion.csv"
        if cm_path.exists():
            with open(cm_path, newline="") as f:
                rows = list(csv.reader(f))
            m["_confusion"] = [[int(v) for v in r[1:]] for r in rows[1:]]
        out.append(m)
    return out


def _scatter(cands: list[dict[str, Any]], champion: str | None) -> str:
    """Validation accuracy against single-text latency, champion ringed; inline SVG."""
    pts = [(m["arch"], m.get("latency_p50_ms"), m["val_accuracy"]) for m in cands
           if m.get("latency_p50_ms") is not None]
    if not pts:
        return "<p>No latency measured (re-run <code>newsrnn evaluate</code>).</p>"
    w, h, pad = 640, 360, 56
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    x0, x1 = 0.0, max(xs) * 1.15 or 1.0
    y0, y1 = min(ys), max(ys)
    margin = max((y1 - y0) * 0.15, 0.005)
    y0, y1 = y0 - margin, y1 + margin

    def sx(v: float) -> float:
        return pad + (v - x0) / (x1 - x0) * (w - 2 * pad)

    def sy(v: float) -> float:
        return h - pad - (v - y0) / (y1 - y0) * (h - 2 * pad)

    parts = [f'<svg id="scatter" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'viewBox="0 0 {w} {h}" role="img" aria-label="validation accuracy vs latency">',
             f'<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>']
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{h - pad + 18}" font-size="11" text-anchor="middle">{xv:.2f}</text>')
        parts.append(f'<text x="{pad - 6}" y="{sy(yv) + 4:.1f}" font-size="11" text-anchor="end">{yv:.3f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 12}" font-size="12" text-anchor="middle">'
                 'single-text latency p50 (ms), lower is better</text>')
    parts.append(f'<text x="14" y="{h / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {h / 2})">validation accuracy</text>')
    for arch, x, y in pts:
        champ = arch == champion
        color = "#d62728" if champ else "#1f77b4"
        parts.append(f'<g class="point{" champion" if champ else ""}" data-arch="{html.escape(arch)}">'
                     f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{7 if champ else 5}" fill="{color}"/>'
                     + (f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="12" fill="none" stroke="{color}" '
                        'stroke-width="2"/>' if champ else "")
                     + f'<text x="{sx(x) + 10:.1f}" y="{sy(y) - 8:.1f}" font-size="12">'
                     f'{html.escape(arch)}{" (champion)" if champ else ""}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _confusion_table(arch: str, cm: list[list[int]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in CLASS_NAMES)
    rows = "".join(f"<tr><th>{html.escape(CLASS_NAMES[i])}</th>"
                   + "".join(f'<td class="n">{v}</td>' for v in row) + "</tr>" for i, row in enumerate(cm))
    return (f'<figure class="cm" data-arch="{html.escape(arch)}"><figcaption>{html.escape(arch)} '
            '(test; rows actual, columns predicted)</figcaption>'
            f'<table><tr><th></th>{head}</tr>{rows}</table></figure>')


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}
th,td{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.champion td{background:#fff3cd;font-weight:600}
.cms{display:flex;flex-wrap:wrap;gap:1.5em}
figure.cm{margin:0}
.note{color:#555}
"""


def render(cands: list[dict[str, Any]], champion: dict[str, Any] | None) -> str:
    """The whole page as one HTML string."""
    champ = (champion or {}).get("arch")
    best_val = max(m["val_accuracy"] for m in cands) if cands else None
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t, _ in COLUMNS)
    rows = []
    for m in cands:
        arch = html.escape(m["arch"])
        mark = " &#9733; champion" if m["arch"] == champ else ""
        cells = "".join(f'<td class="n" data-arch="{arch}" data-key="{html.escape(k)}">{fmt(cell_value(m, k), d)}</td>'
                        for k, _, d in COLUMNS)
        rows.append(f'<tr class="candidate{" champion" if m["arch"] == champ else ""}" data-arch="{arch}">'
                    f"<td>{arch}{mark}</td>{cells}</tr>")
    if champion and champion.get("version") is not None:
        champ_line = (f"Champion: <b id=\"champion\">{html.escape(str(champ))}</b>, "
                      f"{html.escape(str(champion.get('name')))} v{champion.get('version')} "
                      f"(<code>{html.escape(str(champion.get('model_uri')))}</code>).")
    else:
        champ_line = "No champion registered yet."
    cand = (champion or {}).get("candidate") or {}
    if cand and not cand.get("promoted", True):
        champ_line += (f" Candidate {html.escape(str(cand.get('arch')))} v{cand.get('version')} was not promoted: "
                       f"{html.escape('; '.join(cand.get('reasons', [])))}.")
    cms = "".join(_confusion_table(m["arch"], m["_confusion"]) for m in cands if m.get("_confusion"))
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>newsrnn: candidates compared</title>
<style>{STYLE}</style></head><body>
<h1>newsrnn: every candidate, side by side</h1>
<p>{champ_line}</p>
<p class="note">Chosen on validation accuracy only (best: {fmt(best_val, 4)}); test is reported, never optimised on.
Latency: one text per call through the exported model on the machine that ran <code>evaluate</code>;
throughput: the whole test split as one batch. Generated {when} from <code>metrics/*.json</code>
(data sha256 <code>{html.escape(str((champion or {}).get("data_sha256") or "unknown"))}</code>).</p>
<h2>Metrics</h2>
<table id="candidates"><tr><th>candidate</th>{head}</tr>{"".join(rows)}</table>
<h2>Validation accuracy vs latency</h2>
{_scatter(cands, champ)}
<h2>Confusion matrices (test)</h2>
<div class="cms">{cms or "<p>No confusion matrices found under plots/.</p>"}</div>
</body></html>
"""


def report(cfg: Config, metrics_dir: str | Path = "metrics", plots_dir: str | Path = "plots",
           champion_path: str | Path = "artifacts/champion.json", out_path: str | Path = "reports/index.html",
           log_to_mlflow: bool = True) -> Path:
    """Write the comparison page; attach it to the champion's MLflow run when there is one."""
    cands = load_candidates(cfg, metrics_dir, plots_dir)
    if not cands:
        from newsrnn.register import RegisterError

        raise RegisterError(f"{metrics_dir}: no evaluated candidates; run `newsrnn evaluate` first")
    champion = json.loads(Path(champion_path).read_text()) if Path(champion_path).exists() else None
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(out_path, render(cands, champion))
    run_id = next((m.get("run_id") for m in cands if champion and m["arch"] == champion.get("arch")), None)
    if log_to_mlflow and run_id and cfg.mlflow.enabled:
        from newsrnn.tracking import Tracker

        tracker = Tracker(cfg.tracking_uri(), cfg.mlflow.experiment)

        def attach() -> None:
            import mlflow

            mlflow.MlflowClient(cfg.tracking_uri()).log_artifact(run_id, str(out_path), "report")

        tracker.call("log report", attach)
    print(f"report: {len(cands)} candidates -> {out_path}")
    return out_path
