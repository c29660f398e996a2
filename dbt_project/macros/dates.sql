{#-
    dbt's dateadd / datediff for parts shorter than a day, on Spark. dbt-spark's own work in
    whole seconds through unix timestamps (a millisecond dateadd adds nothing); these keep
    microseconds and count boundaries crossed, as DuckDB's date_diff and dbt's Postgres
    datediff do (10:00:00.9 to 10:00:01.1 is 1 second). Days and longer stay dbt-spark's.
    A root project's spark__ macro is found first when dbt dispatches its own macros.
-#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) %}
    {%- if datepart in ('hour', 'minute', 'second', 'millisecond', 'microsecond') -%}
        timestampadd({{ datepart | upper }}, cast({{ interval }} as bigint), {{ from_date_or_timestamp }})
    {%- else -%}
        {{ return(dbt.spark__dateadd(datepart, interval, from_date_or_timestamp)) }}
    {%- endif -%}
{% endmacro %}

{% macro spark__datediff(first_date, second_date, datepart) %}
    {%- set micros = {'hour': 3600000000, 'minute': 60000000, 'second': 1000000, 'millisecond': 1000, 'microsecond': 1} -%}
    {%- if datepart in micros -%}
        (unix_micros(cast({{ second_date }} as timestamp)) div {{ micros[datepart] }} - unix_micros(cast({{ first_date }} as timestamp)) div {{ micros[datepart] }})
    {%- else -%}
        {{ return(dbt.spark__datediff(first_date, second_date, datepart)) }}
    {%- endif -%}
{% endmacro %}
