{#- URL parts in portable SQL (split_part, substr, position): the few pieces of dbt_utils'
    web macros that Corral needs. Every macro takes a SQL expression and returns one. -#}

{#- Everything after the scheme: "https://www.x.com/a?b#c" -> "www.x.com/a?b#c". -#}
{% macro url_without_scheme(url) -%}
    case when {{ dbt.position("'://'", url) }} > 0 then substr({{ url }}, {{ dbt.position("'://'", url) }} + 3) else {{ url }} end
{%- endmacro %}

{#- Lower-cased host without "www." and without a port; null for an empty URL. -#}
{% macro url_host(url) -%}
    {%- set authority = dbt.split_part(dbt.split_part(dbt.split_part(dbt.split_part(url_without_scheme(url), "'/'", 1), "'?'", 1), "'#'", 1), "':'", 1) -%}
    nullif(
        case when lower({{ authority }}) like 'www.%' then substr(lower({{ authority }}), 5) else lower({{ authority }}) end,
        ''
    )
{%- endmacro %}

{#- The path, "/" when there is none. -#}
{% macro url_path(url) -%}
    {%- set rest = dbt.split_part(dbt.split_part(url_without_scheme(url), "'?'", 1), "'#'", 1) -%}
    case
        when {{ url }} is null then null
        when {{ dbt.position("'/'", rest) }} > 0 then substr({{ rest }}, {{ dbt.position("'/'", rest) }})
        else '/'
    end
{%- endmacro %}

{#- The query string without "?" and fragment; null when there is none. -#}
{% macro url_query(url) -%}
    nullif({{ dbt.split_part(dbt.split_part(url, "'?'", 2), "'#'", 1) }}, '')
{%- endmacro %}

{#- One query parameter's value, decoded ("+" and %XX), or null. -#}
{% macro url_parameter(url, name) -%}
    {%- set raw = dbt.split_part(dbt.split_part("'&' || " ~ url_query(url), "'&" ~ name ~ "='", 2), "'&'", 1) -%}
    {{ url_decode("nullif(" ~ raw ~ ", '')") }}
{%- endmacro %}

{% macro url_decode(expression) -%}
    {{ return(adapter.dispatch('url_decode', 'corral')(expression)) }}
{%- endmacro %}

{#- Portable fallback: "+" and the common escapes only. -#}
{% macro default__url_decode(expression) -%}
    replace(replace(replace(replace(replace({{ expression }}, '+', ' '), '%20', ' '), '%2C', ','), '%2F', '/'), '%26', '&')
{%- endmacro %}

{% macro duckdb__url_decode(expression) -%}
    url_decode(replace({{ expression }}, '+', ' '))
{%- endmacro %}

{#- Spark 4: "+" as a space, as Java's URLDecoder; a malformed escape is kept as it came. -#}
{% macro spark__url_decode(expression) -%}
    coalesce(try_url_decode({{ expression }}), {{ expression }})
{%- endmacro %}
