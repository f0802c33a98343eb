select
    order_id,
    customer_id,
    order_date,
    ordered_at,
    status
from {{ source('shop', 'orders') }}
