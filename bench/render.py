"""Renders per second of the 50-mention bulk email (HTML and text parts): our engine vs handlebars.js.

    PYTHONPATH=. .venv/bin/python bench/render.py [--renders N] [--node-renders N]

Needs node and ``tools/render-oracle/node_modules`` (``cd tools/render-oracle && npm ci``) for the
handlebars.js figure; without them it prints ours only. Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from workers.rendering import TemplateStore, default_templates_dir, mention_template_data
from workers.rendering.store import Part

ROOT = Path(__file__).resolve().parent.parent
ORACLE = ROOT / "tools" / "render-oracle"
TEMPLATE = "mention-notification-bulk"
PARTS: tuple[Part, ...] = ("html", "text")


def bulk_place_holders(count: int = 50) -> dict[str, object]:
    mentions = [
        {
            "tracking_unit_name": "Acme Brand Watch",
            "program_name": f"Program {i} <Morning & Evening>",
            "program_image": f"https://images.example.com/programs/{i}.jpg",
            "mention_date": str(1764062400 + i * 3600),
            "snippets": f'...and Acme\'s plant #{i} opens in spring, said the "spokesperson"...',
            "invite_link": f"https://app.example.com/mentions/{4400 + i}?invite=1&src=email",
            "via": "Broadcast",
            "logouri": "https://cdn.example.com/brand/logo.png",
            "creator_email": "analyst@example.com",
            "unsubscribe_hash": "a3f9c2e17b",
            "unsubscribe_link": "https://app.example.com/unsubscribe/a3f9c2e17b",
        }
        for i in range(count)
    ]
    return {
        "tracking_unit_name": "Acme Brand Watch",
        "via": "Broadcast",
        "logouri": "https://cdn.example.com/brand/logo.png",
        "mentions": mentions,
    }


def ours(renders: int) -> float:
    store = TemplateStore(default_templates_dir())
    data = mention_template_data(bulk_place_holders(), from_name="Alerts", service_name="mentions")
    for part in PARTS:  # compile outside the timed loop, as the worker does
        store.render(TEMPLATE, part, "handlebars", data)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(renders):
            for part in PARTS:
                store.render(TEMPLATE, part, "handlebars", data)
        best = max(best, renders / (time.perf_counter() - start))
    return best


def handlebars_js(renders: int) -> tuple[float, str] | None:
    node = shutil.which("node")
    if node is None or not (ORACLE / "node_modules" / "handlebars").is_dir():
        return None
    data = mention_template_data(bulk_place_holders(), from_name="Alerts", service_name="mentions")
    sources = [
        (default_templates_dir() / TEMPLATE / f"{part}.hbs").read_text(encoding="utf-8") for part in PARTS
    ]
    job = json.dumps({"templates": sources, "data": data, "renders": renders})
    best = 0.0
    version = ""
    for _ in range(3):
        done = subprocess.run(
            [node, str(ORACLE / "bench.js")],
            input=job,
            capture_output=True,
            text=True,
            check=True,
            cwd=ORACLE,
        )
        result = json.loads(done.stdout)
        best = max(best, float(result["renders_per_second"]))
        version = str(result["version"])
    return best, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=1000)
    parser.add_argument("--node-renders", type=int, default=10000)
    args = parser.parse_args()
    python_rate = ours(args.renders)
    print(f"bulk email, 50 mentions, parts {'+'.join(PARTS)} (best of 3)")
    print(f"  workers.rendering : {python_rate:10.0f} renders/s ({1000 / python_rate:.3f} ms each)")
    node = handlebars_js(args.node_renders)
    if node is None:
        print("  handlebars.js     : not measured (needs node and tools/render-oracle/node_modules)")
        return
    node_rate, version = node
    print(f"  handlebars.js {version}: {node_rate:10.0f} renders/s ({1000 / node_rate:.3f} ms each)")
    print(f"  ratio (ours / handlebars.js): {python_rate / node_rate:.3f}x")


if __name__ == "__main__":
    main()
