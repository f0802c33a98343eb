select
    c.customer_id,
    c.customer_name,
    c.email,
    c.country,
    c.signup_date,
    o.first_order_date,
    o.last_order_date,
    coalesce(o.order_count, 0) as order_count,
    coalesce(o.lifetime_value, 0)::decimal(14, 2) as lifetime_value
from {{ ref('stg_customers') }} c
left join {{ ref('int_customer_orders') }} o using (customer_id)
