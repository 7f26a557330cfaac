"""`python -m meshkit.plane.alerts --prometheus-rules`: print the alert thresholds as Prometheus rules.

The same as `meshkit alerts --prometheus-rules`; every threshold of `AlertRules` is an option.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from meshkit.plane.alerts.prometheus import prometheus_rules
from meshkit.plane.alerts.rules import AlertRules


def parse_rules(argv: list[str] | None = None) -> tuple[argparse.Namespace, AlertRules]:
    parser = argparse.ArgumentParser(prog="meshkit alerts", description=__doc__)
    parser.add_argument("--prometheus-rules", action="store_true", help="print a Prometheus rules file")
    parser.add_argument("--for", dest="for_", default="1m", help="how long a condition holds before firing")
    parser.add_argument("--window", default="5m", help="rate() window for error rate and latency")
    for f in fields(AlertRules):
        kind = {"bool": None, "int": int}.get(str(f.type), float)
        flag = "--" + f.name.replace("_", "-")
        if kind is None:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=kind, default=f.default)
    args = parser.parse_args(argv)
    rules = AlertRules(**{f.name: getattr(args, f.name) for f in fields(AlertRules)})
    return args, rules


def main(argv: list[str] | None = None) -> int:
    try:
        args, rules = parse_rules(argv)
        if not args.prometheus_rules:
            print(rules.as_dict())
            return 0
        sys.stdout.write(prometheus_rules(rules, for_=args.for_, window=args.window))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
