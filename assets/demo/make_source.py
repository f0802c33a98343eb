#!/usr/bin/env python3
"""Build the herd_demo source data: OUT_DIR/source.duckdb and OUT_DIR/landing/.

Usage: make_source.py OUT_DIR

Deterministic (a fixed integer hash stands in for randomness) and idempotent:
every run deletes and rebuilds both outputs. Needs the `duckdb` module, which
comes with dbt-duckdb (run it with the dbt venv's python).

Data: 2024-01-01 .. 2024-04-30 (room for a 96-day backfill). One shipments CSV per order day in landing/,
except 2024-01-13, whose file is a "late delivery" in landing/late/.
"""
import os
import shutil
import sys
import time

import duckdb

FIRST_DAY = "2024-01-01"
END_DAY = "2024-05-01"  # exclusive
LATE_DAY = "2024-01-13"

SQL = f"""
-- Deterministic integer hash (multiply mod 2^31-1, xor-shift, twice) -> uniform [0, 1).
create macro mix1(v) as xor(((v) * 48271) % 2147483647, (((v) * 48271) % 2147483647) >> 13);
create macro mix2(v) as xor(((v) * 69621) % 2147483647, (((v) * 69621) % 2147483647) >> 17);
create macro rnd(x, salt) as
    mix2(mix1(mix2(mix1(x::bigint * 7919 + salt::bigint * 1000003 + 17)))) / 2147483648.0;

create table customers as
select
    i as customer_id,
    ['Ada','Ben','Cleo','Dan','Eve','Finn','Gia','Hal','Ivy','Jon',
     'Kai','Lea','Max','Nia','Oli','Pia','Quin','Rae','Sam','Tess'][1 + floor(rnd(i, 1) * 20)::int] as first_name,
    ['Ng','Berg','Costa','Diaz','Evans','Fox','Gray','Holm','Ito','Jensen',
     'Khan','Lind','Moreau','Nagy','Olsen','Park','Quist','Rossi','Silva','Tan'][1 + floor(rnd(i, 2) * 20)::int] as last_name,
    'customer' || i || '@example.com' as email,
    ['DE','FR','NL','SE','US','GB'][1 + floor(rnd(i, 3) * 6)::int] as country,
    date '2022-01-01' + floor(rnd(i, 4) * 700)::int as signup_date
from range(1, 201) t(i);

create table products as
select
    i as product_id,
    'product-' || lpad(i::varchar, 2, '0') as product_name,
    ['apparel','electronics','home','grocery','toys'][1 + (i % 5)] as category,
    round(5 + rnd(i, 11) * 195, 2)::decimal(10, 2) as unit_price
from range(1, 31) t(i);

create table orders as
with days as (
    select d::date as order_date, row_number() over (order by d) as day_no
    from range(date '{FIRST_DAY}', date '{END_DAY}', interval 1 day) t(d)
),
slots as (
    select order_date, day_no, unnest(range(200 + floor(rnd(day_no, 5) * 200)::int)) as k
    from days
),
numbered as (
    select order_date, row_number() over (order by order_date, k) as order_id
    from slots
)
select
    order_id,
    1 + floor(rnd(order_id, 7) * 200)::int as customer_id,
    order_date,
    order_date + to_seconds(floor(rnd(order_id, 8) * 86000)::bigint) as ordered_at,
    case
        when rnd(order_id, 9) < 0.05 then 'cancelled'
        when rnd(order_id, 9) < 0.10 then 'returned'
        when rnd(order_id, 9) < 0.30 then 'shipped'
        else 'completed'
    end as status
from numbered;

create table order_items as
with slots as (
    select order_id, unnest(range(1 + floor(rnd(order_id, 12) * 4)::int)) as line_no
    from orders
)
select
    row_number() over (order by s.order_id, s.line_no) as order_item_id,
    s.order_id,
    s.line_no + 1 as line_number,
    1 + floor(rnd(s.order_id * 10 + s.line_no, 13) * 30)::int as product_id,
    1 + floor(rnd(s.order_id * 10 + s.line_no, 14) * 3)::int as quantity
from slots s;

create table payments as
with totals as (
    select o.order_id, o.ordered_at, sum(i.quantity * p.unit_price)::decimal(12, 2) as total
    from orders o
    join order_items i using (order_id)
    join products p using (product_id)
    group by all
),
split as (
    select order_id, ordered_at, total, rnd(order_id, 15) < 0.10 as is_split from totals
),
rows as (
    select order_id, ordered_at, 1 as payment_no,
           ['credit_card','paypal','bank_transfer'][1 + floor(rnd(order_id, 16) * 3)::int] as payment_method,
           case when is_split then total - round(total * 0.3, 2) else total end as amount
    from split
    union all
    select order_id, ordered_at, 2, 'gift_card', round(total * 0.3, 2)
    from split where is_split
)
select
    row_number() over (order by order_id, payment_no) as payment_id,
    order_id,
    payment_method,
    amount::decimal(12, 2) as amount,
    ordered_at + interval 1 minute as paid_at
from rows;

create table shipments as
select
    order_id + 500000 as shipment_id,
    order_id,
    order_date as ship_date,
    least(ordered_at + to_minutes(30 + floor(rnd(order_id, 17) * 240)::bigint),
          order_date + interval '23 hours 59 minutes') as shipped_at,
    ['dhl','ups','fedex','postnl'][1 + floor(rnd(order_id, 18) * 4)::int] as carrier,
    round(0.2 + rnd(order_id, 19) * 12, 2)::decimal(6, 2) as weight_kg
from orders
where status <> 'cancelled';
"""


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: make_source.py OUT_DIR", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    db_path = os.path.join(out, "source.duckdb")
    for p in (db_path, db_path + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    landing = os.path.join(out, "landing")
    shutil.rmtree(landing, ignore_errors=True)
    os.makedirs(os.path.join(landing, "late"))

    con = duckdb.connect(db_path)
    con.execute(SQL)
    days = [r[0] for r in con.execute("select distinct ship_date from shipments order by 1").fetchall()]
    for day in days:
        iso = day.isoformat()
        target = os.path.join(landing, "late" if iso == LATE_DAY else "", f"shipments_{iso}.csv")
        con.execute(
            f"copy (select shipment_id, order_id, ship_date, strftime(shipped_at, '%Y-%m-%d %H:%M:%S') as shipped_at, "
            f"carrier, weight_kg from shipments where ship_date = date '{iso}' order by shipment_id) "
            f"to '{target}' (header, delimiter ',')"
        )
    # The source tables are final; the shipments table only fed the CSV files.
    con.execute("drop table shipments; drop macro rnd; drop macro mix2; drop macro mix1;")
    counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0]
              for t in ("customers", "products", "orders", "order_items", "payments")}
    con.execute("checkpoint")
    con.close()
    print(
        f"made {db_path} ({', '.join(f'{n} {t}' for t, n in counts.items())}; "
        f"{FIRST_DAY}..2024-04-30) and {len(days) - 1} shipment files in {landing}/ "
        f"+ the late {LATE_DAY} file in {landing}/late/ in {time.monotonic() - t0:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
