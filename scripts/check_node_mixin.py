#!/usr/bin/env python3
"""Evaluates every alert and recording rule of node-mixin against two VictoriaMetrics, one fed by node_exporter
(scraped, job="node") and one fed by GoMon (gomon up's remote write), and compares them expression by expression.

"Returns data" is asked of the expression with every comparison made a `bool` comparison (`x > 0.75` becomes
`x > bool 0.75`), so that an alert whose condition is false still shows whether its series exist and match; the
expression as written is evaluated too, to show which alerts would fire. A recording rule used by another
expression (instance:node_num_cpu:sum) is replaced by its own expression, since nothing records it here.

Fails when an expression returns data on node_exporter's side and not on GoMon's, unless it is listed in
EXCEPTIONS with the reason. Prints the figures: expressions with data on each side, series per host, and the
process figures the shell script measured (passed in as --figures JSON).
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request

# Expressions node_exporter can have data for that GoMon does not produce, and why. Only consulted when the case
# arises: an expression listed here that has data on both sides, or on neither, is reported as usual.
EXCEPTIONS = {
    "NodeSystemdServiceFailed": "reads node_systemd_unit_state: node_exporter's systemd collector is disabled by "
    "default (Debian's package enables it; it talks to systemd over D-Bus), and GoMon has none",
    "NodeSystemdServiceCrashlooping": "reads node_systemd_service_restart_total: node_exporter's systemd collector "
    "is disabled by default (see NodeSystemdServiceFailed), and GoMon has none",
}

COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def with_bool(expr):
    """`expr` with `bool` after every comparison operator outside label matchers, ranges and strings."""
    out = []
    i = 0
    depth_brace = depth_bracket = 0
    quote = None
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
            continue
        if c in "\"'`":
            quote = c
        elif c == "{":
            depth_brace += 1
        elif c == "}":
            depth_brace -= 1
        elif c == "[":
            depth_bracket += 1
        elif c == "]":
            depth_bracket -= 1
        elif depth_brace == 0 and depth_bracket == 0:
            op = next((op for op in COMPARISONS if expr.startswith(op, i)), None)
            if op:
                out.append(op)
                i += len(op)
                if not re.match(r"\s*bool\b", expr[i:]):
                    out.append(" bool")
                continue
        out.append(c)
        i += 1
    return "".join(out)


def inline_records(expr, records):
    """Replaces each recorded series (with its selector, if any) by its rule's expression in parentheses."""
    for name, body in records.items():
        pattern = r"(?<![A-Za-z0-9_:])" + re.escape(name) + r"(?![A-Za-z0-9_:])(\{[^}]*\})?"
        expr = re.sub(pattern, lambda _m, body=body: "(" + body.strip() + ")", expr)
    return expr


def query(base, expr, at):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as error:
        return None, error.read().decode(errors="replace")[:300]
    if body.get("status") != "success":
        return None, json.dumps(body)[:300]
    return body["data"]["result"], None


def scalar(base, expr, at):
    result, error = query(base, expr, at)
    if error or not result:
        return None
    return float(result[0]["value"][1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mixin", required=True, help="JSON of rules-and-alerts.jsonnet")
    parser.add_argument("--node-exporter", required=True, help="VictoriaMetrics fed by node_exporter")
    parser.add_argument("--gomon", required=True, help="VictoriaMetrics fed by GoMon")
    parser.add_argument("--figures", default="{}", help="JSON of process figures to print")
    args = parser.parse_args()

    with open(args.mixin) as file:
        mixin = json.load(file)
    records = {rule["record"]: rule["expr"] for rule in mixin["rules"]}
    expressions = [("alert", rule["alert"], rule["expr"], rule.get("labels", {}).get("severity", ""))
                   for rule in mixin["alerts"]]
    expressions += [("record", rule["record"], rule["expr"], "") for rule in mixin["rules"]]
    # The same instant on both sides, a little in the past so that the last samples have landed.
    at = time.time() - 10

    sides = {"node_exporter": args.node_exporter, "gomon": args.gomon}
    rows = []
    failures = []
    excepted = []
    errors = []
    for kind, name, expr, severity in expressions:
        inlined = inline_records(expr, {k: v for k, v in records.items() if k != name})
        row = {"kind": kind, "name": name, "severity": severity}
        for side, base in sides.items():
            data, error = query(base, with_bool(inlined), at)
            firing, error2 = query(base, inlined, at) if kind == "alert" else (None, None)
            if error or error2:
                errors.append(f"{name} on {side}: {error or error2}")
            row[side] = len(data or [])
            row[side + "_firing"] = len(firing or []) if kind == "alert" else None
        rows.append(row)
        if row["node_exporter"] > 0 and row["gomon"] == 0:
            if name in EXCEPTIONS:
                excepted.append((name, EXCEPTIONS[name]))
            else:
                failures.append(name)

    width = max(len(row["name"]) for row in rows)
    print(f"{'expression':<{width}}  {'node_exporter':>13}  {'gomon':>5}  firing (ne/gomon)")
    for row in rows:
        firing = ""
        if row["kind"] == "alert":
            firing = f"{row['node_exporter_firing']}/{row['gomon_firing']}"
        mark = "  <-- no data on GoMon's side" if row["node_exporter"] and not row["gomon"] else ""
        print(f"{row['name']:<{width}}  {row['node_exporter']:>13}  {row['gomon']:>5}  {firing}{mark}")

    def count(side, kind=None):
        return sum(1 for row in rows if row[side] > 0 and (kind is None or row["kind"] == kind))

    alerts = sum(1 for row in rows if row["kind"] == "alert")
    print()
    print(f"expressions with data: node_exporter {count('node_exporter')}/{len(rows)}, "
          f"GoMon {count('gomon')}/{len(rows)} "
          f"(alerts {count('node_exporter', 'alert')}/{alerts} against {count('gomon', 'alert')}/{alerts}, "
          f"recording rules {count('node_exporter', 'record')}/{len(rows) - alerts} against "
          f"{count('gomon', 'record')}/{len(rows) - alerts})")
    firing_ne = [row["name"] for row in rows if row["kind"] == "alert" and row["node_exporter_firing"]]
    firing_gomon = [row["name"] for row in rows if row["kind"] == "alert" and row["gomon_firing"]]
    print(f"alerts whose condition holds now (before 'for'): node_exporter {sorted(set(firing_ne))}, "
          f"GoMon {sorted(set(firing_gomon))}")

    for side, base in sides.items():
        node = scalar(base, 'count({job="node",__name__=~"node_.+"})', at)
        names = scalar(base, 'count(count by (__name__) ({job="node",__name__=~"node_.+"}))', at)
        every = scalar(base, 'count({job="node",__name__!~"up|scrape_.+"})', at)
        hosts = scalar(base, 'count(count by (instance) ({job="node"}))', at)
        print(f"{side}: {node:.0f} node_* series of {names:.0f} names per host ({every:.0f} series in all, "
              f"{hosts:.0f} instance)" if None not in (node, names, every, hosts) else f"{side}: no series")
    # gomon up was given GOMON_AGGREGATOR__EXTERNAL_LABELS='{cluster: node-mixin-check}': every series has it.
    labelled = scalar(args.gomon, 'count({cluster="node-mixin-check",job="node"})', at)
    every = scalar(args.gomon, 'count({job="node"})', at)
    if labelled is None or labelled != every:
        errors.append(f"the external label of a YAML map in a variable is on {labelled} of {every} GoMon series")
    figures = json.loads(args.figures)
    for key, value in figures.items():
        print(f"{key}: {value}")

    for name, reason in excepted:
        print(f"excepted: {name} has data on node_exporter's side only: {reason}")
    for error in errors:
        print(f"query error: {error}")
    if failures or errors:
        for name in failures:
            print(f"FAILED: {name} returns data on node_exporter's side and not on GoMon's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
