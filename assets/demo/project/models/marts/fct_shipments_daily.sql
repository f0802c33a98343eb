{#
  Backfilled by window: one row per (day, carrier) of [start_date, end_date).
  Downstream of stg_shipments, so it is skipped when a day's file is late.
#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='shipment_day_key'
) }}

select
    strftime(s.ship_date, '%Y-%m-%d') || '|' || s.carrier as shipment_day_key,
    s.ship_date,
    s.carrier,
    count(*) as shipment_count,
    sum(s.weight_kg)::decimal(12, 2) as total_weight_kg,
    sum(o.order_amount)::decimal(14, 2) as shipped_order_amount,
    avg(epoch(s.shipped_at - o.ordered_at) / 60.0)::decimal(10, 1) as avg_minutes_to_ship
from {{ ref('stg_shipments') }} s
join {{ ref('fct_orders') }} o using (order_id)
where {{ in_window('s.ship_date') }}
group by all
