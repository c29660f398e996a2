{#- Identity resolution settings, validated once: identifier types in priority order and the
    limited ("anchor") type. A bad setting fails the build naming the var and the value. -#}

{% macro identity_known_types() -%}
    {{ return(['user_id', 'email', 'phone', 'device_id', 'anonymous_id']) }}
{%- endmacro %}

{% macro identity_types() -%}
    {%- set order = var('corral_identifier_priority') -%}
    {%- set known = identity_known_types() -%}
    {%- if order is string or order is mapping or order | length == 0 -%}
        {{ exceptions.raise_compiler_error("var corral_identifier_priority must be a non-empty list of identifier types, highest priority first; got: " ~ order) }}
    {%- endif -%}
    {%- for type in order -%}
        {%- if type not in known -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_priority: unknown identifier type '" ~ type ~ "' (known: " ~ known | join(', ') ~ ")") }}
        {%- endif -%}
        {%- if order[:loop.index0].count(type) -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_priority lists '" ~ type ~ "' twice") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(order) }}
{%- endmacro %}

{% macro identity_priority(type) -%}
    {{ return(identity_types().index(type) + 1) }}
{%- endmacro %}

{#- Limits per profile: {type: max identifiers of that type}, validated. -#}
{% macro identity_limits() -%}
    {%- set limits = var('corral_identifier_limits') -%}
    {%- if limits is none -%}{{ return({}) }}{%- endif -%}
    {%- if limits is not mapping -%}
        {{ exceptions.raise_compiler_error("var corral_identifier_limits must map identifier types to their limit per profile, e.g. {user_id: 1, email: 3}; got: " ~ limits) }}
    {%- endif -%}
    {%- for type, limit in limits.items() -%}
        {%- if type not in identity_types() -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_limits names '" ~ type ~ "', which is not in corral_identifier_priority (" ~ identity_types() | join(', ') ~ ")") }}
        {%- endif -%}
        {%- if limit is not number or limit < 1 or limit != limit | int -%}
            {{ exceptions.raise_compiler_error("var corral_identifier_limits: the limit for '" ~ type ~ "' must be a whole number of at least 1; got: " ~ limit) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(limits) }}
{%- endmacro %}

{#- The anchor type: the highest-priority limited type (default user_id). A profile is named
    for its earliest identifier of this type; none when nothing is limited. -#}
{% macro identity_anchor_type() -%}
    {%- set limits = identity_limits() -%}
    {%- for type in identity_types() if type in limits -%}
        {{ return(type) }}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- True for the default shape of limits (one type, at most one per profile), which has a fast
    set-based resolution; any other limits are resolved by replaying links in time order. -#}
{% macro identity_single_anchor() -%}
    {%- set limits = identity_limits() -%}
    {{ return(limits | length == 1 and (limits.values() | list)[0] == 1) }}
{%- endmacro %}

{#- A value that must never become an identifier: the configured list (case-insensitive), or
    only zeros and dashes (^[0-]*$, which includes empty). Portable: no regex. Cheap tests go
    first (length, first character), so the string functions run only on the few values that
    could match: this runs on every staged message. -#}
{% macro identity_value_is_blocked(column) -%}
    {%- set values = var('corral_identity_blocked_values') | map('lower') | list -%}
    (
    {%- if values %}
        (length({{ column }}) <= {{ values | map('length') | max }} and lower({{ column }}) in (
        {%- for value in values -%}
            '{{ value | replace("'", "''") }}'{% if not loop.last %}, {% endif %}
        {%- endfor -%}
        )) or
    {%- endif %}
        (({{ column }} = '' or {{ column }} like '0%' or {{ column }} like '-%') and replace(replace({{ column }}, '0', ''), '-', '') = '')
    )
{%- endmacro %}

{#- How each identifier type is read from a staged message, normalized. -#}
{% macro identity_expression(type) -%}
    {%- if type == 'user_id' -%} trim(user_id)
    {%- elif type == 'anonymous_id' -%} trim(anonymous_id)
    {%- elif type == 'email' -%} lower(trim(email))
    {%- elif type == 'phone' -%} {{ normalize_phone('phone') }}
    {%- elif type == 'device_id' -%} trim(device_id)
    {%- endif -%}
{%- endmacro %}

{#- Phone numbers as '+' and digits; fewer than 5 digits is not a phone number. -#}
{% macro normalize_phone(column) -%}
    case
        when length({{ regexp_remove(column, '[^0-9]') }}) >= 5
            then '+' || {{ regexp_remove(column, '[^0-9]') }}
    end
{%- endmacro %}

{% macro regexp_remove(column, pattern) -%}
    {{ return(adapter.dispatch('regexp_remove', 'corral')(column, pattern)) }}
{%- endmacro %}

{% macro default__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '')
{%- endmacro %}

{% macro duckdb__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '', 'g')
{%- endmacro %}

{% macro postgres__regexp_remove(column, pattern) -%}
    regexp_replace({{ column }}, '{{ pattern }}', '', 'g')
{%- endmacro %}

{#- An identifier's number for the graph rounds: the first 15 hex digits of its node id (the md5
    of its type and value) read as a 60-bit integer, which fits a bigint on every engine and
    orders like the node id. Integers join and compare far faster than 32-character strings.
    Two identifiers sharing a number (odds about 1 in 10^5 at 5M identifiers) fail the unique
    test on int_identity_nodes.node_number rather than merge. -#}
{% macro identity_node_number(node_id) -%}
    {{ return(adapter.dispatch('identity_node_number', 'corral')(node_id)) }}
{%- endmacro %}

{% macro default__identity_node_number(node_id) -%}
    {{ exceptions.raise_compiler_error("identity resolution: no hex-to-bigint conversion for adapter '" ~ adapter.type() ~ "'; add a macro " ~ adapter.type() ~ "__identity_node_number") }}
{%- endmacro %}

{% macro duckdb__identity_node_number(node_id) -%}
    cast('0x' || left({{ node_id }}, 15) as bigint)
{%- endmacro %}

{% macro postgres__identity_node_number(node_id) -%}
    ('x' || left({{ node_id }}, 15))::bit(60)::bigint
{%- endmacro %}

{% macro spark__identity_node_number(node_id) -%}
    cast(conv(left({{ node_id }}, 15), 16, 10) as bigint)
{%- endmacro %}

{#- A fingerprint of every setting that decides identifiers and profiles: priority, limits,
    blocked values and the rows of the seed identity_blocked_values. Stored on
    int_identifiers_extracted, so an incremental build after a change stops and asks for a full
    refresh instead of mixing old and new rules. -#}
{% macro identity_settings_fingerprint() -%}
    {%- set seeded = [] -%}
    {%- if identity_iterating() -%}
        {%- set rows = run_query("select identifier_type, identifier_value from " ~ ref('identity_blocked_values') ~ " order by 1, 2") -%}
        {%- for row in rows -%}{%- do seeded.append(row[0] ~ ':' ~ row[1]) -%}{%- endfor -%}
    {%- endif -%}
    {%- set settings = [identity_types() | join(','), identity_limits() | dictsort | join(','), var('corral_identity_blocked_values') | join(','), seeded | join(',')] -%}
    {{ return(local_md5(settings | join('|'))) }}
{%- endmacro %}

{% macro identity_check_settings(fingerprint) -%}
    {%- if identity_iterating() and is_incremental() -%}
        {%- set stored = run_query("select distinct identity_settings from " ~ this).columns[0].values() -%}
        {%- if stored | length > 0 and (stored | list) != [fingerprint] -%}
            {{ exceptions.raise_compiler_error("identity resolution: the identity settings changed since the last build (vars corral_identifier_priority, corral_identifier_limits, corral_identity_blocked_values or the seed identity_blocked_values). Profiles built under the old rules cannot be patched incrementally: rebuild with `corral build --full-refresh` (or `dbt build --full-refresh`); the merge history is kept.") }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
