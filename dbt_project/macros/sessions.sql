{#- Pieces for sessionization (models/intermediate/sessions). -#}

{#- A session's id: the hash of its anonymous id, its visit's start and its piece, so the same
    events always give the same id. Computed once per session (sessions) and per page view
    (page_views), not stored per event. -#}
{% macro session_id(anonymous_id, visit_started_at, piece_number) -%}
    {{ surrogate_key([anonymous_id, sortable_timestamp(visit_started_at), piece_number]) }}
{%- endmacro %}

{#- Which piece of its visit a time falls in: whole `max_seconds` since the visit's start (0, 1, ...). -#}
{% macro session_piece(visit_started_at, at, max_seconds) -%}
    cast(floor({{ dbt.datediff(visit_started_at, at, 'millisecond') }} / {{ max_seconds * 1000 }}) as {{ dbt.type_int() }})
{%- endmacro %}

{#- min(expression) over the rows after the current one in its partition (order_by: a list of
    columns, ascending). Default: the reverse order with a frame that only grows, which every
    engine computes in one pass (a frame whose start moves makes Postgres and Spark re-aggregate
    per row for min); DuckDB: the same order as the other windows of the query, so they share one
    sort (its segment trees take moving frames in stride). -#}
{% macro following_min(expression, partition_by, order_by) -%}
    {{ return(adapter.dispatch('following_min', 'corral')(expression, partition_by, order_by)) }}
{%- endmacro %}

{% macro default__following_min(expression, partition_by, order_by) -%}
    min({{ expression }}) over (
            partition by {{ partition_by }} order by {{ order_by | join(' desc, ') }} desc
            rows between unbounded preceding and 1 preceding
        )
{%- endmacro %}

{% macro duckdb__following_min(expression, partition_by, order_by) -%}
    min({{ expression }}) over (
            partition by {{ partition_by }} order by {{ order_by | join(', ') }}
            rows between 1 following and unbounded following
        )
{%- endmacro %}
