{#
  The landing CSV files of every day in [start_date, end_date), checked at run time.
  Raises a compilation error naming the first day whose file has not landed
  (e.g. the late 2024-01-13 delivery). At parse time (execute is false) it
  returns an empty list and runs no query.
#}
{% macro shipment_files(start_date, end_date) %}
    {% set landing = env_var('HERD_DEMO_LANDING') %}
    {% if not execute %}
        {{ return([]) }}
    {% endif %}
    {% set landing = landing.rstrip('/') %}
    {% set check_sql %}
        with days as (
            select strftime(d, '%Y-%m-%d') as day
            from range(cast('{{ start_date }}' as date), cast('{{ end_date }}' as date), interval 1 day) t(d)
        ),
        landed as (
            select file, parse_filename(file) as name
            from glob('{{ landing }}/shipments_*.csv')
        )
        select days.day, landed.file
        from days
        left join landed on landed.name = 'shipments_' || days.day || '.csv'
        order by days.day
    {% endset %}
    {% set rows = run_query(check_sql).rows %}
    {% if rows | length == 0 %}
        {{ exceptions.raise_compiler_error(
            "empty backfill window: start_date " ~ start_date ~ " is not before end_date " ~ end_date) }}
    {% endif %}
    {% set files = [] %}
    {% for row in rows %}
        {% if row[1] is none %}
            {{ exceptions.raise_compiler_error(
                "shipments for " ~ row[0] ~ " have not landed in " ~ landing
                ~ " (late upstream delivery); once shipments_" ~ row[0] ~ ".csv is in that directory, retry this batch") }}
        {% endif %}
        {% do files.append(row[1]) %}
    {% endfor %}
    {{ return(files) }}
{% endmacro %}
