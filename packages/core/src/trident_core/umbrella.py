"""The ``trident`` command: lists installed domains, forwards to them, and runs the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trident_core.domain import installed_domains


def _parser(domains: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trident",
        description="Trident: one Lightning core, many domains. `trident <domain> fit|validate|test|predict|"
        "export|infer ...` runs a domain's CLI (same as `trident-<domain> ...`).",
        epilog=f"installed domains: {', '.join(domains) or 'none'}",
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="run every installed domain end to end on its embedded data")
    demo.add_argument("--domain", nargs="+", choices=domains, help="only these domains (default: all installed)")
    demo.add_argument("--output", default="runs/demo", help="folder for data, runs and artifacts")
    sub.add_parser("domains", help="list installed domains")
    pipe = sub.add_parser("pipeline", help="run artifacts one after the other offline (audio then nlp: speech -> "
                          "intent), as `serve` with several --artifact does")
    pipe.add_argument("--artifact", required=True, action="append", help="artifact folders, in order")
    pipe.add_argument("--input", required=True, help="the first artifact's input (audio: file, folder or manifest)")
    pipe.add_argument("--output", help="JSONL file (or folder: pipeline.jsonl); default: JSONL on stdout")
    serve = sub.add_parser("serve", help="serve an exported artifact over HTTP (POST /predict, GET /health)")
    serve.add_argument("--artifact", required=True, action="append",
                       help="artifact folder written by `export`; twice (audio then nlp) for the speech -> intent "
                       "pipeline")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: local only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max_batch_size", type=int, default=8, help="requests batched into one model call")
    serve.add_argument("--batch_timeout", type=float, default=0.01, help="seconds to wait for a batch to fill")
    serve.add_argument("--workers", type=int, default=1, help="worker processes, each with its own model")
    serve.add_argument("--max_body_mb", type=float, default=64.0, help="largest request body (413 above)")
    serve.add_argument("--max_audio_seconds", type=float, default=120.0, help="longest audio (413 above)")
    serve.add_argument("--max_voxels", type=int, default=512**3, help="largest volume (413 above)")
    serve.add_argument("--providers", nargs="+", help="onnxruntime execution providers, in order (default: "
                       "CUDAExecutionProvider when onnxruntime-gpu is installed, else CPUExecutionProvider)")
    serve.add_argument("--max_queue", type=int, default=256, help="requests in flight before 503")
    for name in domains:
        sub.add_parser(name, help=f"the {name} domain's CLI (`trident {name} --help`)", add_help=False)
    return parser


def main(args: list[str] | None = None) -> None:
    """Entry point of ``trident``."""
    argv = list(sys.argv[1:] if args is None else args)
    domains = installed_domains()
    if argv and argv[0] in domains:
        from trident_core.entry import main as run_domain_main

        run_domain_main(domains[argv[0]], argv[1:])
        return
    ns = _parser(sorted(domains)).parse_args(argv)
    if ns.command == "domains":
        for name, spec in domains.items():
            print(f"{name}\t{spec.description}")
    elif ns.command == "demo":
        from trident_core.demo import pipeline_pairs, print_summary, run_domain_demo, run_pipeline_demo

        chosen = ns.domain or sorted(domains)
        if not chosen:
            print("no Trident domain is installed; install trident-nlp, trident-vision or trident-audio")
            raise SystemExit(1)
        print(f"trident demo: domains installed: {', '.join(sorted(domains))}; running: {', '.join(chosen)}")
        rows = [run_domain_demo(domains[name], Path(ns.output)) for name in chosen]
        rows += [run_pipeline_demo(a, b, Path(ns.output)) for a, b in pipeline_pairs(domains, rows)]
        print_summary(rows)
        if any(row.error for row in rows):
            raise SystemExit(1)
    elif ns.command == "serve":
        _serve(ns)
    elif ns.command == "pipeline":
        _pipeline(ns)
    else:
        _parser(sorted(domains)).print_help()


def _pipeline(ns: argparse.Namespace) -> None:
    import json

    from trident_core.errors import TridentError
    from trident_core.serve import pipeline

    try:
        rows = pipeline(ns.artifact, ns.input, ns.output)
    except TridentError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if ns.output is None:
        for row in rows:
            print(json.dumps(row))


def _serve(ns: argparse.Namespace) -> None:
    from trident_core.errors import TridentError
    from trident_core.serve import Limits, serve

    limits = Limits(max_body_bytes=int(ns.max_body_mb * 2**20), max_audio_seconds=ns.max_audio_seconds,
                    max_voxels=ns.max_voxels, max_queue=ns.max_queue)
    try:
        serve(ns.artifact, host=ns.host, port=ns.port, max_batch_size=ns.max_batch_size,
              batch_timeout=ns.batch_timeout, workers=ns.workers, limits=limits, providers=ns.providers)
    except TridentError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
