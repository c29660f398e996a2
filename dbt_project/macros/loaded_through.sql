{#- The loaded_at through which an incremental model has already taken messages in (the max of
    `column` in its own table), or long ago when it is empty. -#}
{% macro loaded_through(column='loaded_through') -%}
    (select coalesce(max({{ column }}), cast('1900-01-01' as {{ dbt.type_timestamp() }})) from {{ this }})
{%- endmacro %}
