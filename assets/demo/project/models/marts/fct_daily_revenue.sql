{#
  Backfilled by window: one row per day of [start_date, end_date).
#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='revenue_date'
) }}

select
    order_date as revenue_date,
    count(*) as order_count,
    count(*) filter (where status = 'cancelled') as cancelled_count,
    count(distinct customer_id) as customer_count,
    sum(order_amount) filter (where status not in ('cancelled', 'returned'))::decimal(14, 2) as revenue,
    sum(paid_amount)::decimal(14, 2) as paid_amount
from {{ ref('fct_orders') }}
where {{ in_window('order_date') }}
group by order_date
