"""The ``maskae`` command line. Errors are printed as one clear line, not a traceback."""

from __future__ import annotations

import argparse
import os
import sys

# Nothing this tool starts may try to reach the internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskae", description="Batch anomaly detection with masked autoencoders.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train on generated card transactions and show the most anomalous")
    demo.add_argument("--customers", type=int, default=3000, help="customers to simulate (default 3000)")
    demo.add_argument("--top", type=int, default=10, help="how many records to print (default 10)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide the training progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from flows.demo import run_demo

            run_demo(n_customers=args.customers, top=args.top, seed=args.seed, progress=not args.no_progress)
    except (ValueError, KeyError, FileNotFoundError, NotImplementedError) as error:
        print(f"maskae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
