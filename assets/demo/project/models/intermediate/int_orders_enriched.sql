-- One row per order with its amount, item count and what was paid.
with lines as (
    select
        order_id,
        count(*) as line_count,
        sum(quantity) as item_count,
        sum(line_amount) as order_amount
    from {{ ref('int_order_lines') }}
    group by order_id
),
paid as (
    select order_id, sum(amount) as paid_amount, count(*) as payment_count
    from {{ ref('stg_payments') }}
    group by order_id
)
select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.ordered_at,
    o.status,
    coalesce(l.line_count, 0) as line_count,
    coalesce(l.item_count, 0) as item_count,
    coalesce(l.order_amount, 0)::decimal(12, 2) as order_amount,
    coalesce(p.paid_amount, 0)::decimal(12, 2) as paid_amount,
    coalesce(p.payment_count, 0) as payment_count
from {{ ref('stg_orders') }} o
left join lines l using (order_id)
left join paid p using (order_id)
