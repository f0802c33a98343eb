-- Lifetime order stats per customer (all loaded days, not only the window).
select
    customer_id,
    min(order_date) as first_order_date,
    max(order_date) as last_order_date,
    count(*) as order_count,
    sum(order_amount) filter (where status not in ('cancelled', 'returned')) as lifetime_value
from {{ ref('int_orders_enriched') }}
group by customer_id
