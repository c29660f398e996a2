{#- Small shared pieces: validated vars, incremental watermarks, sortable timestamps. -#}

{#- A whole-number setting read from a dbt var, at least `minimum`; anything else fails the build
    naming the var and the value. -#}
{% macro whole_number_var(name, minimum) -%}
    {%- set value = var(name) -%}
    {%- if value is not number or value != value | int or value < minimum -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a whole number of at least " ~ minimum ~ "; got: " ~ value) }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}

{#- A timestamp as fixed-width text that sorts like the timestamp and reads the same on every
    engine ('YYYY-MM-DD HH:MM:SS.ffffff', 26 characters): for stable hashed ids and for
    "first/last row" picks by min/max of text. -#}
{% macro sortable_timestamp(column) -%}
    {{ return(adapter.dispatch('sortable_timestamp', 'corral')(column)) }}
{%- endmacro %}

{% macro default__sortable_timestamp(column) -%}
    to_char({{ column }}, 'YYYY-MM-DD HH24:MI:SS.US')
{%- endmacro %}

{% macro duckdb__sortable_timestamp(column) -%}
    strftime({{ column }}, '%Y-%m-%d %H:%M:%S.%f')
{%- endmacro %}

{% macro spark__sortable_timestamp(column) -%}
    date_format({{ column }}, 'yyyy-MM-dd HH:mm:ss.SSSSSS')
{%- endmacro %}
{#- The loaded_at through which an incremental model has already taken messages in (the max of
    `column` in its own table), or long ago when it is empty. -#}
{% macro loaded_through(column='loaded_through') -%}
    (select coalesce(max({{ column }}), cast('1900-01-01' as {{ dbt.type_timestamp() }})) from {{ this }})
{%- endmacro %}

{#- A double-precision float (DuckDB's `float` is single precision). -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'corral')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    {{ dbt.type_float() }}
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{#- Spark's `float` is single precision too. -#}
{% macro spark__type_double() -%}
    double
{%- endmacro %}

{#- The contracts' `varchar` (marts with enforced contracts declare it): Postgres turns trim() and
    JSON values into `text`, which an incremental build would take for a changed column type. -#}
{% macro type_varchar() -%}
    {{ return(adapter.dispatch('type_varchar', 'corral')()) }}
{%- endmacro %}

{% macro default__type_varchar() -%}
    varchar
{%- endmacro %}

{% macro spark__type_varchar() -%}
    string
{%- endmacro %}

{#- Ends a subquery whose columns are computed once and read many times (JSON fields parsed once
    into an array, then taken apart): Postgres would otherwise pull the subquery up and paste the
    whole expression into every reference (12 JSON parses per row instead of 1 in staging). -#}
{% macro optimization_fence() -%}
    {{ return(adapter.dispatch('optimization_fence', 'corral')()) }}
{%- endmacro %}

{% macro default__optimization_fence() -%}
{%- endmacro %}

{% macro postgres__optimization_fence() -%}
    offset 0
{%- endmacro %}

{#- This build's start time as a timestamp (microseconds), the same in every model of a run. -#}
{% macro build_time() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- Text read as a double, or null when it is not a number (a property sent as "n/a" must not
    fail the build). dbt.safe_cast is a plain cast on DuckDB, hence this. -#}
{% macro number_or_null(text) -%}
    {{ return(adapter.dispatch('number_or_null', 'corral')(text)) }}
{%- endmacro %}

{% macro default__number_or_null(text) -%}
    {{ dbt.safe_cast(text, type_double()) }}
{%- endmacro %}

{% macro duckdb__number_or_null(text) -%}
    try_cast({{ text }} as double)
{%- endmacro %}

{#- Spark 4 casts in ANSI mode: a plain cast of "n/a" fails the query. -#}
{% macro spark__number_or_null(text) -%}
    try_cast({{ text }} as double)
{%- endmacro %}

{% macro postgres__number_or_null(text) -%}
    case when trim({{ text }}) ~ '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$' then cast({{ text }} as double precision) end
{%- endmacro %}

{#- loaded_through as a literal, read when the model runs: a filter on a constant lets the engine
    skip storage blocks and size its joins, which a scalar subquery hides from it (DuckDB joined
    the whole sessions table to the few re-resolved anonymous ids). Falls back to the subquery
    when dbt only parses. -#}
{% macro loaded_through_value(column='loaded_through') -%}
    {%- if execute -%}
        {%- set result = run_query('select max(' ~ column ~ ') from ' ~ this) -%}
        {%- set value = result.columns[0].values()[0] -%}
        {%- if value is none -%}
            cast('1900-01-01' as {{ dbt.type_timestamp() }})
        {%- else -%}
            cast('{{ value if value is string else value.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }})
        {%- endif -%}
    {%- else -%}
        {{ loaded_through(column) }}
    {%- endif -%}
{%- endmacro %}
