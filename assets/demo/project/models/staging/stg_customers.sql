select
    customer_id,
    first_name,
    last_name,
    first_name || ' ' || last_name as customer_name,
    lower(email) as email,
    country,
    signup_date
from {{ source('shop', 'customers') }}
