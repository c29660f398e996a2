{#-
    Incremental models on Spark (dbt-spark). Corral's incremental models use `append`,
    `delete+insert` and `replace_tail` (macros/replace_tail.sql); dbt-spark offers append,
    insert_overwrite, and merge on Delta/Iceberg/Hudi tables only (their jars come from Maven,
    which Corral's machines do not reach), so tables here are plain parquet and the other two
    are done the way parquet allows: the rows of the table the new batch does not replace, plus
    the batch, written to a side table in one statement (the batch, a view that may read the
    table, is read before anything changes), then `insert overwrite` of the table from it. Same
    rows as on DuckDB and Postgres; the cost is rewriting the table on each incremental build
    rather than its changed part (what merge on Delta would save).

    dbt-spark's incremental materialization validates the strategy and renders its SQL through
    these two macros; a root project's macro of the same name replaces the adapter's, and the
    adapter's own (dbt.*, the internal macros) still serves every other strategy.
-#}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy in ('delete+insert', 'replace_tail') -%}
        {% do return(raw_strategy) %}
    {%- endif -%}
    {% do return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) %}
{% endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'delete+insert' -%}
        {% do return(spark_delete_insert_sql(source, target, unique_key)) %}
    {%- elif strategy == 'replace_tail' -%}
        {%- set key, column = replace_tail_config(unique_key, incremental_predicates, target) -%}
        {% do return(spark_delete_insert_sql(source, target, unique_key, column)) %}
    {%- endif -%}
    {% do return(dbt.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates)) %}
{% endmacro %}

{#- Runs the rewrite and returns the statement that ends it (dropping the side table), which the
    materialization runs as its main statement. With `tail_column` (strategy replace_tail, see
    replace_tail.sql), a key's rows are replaced only from its earliest tail_column in the batch. -#}
{% macro spark_delete_insert_sql(source, target, unique_key, tail_column=none) %}
    {%- if not unique_key -%}
        {{ exceptions.raise_compiler_error("corral: delete+insert on Spark needs a unique_key (model " ~ target ~ ")") }}
    {%- endif -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set side = api.Relation.create(schema=target.schema, identifier=target.identifier ~ '__dbt_rewrite', type='table') -%}
    {%- set matches = [] -%}
    {%- for key in keys -%}{% do matches.append('batch.' ~ key ~ ' = kept.' ~ key) %}{%- endfor -%}
    {%- set batch = source -%}
    {%- if tail_column -%}
        {%- set batch = replace_tail_batch(source, unique_key, tail_column) -%}
        {%- do matches.append('kept.' ~ tail_column ~ ' >= batch.replace_from') -%}
    {%- endif -%}
    {% do run_query("drop table if exists " ~ side) %}
    {% do run_query(
        "create table " ~ side ~ " using parquet as "
        ~ "select " ~ columns ~ " from " ~ target ~ " as kept where not exists (select 1 from " ~ batch ~ " as batch where " ~ matches | join(' and ') ~ ") "
        ~ "union all select " ~ columns ~ " from " ~ source) %}
    {% do run_query("insert overwrite table " ~ target ~ " select " ~ columns ~ " from " ~ side) %}
    {% do return("drop table if exists " ~ side) %}
{% endmacro %}
