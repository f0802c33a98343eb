{# The backfill window: ISO dates, start inclusive, end exclusive. #}
{% macro window_start() %}{{ return(var('start_date', '2024-01-01')) }}{% endmacro %}
{% macro window_end() %}{{ return(var('end_date', '2024-01-02')) }}{% endmacro %}

{% macro in_window(column) -%}
    {{ column }} >= cast('{{ window_start() }}' as date) and {{ column }} < cast('{{ window_end() }}' as date)
{%- endmacro %}
