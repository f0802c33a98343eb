select
    order_item_id,
    order_id,
    line_number,
    product_id,
    quantity
from {{ source('shop', 'order_items') }}
