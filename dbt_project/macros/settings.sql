{#- A whole-number setting read from a dbt var, at least `minimum`; anything else fails the build
    naming the var and the value. -#}
{% macro session_setting(name, minimum) -%}
    {%- set value = var(name) -%}
    {%- if value is not number or value != value | int or value < minimum -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be a whole number of at least " ~ minimum ~ "; got: " ~ value) }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}
