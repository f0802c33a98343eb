#!/usr/bin/env python3
"""Writes a generated dbt-duckdb project of N models, for measuring how long the
plan takes to resolve against dbt's graph on a project of that size.

    gen_project.py DIR [N]        default N = 500

A fifth of the models are staging views over a seed, a fifth intermediate tables,
the rest incremental models that read the window's vars (start_date, end_date),
each with a not_null test; every model reads one or two earlier ones.
"""
import os, sys

root = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
os.makedirs(os.path.join(root, "models"), exist_ok=True)
os.makedirs(os.path.join(root, "seeds"), exist_ok=True)
with open(os.path.join(root, "dbt_project.yml"), "w") as f:
    f.write("name: gen\nversion: '1.0.0'\nconfig-version: 2\nprofile: gen\n"
            "flags:\n  send_anonymous_usage_stats: false\n")
with open(os.path.join(root, "profiles.yml"), "w") as f:
    f.write("gen:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
            "      path: \"{{ env_var('DUCKDB_PATH') }}\"\n      threads: 1\n")
with open(os.path.join(root, "seeds", "raw.csv"), "w") as f:
    f.write("id,day,amount\n" + "".join(f"{i},2024-01-{1 + i % 28:02d},{i * 3 % 97}\n" for i in range(200)))
tests = []
for i in range(n):
    name = f"m{i:04d}"
    if i < n // 5:
        body = "{{ config(materialized='view') }}\nselect * from {{ ref('raw') }}"
    else:
        a, b = (i * 7) % i, (i * 13) % i
        kind = "table" if i < 2 * n // 5 else "incremental"
        body = f"{{{{ config(materialized='{kind}') }}}}\nselect a.id, a.day, a.amount + b.amount as amount\n" \
               f"from {{{{ ref('m{a:04d}') }}}} a join {{{{ ref('m{b:04d}') }}}} b using (id)"
        if kind == "incremental":
            body += "\nwhere a.day >= '{{ var(\"start_date\") }}' and a.day < '{{ var(\"end_date\") }}'"
    with open(os.path.join(root, "models", f"{name}.sql"), "w") as f:
        f.write(body + "\n")
    tests.append(f"  - name: {name}\n    columns:\n      - name: id\n        data_tests: [not_null]\n")
with open(os.path.join(root, "models", "schema.yml"), "w") as f:
    f.write("version: 2\nmodels:\n" + "".join(tests))
print(f"{n} models in {root}")
