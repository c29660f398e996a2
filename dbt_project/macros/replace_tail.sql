{#-
    Incremental strategy `replace_tail`: for each `unique_key` value in a build's batch, the
    table's rows from that key's earliest `tail_column` value in the batch onward are replaced by
    the batch's rows of that key; the key's earlier rows stay as they are. For models that
    rebuild, per key, everything from some point on: sessions, per anonymous id, from the first
    session that changed. Rows the batch no longer has (a session a late event merged into
    another) go too, and the key's unchanged earlier rows are not rewritten, which plain
    delete+insert by the key would do.

        {{ config(materialized='incremental', incremental_strategy='replace_tail',
                  unique_key='anonymous_id', tail_column='started_at') }}

    DuckDB and Postgres: this macro (delete ... using, then insert). Spark: spark_incremental.sql.
-#}
{% macro get_incremental_replace_tail_sql(arg_dict) %}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set key, column = replace_tail_config(arg_dict['unique_key'], arg_dict['incremental_predicates'], target) -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    using {{ replace_tail_batch(source, key, column) }} as batch
    where {{ target }}.{{ key }} = batch.{{ key }} and {{ target }}.{{ column }} >= batch.replace_from;

    insert into {{ target }} ({{ columns }})
    select {{ columns }} from {{ source }}
{% endmacro %}

{#- The key and the tail column of a replace_tail model, checked: [unique_key, tail_column]. -#}
{% macro replace_tail_config(unique_key, incremental_predicates, target) %}
    {%- set column = config.get('tail_column') -%}
    {%- if not unique_key or unique_key is not string -%}
        {{ exceptions.raise_compiler_error("corral: incremental_strategy 'replace_tail' needs unique_key, one column (model " ~ target ~ ")") }}
    {%- endif -%}
    {%- if not column or column is not string -%}
        {{ exceptions.raise_compiler_error("corral: incremental_strategy 'replace_tail' needs tail_column, the column from which a key's rows are replaced (model " ~ target ~ ")") }}
    {%- endif -%}
    {%- if incremental_predicates -%}
        {{ exceptions.raise_compiler_error("corral: incremental_strategy 'replace_tail' takes no incremental_predicates (model " ~ target ~ ")") }}
    {%- endif -%}
    {% do return([unique_key, column]) %}
{% endmacro %}

{#- Per key of the batch, where its replaced rows start (`replace_from`). -#}
{% macro replace_tail_batch(source, key, column) -%}
    (select {{ key }}, min({{ column }}) as replace_from from {{ source }} group by {{ key }})
{%- endmacro %}
