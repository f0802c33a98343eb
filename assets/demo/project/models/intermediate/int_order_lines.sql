-- One row per order line, priced.
select
    i.order_item_id,
    i.order_id,
    i.product_id,
    p.category,
    i.quantity,
    p.unit_price,
    (i.quantity * p.unit_price)::decimal(12, 2) as line_amount
from {{ ref('stg_order_items') }} i
join {{ ref('stg_products') }} p using (product_id)
