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

{#-
    json_extract_strings(column, [['page', 'url'], ['userAgent']]) -> an array of the values at
    those paths as text, read with one parse of the JSON where the engine can (DuckDB); take
    items with array_item(expression, 1-based index). For many fields of one big column.
-#}
{% macro json_extract_strings(column, paths) -%}
    {{ return(adapter.dispatch('json_extract_strings', 'corral')(column, paths)) }}
{%- endmacro %}

{% macro default__json_extract_strings(column, paths) -%}
    array[{% for path in paths %}{{ json_extract_string(column, path) }}{% if not loop.last %}, {% endif %}{% endfor %}]
{%- endmacro %}

{% macro duckdb__json_extract_strings(column, paths) -%}
    json_extract_string({{ column }}, [{% for path in paths %}'$.{% for key in path %}"{{ key }}"{% if not loop.last %}.{% endif %}{% endfor %}'{% if not loop.last %}, {% endif %}{% endfor %}])
{%- endmacro %}

{% macro spark__json_extract_strings(column, paths) -%}
    array({% for path in paths %}{{ json_extract_string(column, path) }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{% macro array_item(expression, index) -%}
    {{ return(adapter.dispatch('array_item', 'corral')(expression, index)) }}
{%- endmacro %}

{% macro default__array_item(expression, index) -%}
    ({{ expression }})[{{ index }}]
{%- endmacro %}

{% macro spark__array_item(expression, index) -%}
    element_at({{ expression }}, {{ index }})
{%- endmacro %}

{#- json_extract_path(column, ['context', 'traits']) -> the JSON value at that path. -#}
{% macro json_extract_path(column, path) -%}
    {{ return(adapter.dispatch('json_extract_path', 'corral')(column, path)) }}
{%- endmacro %}

{% macro default__json_extract_path(column, path) -%}
    json_extract_path({{ column }}, {% for key in path %}'{{ key }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}

{% macro duckdb__json_extract_path(column, path) -%}
    json_extract({{ column }}, '$.{% for key in path %}"{{ key }}"{% if not loop.last %}.{% endif %}{% endfor %}')
{%- endmacro %}

{#- Spark: the JSON text at that path (objects and arrays as JSON; only used for objects). -#}
{% macro spark__json_extract_path(column, path) -%}
    get_json_object({{ column }}, '$.{% for key in path %}{{ key }}{% if not loop.last %}.{% endif %}{% endfor %}')
{%- endmacro %}

{% macro postgres__json_extract_path(column, path) -%}
    ({{ column }})::jsonb #> '{ {%- for key in path %}{{ key }}{% if not loop.last %},{% endif %}{% endfor -%} }'
{%- endmacro %}

{#-
    json_entries(relation, json_column, columns): one row per (columns..., entry_key,
    entry_value) for every key of the JSON object in json_column whose value is not null;
    entry_value is the value as JSON text. Engine-specific, so dispatched.
-#}
{% macro json_entries(relation, json_column, columns) -%}
    {{ return(adapter.dispatch('json_entries', 'corral')(relation, json_column, columns)) }}
{%- endmacro %}

{% macro default__json_entries(relation, json_column, columns) -%}
    {{ exceptions.raise_compiler_error("corral: json_entries has no implementation for adapter '" ~ adapter.type() ~ "'; add " ~ adapter.type() ~ "__json_entries in dbt_project/macros/json.sql") }}
{%- endmacro %}

{% macro duckdb__json_entries(relation, json_column, columns) -%}
    select {% for c in columns %}source.{{ c }}, {% endfor %}entries.key as entry_key, entries.value::varchar as entry_value
    from {{ relation }} as source, json_each(source.{{ json_column }}) as entries
    where json_type(source.{{ json_column }}) = 'OBJECT' and json_type(entries.value) <> 'NULL'
{%- endmacro %}

{% macro postgres__json_entries(relation, json_column, columns) -%}
    select {% for c in columns %}source.{{ c }}, {% endfor %}entries.key as entry_key, entries.value::text as entry_value
    from {{ relation }} as source, jsonb_each(case when jsonb_typeof(source.{{ json_column }}::jsonb) = 'object' then source.{{ json_column }}::jsonb end) as entries
    where jsonb_typeof(entries.value) <> 'null'
{%- endmacro %}

{#- Spark 4: the text parsed as a VARIANT; an array explodes with null keys, a scalar into nothing. -#}
{% macro spark__json_entries(relation, json_column, columns) -%}
    select {% for c in columns %}source.{{ c }}, {% endfor %}entries.key as entry_key, to_json(entries.value) as entry_value
    from {{ relation }} as source, lateral variant_explode(try_parse_json(source.{{ json_column }})) as entries
    where entries.key is not null and not is_variant_null(entries.value)
{%- endmacro %}

{#- json_object_agg(key, value_json_text): aggregate entries back into one JSON object. -#}
{% macro json_object_agg(key, value) -%}
    {{ return(adapter.dispatch('json_object_agg', 'corral')(key, value)) }}
{%- endmacro %}

{% macro default__json_object_agg(key, value) -%}
    {{ exceptions.raise_compiler_error("corral: json_object_agg has no implementation for adapter '" ~ adapter.type() ~ "'; add " ~ adapter.type() ~ "__json_object_agg in dbt_project/macros/json.sql") }}
{%- endmacro %}

{% macro duckdb__json_object_agg(key, value) -%}
    json_group_object({{ key }}, {{ value }}::json)
{%- endmacro %}

{% macro postgres__json_object_agg(key, value) -%}
    json_object_agg({{ key }}, ({{ value }})::json order by {{ key }})
{%- endmacro %}

{#- Spark: keys are unique per group where Corral uses it (one latest value per key). -#}
{% macro spark__json_object_agg(key, value) -%}
    to_json(map_from_entries(collect_list(struct({{ key }}, parse_json({{ value }})))))
{%- endmacro %}

{#- json_array_agg(value): the values aggregated into one JSON array, sorted. -#}
{% macro json_array_agg(value) -%}
    {{ return(adapter.dispatch('json_array_agg', 'corral')(value)) }}
{%- endmacro %}

{% macro default__json_array_agg(value) -%}
    {{ exceptions.raise_compiler_error("corral: json_array_agg has no implementation for adapter '" ~ adapter.type() ~ "'; add " ~ adapter.type() ~ "__json_array_agg in dbt_project/macros/json.sql") }}
{%- endmacro %}

{% macro spark__json_array_agg(value) -%}
    to_json(array_sort(collect_list({{ value }})))
{%- endmacro %}

{% macro duckdb__json_array_agg(value) -%}
    to_json(list({{ value }} order by {{ value }}))
{%- endmacro %}

{% macro postgres__json_array_agg(value) -%}
    jsonb_agg({{ value }} order by {{ value }})
{%- endmacro %}
