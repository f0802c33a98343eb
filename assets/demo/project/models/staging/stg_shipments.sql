{#
  Shipments of the window's days, read from the landing CSV files (one per day,
  in $HERD_DEMO_LANDING). A table, so the files are read once, at build time.
  shipment_files() fails the node at run time if a day's file has not landed.
#}
{{ config(materialized='table') }}

{%- set files = shipment_files(window_start(), window_end()) %}

select
    shipment_id,
    order_id,
    ship_date,
    shipped_at,
    carrier,
    weight_kg
from read_csv(
    [{% for f in files %}'{{ f }}'{% if not loop.last %}, {% endif %}{% endfor %}],
    header = true,
    columns = {
        'shipment_id': 'bigint',
        'order_id': 'bigint',
        'ship_date': 'date',
        'shipped_at': 'timestamp',
        'carrier': 'varchar',
        'weight_kg': 'decimal(6, 2)'
    }
)
where {{ in_window('ship_date') }}
