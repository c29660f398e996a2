{#- The reproducible "now" of a build: var corral_as_of (an ISO timestamp) or the build time. -#}
{% macro as_of() -%}
    {%- set as_of = var('corral_as_of', none) -%}
    {%- if as_of is none or as_of | string | trim | lower in ('', 'none', 'null') -%}
        {{ dbt.current_timestamp() }}
    {%- else -%}
        {%- set text = as_of | string | trim -%}
        {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?$', text) -%}
            {{ exceptions.raise_compiler_error("var corral_as_of must be an ISO timestamp like '2026-11-01' or '2026-11-01 12:00:00' (UTC), got: " ~ text) }}
        {%- endif -%}
        cast('{{ text | replace("T", " ") }}' as {{ dbt.type_timestamp() }})
    {%- endif -%}
{%- endmacro %}
