{#-
    json_extract_string(column, ['context', 'page', 'url']) -> the value at that path as text.
    Engine-specific, so dispatched; the default is the Snowflake/Redshift-style function.
-#}
{% macro json_extract_string(column, path) -%}
    {{ return(adapter.dispatch('json_extract_string', 'corral')(column, path)) }}
{%- endmacro %}

{% macro default__json_extract_string(column, path) -%}
    json_extract_path_text({{ column }}, {% for key in path %}'{{ key }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{% macro duckdb__json_extract_string(column, path) -%}
    json_extract_string({{ column }}, '$.{% for key in path %}"{{ key }}"{% if not loop.last %}.{% endif %}{% endfor %}')
{%- endmacro %}

{% macro postgres__json_extract_string(column, path) -%}
    ({{ column }})::jsonb #>> '{ {%- for key in path %}{{ key }}{% if not loop.last %},{% endif %}{% endfor -%} }'
{%- endmacro %}

{% macro spark__json_extract_string(column, path) -%}
    get_json_object({{ column }}, '$.{% for key in path %}{{ key }}{% if not loop.last %}.{% endif %}{% endfor %}')
{%- endmacro %}
