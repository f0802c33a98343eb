{#
  Backfilled by window: each run replaces the orders of [start_date, end_date).
#}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='order_id'
) }}

select
    order_id,
    customer_id,
    order_date,
    ordered_at,
    status,
    line_count,
    item_count,
    order_amount,
    paid_amount,
    payment_count
from {{ ref('int_orders_enriched') }}
where {{ in_window('order_date') }}
